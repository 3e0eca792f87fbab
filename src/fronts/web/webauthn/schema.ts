import { z } from 'zod';
import { badRequest } from '../../../core/errors.js';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '../../../core/passkeys.js';

const b64url = (max: number) => z.string().max(max).regex(/^[A-Za-z0-9_-]*$/, 'base64url');

/** What a browser's navigator.credentials.get answer looks like as JSON (webauthn.js). */
export const authenticationResponse = z
  .object({
    id: b64url(1024).min(1),
    rawId: b64url(1024).min(1),
    type: z.literal('public-key'),
    response: z.object({
      clientDataJSON: b64url(4096),
      authenticatorData: b64url(4096),
      signature: b64url(2048),
      userHandle: b64url(256).optional(),
    }),
    clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
    authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  })
  .transform((r) => r as unknown as AuthenticationResponseJSON);

/** What navigator.credentials.create answers as JSON (webauthn.js). */
export const registrationResponse = z
  .object({
    id: b64url(1024).min(1),
    rawId: b64url(1024).min(1),
    type: z.literal('public-key'),
    response: z.object({
      clientDataJSON: b64url(4096),
      attestationObject: b64url(16_384),
      transports: z.array(z.string().max(32)).max(8).optional(),
      publicKeyAlgorithm: z.number().int().optional(),
      authenticatorData: b64url(8192).optional(),
    }),
    clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
    authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  })
  .transform((r) => r as unknown as RegistrationResponseJSON);

/** A form field holding the answer as JSON text (the sign-in pages post forms). */
export function authenticationFromForm(text: unknown): AuthenticationResponseJSON {
  if (typeof text !== 'string' || text.length === 0 || text.length > 12_000) throw badRequest('invalid_passkey_answer', 'the passkey answer is missing');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw badRequest('invalid_passkey_answer', 'the passkey answer could not be read');
  }
  const r = authenticationResponse.safeParse(raw);
  if (!r.success) throw badRequest('invalid_passkey_answer', 'the passkey answer could not be read');
  return r.data;
}
