import { z } from 'zod';
import { badRequest } from '../core/errors.js';

/** Parses input at the edge; a mismatch is a 400 that names the field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what = 'request'): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest('invalid_input', `invalid ${what}: ${z.prettifyError(r.error).replace(/\n/g, '; ')}`);
  return r.data;
}

/**
 * A login name as people type it: a local name, an e-mail-like UPN (alice@corp.example.org), or
 * a NetBIOS-qualified Windows name (CORP\\alice).
 */
export const userName = z
  .string()
  .regex(
    /^(?:[A-Za-z0-9][A-Za-z0-9.-]{0,14}\\)?[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/,
    'a user name is 1-128 letters, digits or . _ @ + - starting with a letter or digit, optionally after DOMAIN\\',
  );

/** A name for a user made here (not a login form): no DOMAIN\\ prefix. */
export const localUserName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/, 'a user name is 1-128 letters, digits or . _ @ + - and starts with a letter or digit');
