import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type OtpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';

export interface OtpParams {
  type: 'totp' | 'hotp';
  algorithm: OtpAlgorithm;
  digits: number;
  /** Seconds per step; used by TOTP only. */
  period: number;
}

const HMAC: Record<OtpAlgorithm, { name: string; secretBytes: number }> = {
  SHA1: { name: 'sha1', secretBytes: 20 },
  SHA256: { name: 'sha256', secretBytes: 32 },
  SHA512: { name: 'sha512', secretBytes: 64 },
};

function hmacOf(algorithm: OtpAlgorithm) {
  // Looked up at run time too: stored records may hold values the types don't know about.
  const h = Object.hasOwn(HMAC, algorithm) ? HMAC[algorithm] : undefined;
  if (!h) throw new Error(`unsupported OTP algorithm '${algorithm}'`);
  return h;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32, upper case, without padding. */
export function base32Encode(buf: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** Case-insensitive; whitespace and '=' padding are ignored. */
export function base32Decode(s: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of s.replace(/[\s=]/g, '')) {
    // Upper-case per character and only ASCII: String#toUpperCase would turn 'ß' into 'SS'.
    const v = ALPHABET.indexOf(/^[a-z]$/.test(ch) ? ch.toUpperCase() : ch);
    if (v < 0) throw new Error(`invalid base32 character '${ch}'`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 4226 HOTP with dynamic truncation. */
export function hotp(secret: Buffer, counter: number, algorithm: OtpAlgorithm, digits: number): string {
  if (!Number.isInteger(digits) || digits < 6 || digits > 8) throw new RangeError(`OTP digits must be 6 to 8, got ${digits}`);
  if (!Number.isInteger(counter) || counter < 0 || counter > 2 ** 53) throw new RangeError(`invalid OTP counter ${counter}`);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(hmacOf(algorithm).name, secret).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const bin = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(bin % 10 ** digits).padStart(digits, '0');
}

export function totpStep(nowMs: number, period: number): number {
  if (!(period > 0)) throw new RangeError(`invalid TOTP period ${period}`);
  // One division instead of two: a single rounding, so steps flip exactly on the boundary.
  return Math.floor(nowMs / (period * 1000));
}

export function totp(secret: Buffer, nowMs: number, p: Pick<OtpParams, 'algorithm' | 'digits' | 'period'>): string {
  return hotp(secret, totpStep(nowMs, p.period), p.algorithm, p.digits);
}

/**
 * Finds which counter/step in from..to (inclusive) `code` belongs to, or null.
 * Every candidate is computed and compared in constant time, so the time taken
 * does not reveal where (or whether) the code matched. Negative candidates,
 * as a TOTP window near the epoch produces, are skipped.
 */
export function findOtpMatch(
  secret: Buffer,
  code: string,
  from: number,
  to: number,
  algorithm: OtpAlgorithm,
  digits: number,
): number | null {
  if (code.length !== digits || !/^[0-9]+$/.test(code)) return null;
  const given = Buffer.from(code);
  let match: number | null = null;
  for (let c = Math.max(from, 0); c <= Math.min(to, 2 ** 53); c++) {
    const equal = timingSafeEqual(given, Buffer.from(hotp(secret, c, algorithm, digits)));
    if (equal && match === null) match = c;
  }
  return match;
}

/** Google Authenticator Key Uri Format; RFC 3986 encoding (space as %20, never '+'). */
export function otpauthUri(opts: { issuer: string; account: string; secret: Buffer; params: OtpParams; counter?: number }): string {
  const { issuer, account, secret, params } = opts;
  const enc = encodeURIComponent;
  const query = [
    `secret=${base32Encode(secret)}`,
    `issuer=${enc(issuer)}`,
    `algorithm=${params.algorithm}`,
    `digits=${params.digits}`,
    params.type === 'hotp' ? `counter=${opts.counter ?? 0}` : `period=${params.period}`,
  ];
  return `otpauth://${params.type}/${enc(issuer)}:${enc(account)}?${query.join('&')}`;
}

export function newOtpSecret(algorithm: OtpAlgorithm): Buffer {
  return randomBytes(hmacOf(algorithm).secretBytes);
}
