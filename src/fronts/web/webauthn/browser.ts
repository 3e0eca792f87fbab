/**
 * The browser side of a passkey ceremony, served as the ES module /webauthn.js. It is kept
 * here as text (not a static file) so the build carries it like any module. No dependency:
 * the JSON options of @simplewebauthn/server are turned into the ArrayBuffers that
 * navigator.credentials wants, and the credential back into JSON (base64url).
 */
export const WEBAUTHN_JS = String.raw`// Countersign passkeys: register(optionsJSON) and authenticate(optionsJSON).
const toBuffer = (b64url) => {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((b64url.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
};
const toB64url = (buf) => {
  const bytes = new Uint8Array(buf);
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};
const descriptors = (list) => (list || []).map((c) => ({ ...c, id: toBuffer(c.id) }));

/** True when this browser can make and use passkeys. */
export const supported = () => typeof window !== 'undefined' && typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;

/** Runs navigator.credentials.create with the server's options; resolves to a RegistrationResponseJSON. */
export async function register(options) {
  if (!supported()) throw new Error('This browser cannot use passkeys.');
  const publicKey = {
    ...options,
    challenge: toBuffer(options.challenge),
    user: { ...options.user, id: toBuffer(options.user.id) },
    excludeCredentials: descriptors(options.excludeCredentials),
  };
  const cred = await navigator.credentials.create({ publicKey });
  if (!cred) throw new Error('No passkey was made.');
  const r = cred.response;
  const transports = typeof r.getTransports === 'function' ? r.getTransports() : undefined;
  const publicKeyAlgorithm = typeof r.getPublicKeyAlgorithm === 'function' ? r.getPublicKeyAlgorithm() : undefined;
  const authenticatorData = typeof r.getAuthenticatorData === 'function' ? toB64url(r.getAuthenticatorData()) : undefined;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      clientDataJSON: toB64url(r.clientDataJSON),
      attestationObject: toB64url(r.attestationObject),
      ...(transports ? { transports } : {}),
      ...(publicKeyAlgorithm !== undefined ? { publicKeyAlgorithm } : {}),
      ...(authenticatorData ? { authenticatorData } : {}),
    },
    clientExtensionResults: cred.getClientExtensionResults(),
    ...(cred.authenticatorAttachment ? { authenticatorAttachment: cred.authenticatorAttachment } : {}),
  };
}

/** Runs navigator.credentials.get with the server's options; resolves to an AuthenticationResponseJSON. */
export async function authenticate(options) {
  if (!supported()) throw new Error('This browser cannot use passkeys.');
  const publicKey = { ...options, challenge: toBuffer(options.challenge), allowCredentials: descriptors(options.allowCredentials) };
  const cred = await navigator.credentials.get({ publicKey });
  if (!cred) throw new Error('No passkey was used.');
  const r = cred.response;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      clientDataJSON: toB64url(r.clientDataJSON),
      authenticatorData: toB64url(r.authenticatorData),
      signature: toB64url(r.signature),
      ...(r.userHandle ? { userHandle: toB64url(r.userHandle) } : {}),
    },
    clientExtensionResults: cred.getClientExtensionResults(),
    ...(cred.authenticatorAttachment ? { authenticatorAttachment: cred.authenticatorAttachment } : {}),
  };
}

/** Words for a person when the browser refused or the user cancelled. */
export function problem(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError') return 'The passkey prompt was cancelled or timed out.';
  if (name === 'InvalidStateError') return 'This authenticator already holds a passkey for this account.';
  if (name === 'SecurityError') return 'Passkeys do not work on this address; use the server’s public address.';
  return (err && err.message) || 'The passkey could not be used.';
}
`;
