import { createHash, randomBytes } from 'node:crypto';

/**
 * The attribute cryptography a RADIUS hop must redo when it sits between a NAS and the server
 * that checked the password: User-Password hiding (RFC 2865 §5.2), the salted encryption of
 * MS-MPPE-Send-Key / MS-MPPE-Recv-Key (RFC 2548 §2.4.2, §2.4.3), and MS-CHAP-MPPE-Keys (RFC 2548
 * §2.4.1, hidden like User-Password). Each is keyed by a shared secret and the Request
 * Authenticator of the request being answered, so what the upstream encrypted for Countersign is
 * decrypted here and encrypted again for the NAS, for the very request the Accept answers.
 */

export const VENDOR_MICROSOFT = 311;
export const VENDOR_SPECIFIC = 26;

/** Microsoft vendor attribute types (RFC 2548). */
export const MS = {
  CHAP_RESPONSE: 1,
  CHAP_ERROR: 2,
  MPPE_ENCRYPTION_POLICY: 7,
  MPPE_ENCRYPTION_TYPES: 8,
  CHAP_CHALLENGE: 11,
  CHAP_MPPE_KEYS: 12,
  MPPE_SEND_KEY: 16,
  MPPE_RECV_KEY: 17,
  CHAP2_RESPONSE: 25,
  CHAP2_SUCCESS: 26,
} as const;

const md5 = (...parts: Buffer[]) => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** b(i) = MD5(S + previous), XORed block by block; `feedback` picks which side chains (ciphertext). */
function md5Stream(data: Buffer, secret: Buffer, first: Buffer, decrypt: boolean): Buffer {
  const out = Buffer.alloc(data.length);
  let prev = first;
  for (let off = 0; off < data.length; off += 16) {
    const b = md5(secret, prev);
    for (let i = 0; i < 16; i++) out[off + i] = data[off + i]! ^ b[i]!;
    prev = (decrypt ? data : out).subarray(off, off + 16);
  }
  return out;
}

/** RFC 2865 §5.2: the password padded with NULs to a multiple of 16 (at most 128 octets), hidden. */
export function hidePassword(password: Buffer, secret: string, authenticator: Buffer): Buffer {
  if (password.length > 128) throw new RangeError('a RADIUS password is at most 128 octets');
  const padded = Buffer.alloc(Math.max(16, Math.ceil(password.length / 16) * 16));
  password.copy(padded);
  return md5Stream(padded, Buffer.from(secret), authenticator, false);
}

/** RFC 2865 §5.2 reversed; the trailing NUL padding is kept (callers strip what they must). */
export function unhidePassword(hidden: Buffer, secret: string, authenticator: Buffer): Buffer {
  if (hidden.length === 0 || hidden.length % 16 !== 0 || hidden.length > 128) throw new RangeError('a hidden RADIUS password is 16 to 128 octets, a multiple of 16');
  return md5Stream(hidden, Buffer.from(secret), authenticator, true);
}

/**
 * RFC 2548 §2.4.2: Salt (2 octets, high bit set) + encrypted(Key-Length + Key + padding), with
 * b(1) = MD5(S + R + A): R the Request Authenticator, A the salt.
 */
export function encryptMppeKey(key: Buffer, secret: string, authenticator: Buffer, salt: Buffer): Buffer {
  if (salt.length !== 2 || (salt[0]! & 0x80) === 0) throw new RangeError('an MPPE key salt is 2 octets with the high bit set');
  if (key.length > 239) throw new RangeError('an MPPE key is at most 239 octets');
  const plain = Buffer.alloc(Math.ceil((key.length + 1) / 16) * 16);
  plain[0] = key.length;
  key.copy(plain, 1);
  return Buffer.concat([salt, md5Stream(plain, Buffer.from(secret), Buffer.concat([authenticator, salt]), false)]);
}

/** RFC 2548 §2.4.2 reversed; throws when the value cannot be one (bad length, salt or key length). */
export function decryptMppeKey(value: Buffer, secret: string, authenticator: Buffer): Buffer {
  if (value.length < 18 || (value.length - 2) % 16 !== 0) throw new RangeError('an encrypted MPPE key is 2 + a multiple of 16 octets');
  const salt = value.subarray(0, 2);
  if ((salt[0]! & 0x80) === 0) throw new RangeError('an MPPE key salt has its high bit set');
  const plain = md5Stream(value.subarray(2), Buffer.from(secret), Buffer.concat([authenticator, salt]), true);
  const length = plain[0]!;
  // A wrong secret or authenticator often shows here as a length that cannot fit, but not always
  // (the octet is then random): callers decrypt only answers whose authenticators verified.
  if (length === 0 || length > plain.length - 1) throw new RangeError('the MPPE key does not decrypt (wrong secret or authenticator)');
  return plain.subarray(1, 1 + length);
}

/** `n` distinct salts with the high bit set (RFC 2548: unique within one packet). */
export function freshSalts(n: number): Buffer[] {
  const seen = new Set<number>();
  const salts: Buffer[] = [];
  while (salts.length < n) {
    const s = randomBytes(2);
    s[0]! |= 0x80;
    const v = s.readUInt16BE(0);
    if (seen.has(v)) continue;
    seen.add(v);
    salts.push(s);
  }
  return salts;
}

/** One Microsoft vendor attribute as the value of a Vendor-Specific (26) attribute. */
export function msAttribute(type: number, value: Buffer): Buffer {
  if (value.length > 247) throw new RangeError('a vendor attribute value is at most 247 octets');
  const b = Buffer.alloc(6 + value.length);
  b.writeUInt32BE(VENDOR_MICROSOFT, 0);
  b[4] = type;
  b[5] = value.length + 2;
  value.copy(b, 6);
  return b;
}

/**
 * The Microsoft sub-attributes of the Vendor-Specific attributes given (one 26 may hold
 * several); other vendors' and malformed ones are skipped.
 */
export function msAttributes(attributes: [number, Buffer][]): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (const [type, v] of attributes) {
    if (type !== VENDOR_SPECIFIC || v.length < 6 || v.readUInt32BE(0) !== VENDOR_MICROSOFT) continue;
    for (let off = 4; off + 2 <= v.length; ) {
      const len = v[off + 1]!;
      if (len < 2 || off + len > v.length) break;
      out.push([v[off]!, v.subarray(off + 2, off + len)]);
      off += len;
    }
  }
  return out;
}

/**
 * What an upstream's Access-Accept hands on to the NAS, with the keys in the clear: it exists
 * only in memory or sealed (secretbox) in the store between the rounds of challenge mode.
 */
export interface CarriedAttributes {
  /** Microsoft attributes passed as they are (MS-CHAP2-Success, MPPE policy and types), hex. */
  plain: [number, string][];
  /** MS-MPPE-Send-Key / MS-MPPE-Recv-Key (and MS-CHAP-MPPE-Keys), decrypted, hex. */
  keys: [number, string][];
  /** Class attributes, hex. */
  classes: string[];
}

const CLASS = 25;
const PASSED = new Set<number>([MS.CHAP2_SUCCESS, MS.MPPE_ENCRYPTION_POLICY, MS.MPPE_ENCRYPTION_TYPES]);

/**
 * Reads the attributes to carry from an upstream Access-Accept: the salted keys decrypted with
 * the upstream's secret and the authenticator of the request Countersign sent it. A key that
 * does not decrypt fails the whole answer (the caller rejects): a VPN given a wrong key would
 * fail later with no word why, and the server may not be who it claims.
 */
export function carryFromAccept(attributes: [number, Buffer][], secret: string, requestAuthenticator: Buffer): CarriedAttributes {
  const carried: CarriedAttributes = { plain: [], keys: [], classes: [] };
  for (const [type, value] of msAttributes(attributes)) {
    if (PASSED.has(type)) carried.plain.push([type, value.toString('hex')]);
    else if (type === MS.MPPE_SEND_KEY || type === MS.MPPE_RECV_KEY) carried.keys.push([type, decryptMppeKey(value, secret, requestAuthenticator).toString('hex')]);
    else if (type === MS.CHAP_MPPE_KEYS) carried.keys.push([type, unhidePassword(value, secret, requestAuthenticator).toString('hex')]);
    // Anything else (MS-CHAP-Domain, vendor attributes of other vendors…) stays upstream.
  }
  for (const [type, value] of attributes) if (type === CLASS) carried.classes.push(value.toString('hex'));
  return carried;
}

/**
 * The carried attributes for the Access-Accept answering the NAS request with `authenticator`,
 * keys encrypted again with the NAS's secret and fresh, distinct salts.
 */
export function attributesForNas(carried: CarriedAttributes, secret: string, authenticator: Buffer): [string, Buffer][] {
  const salted = carried.keys.filter(([t]) => t !== MS.CHAP_MPPE_KEYS);
  const salts = freshSalts(salted.length);
  const out: [string, Buffer][] = [];
  for (const [type, hex] of carried.plain) out.push(['Vendor-Specific', msAttribute(type, Buffer.from(hex, 'hex'))]);
  for (const [type, hex] of carried.keys) {
    const key = Buffer.from(hex, 'hex');
    const value = type === MS.CHAP_MPPE_KEYS ? hidePassword(key, secret, authenticator) : encryptMppeKey(key, secret, authenticator, salts.shift()!);
    out.push(['Vendor-Specific', msAttribute(type, value)]);
  }
  for (const hex of carried.classes) out.push(['Class', Buffer.from(hex, 'hex')]);
  return out;
}

/** MS-CHAP-Error from an upstream Access-Reject, for the NAS (it tells the client why, e.g. E=691). */
export function chapErrors(attributes: [number, Buffer][]): [string, Buffer][] {
  return msAttributes(attributes)
    .filter(([t]) => t === MS.CHAP_ERROR)
    .map(([t, v]) => ['Vendor-Specific', msAttribute(t, v)] as [string, Buffer]);
}
