import { createCipheriv, createHash, getHashes, randomBytes } from 'node:crypto';

/**
 * The client side of MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079), to play a VPN client
 * in the tests: a response an upstream FreeRADIUS verifies, and the keys the NAS must end up
 * with. Node's OpenSSL 3 has neither MD4 nor single DES by default: MD4 is written out here
 * (RFC 1320) and DES is 3DES-EDE with the same key three times (E_K(D_K(E_K(x))) = E_K(x)).
 */

const rotl = (x: number, n: number) => ((x << n) | (x >>> (32 - n))) >>> 0;

/** RFC 1320 MD4 (OpenSSL's when the build has it, else this one). */
export function md4(data: Buffer): Buffer {
  if (getHashes().includes('md4')) {
    try {
      return createHash('md4').update(data).digest();
    } catch {
      // Listed but in the legacy provider: fall through.
    }
  }
  const bitLen = data.length * 8;
  const padLen = ((data.length + 8) >> 6) * 64 + 64;
  const m = Buffer.alloc(padLen);
  data.copy(m);
  m[data.length] = 0x80;
  m.writeUInt32LE(bitLen >>> 0, padLen - 8);
  m.writeUInt32LE(Math.floor(bitLen / 2 ** 32), padLen - 4);
  let [a, b, c, d] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
  const F = (x: number, y: number, z: number) => (x & y) | (~x & z);
  const G = (x: number, y: number, z: number) => (x & y) | (x & z) | (y & z);
  const H = (x: number, y: number, z: number) => x ^ y ^ z;
  for (let off = 0; off < padLen; off += 64) {
    const X = Array.from({ length: 16 }, (_, i) => m.readUInt32LE(off + i * 4));
    const [aa, bb, cc, dd] = [a, b, c, d];
    const r1 = (p: number, q: number, r: number, s: number, k: number, sh: number) => rotl((p + F(q, r, s) + X[k]!) >>> 0, sh);
    const r2 = (p: number, q: number, r: number, s: number, k: number, sh: number) => rotl((p + G(q, r, s) + X[k]! + 0x5a827999) >>> 0, sh);
    const r3 = (p: number, q: number, r: number, s: number, k: number, sh: number) => rotl((p + H(q, r, s) + X[k]! + 0x6ed9eba1) >>> 0, sh);
    for (const k of [0, 4, 8, 12]) {
      a = r1(a, b, c, d, k, 3);
      d = r1(d, a, b, c, k + 1, 7);
      c = r1(c, d, a, b, k + 2, 11);
      b = r1(b, c, d, a, k + 3, 19);
    }
    for (const k of [0, 1, 2, 3]) {
      a = r2(a, b, c, d, k, 3);
      d = r2(d, a, b, c, k + 4, 5);
      c = r2(c, d, a, b, k + 8, 9);
      b = r2(b, c, d, a, k + 12, 13);
    }
    for (const k of [0, 2, 1, 3]) {
      a = r3(a, b, c, d, k, 3);
      d = r3(d, a, b, c, k + 8, 9);
      c = r3(c, d, a, b, k + 4, 11);
      b = r3(b, c, d, a, k + 12, 15);
    }
    [a, b, c, d] = [(a + aa) >>> 0, (b + bb) >>> 0, (c + cc) >>> 0, (d + dd) >>> 0];
  }
  const out = Buffer.alloc(16);
  [a, b, c, d].forEach((v, i) => out.writeUInt32LE(v, i * 4));
  return out;
}

const sha1 = (...parts: Buffer[]) => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 2759 §8.3 NtPasswordHash: MD4 of the UTF-16LE password. */
export const ntPasswordHash = (password: string) => md4(Buffer.from(password, 'utf16le'));

/** 7 key octets spread over 8 (the parity bits, ignored by DES, left 0). */
function desKey(k7: Buffer): Buffer {
  const k = Buffer.alloc(8);
  let bits = 0n;
  for (const b of k7) bits = (bits << 8n) | BigInt(b);
  for (let i = 0; i < 8; i++) k[i] = Number((bits >> BigInt(49 - 7 * i)) & 0x7fn) << 1;
  return k;
}

function desEncrypt(k7: Buffer, block: Buffer): Buffer {
  const k = desKey(k7);
  const c = createCipheriv('des-ede3-ecb', Buffer.concat([k, k, k]), null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}

/** RFC 2759 §8.5 ChallengeResponse: the 8-octet challenge under three DES keys cut from the zero-padded hash. */
export function challengeResponse(challenge: Buffer, passwordHash: Buffer): Buffer {
  const z = Buffer.alloc(21);
  passwordHash.copy(z);
  return Buffer.concat([desEncrypt(z.subarray(0, 7), challenge), desEncrypt(z.subarray(7, 14), challenge), desEncrypt(z.subarray(14, 21), challenge)]);
}

/** RFC 2759 §8.2 ChallengeHash. */
export const challengeHash = (peerChallenge: Buffer, authenticatorChallenge: Buffer, userName: string) =>
  sha1(peerChallenge, authenticatorChallenge, Buffer.from(userName)).subarray(0, 8);

/** RFC 2759 §8.7 GenerateAuthenticatorResponse: the "S=…" the server proves itself with. */
export function authenticatorResponse(password: string, ntResponse: Buffer, peerChallenge: Buffer, authenticatorChallenge: Buffer, userName: string): string {
  const hashHash = md4(ntPasswordHash(password));
  const magic1 = Buffer.from('Magic server to client signing constant');
  const magic2 = Buffer.from('Pad to make it do more than one iteration');
  const digest = sha1(hashHash, ntResponse, magic1);
  return `S=${sha1(digest, challengeHash(peerChallenge, authenticatorChallenge, userName), magic2).toString('hex').toUpperCase()}`;
}

export interface MsChapV2 {
  /** MS-CHAP-Challenge (vendor 311, type 11): the authenticator challenge. */
  challenge: Buffer;
  /** MS-CHAP2-Response (vendor 311, type 25): Ident, Flags, Peer-Challenge, 8 reserved, NT-Response. */
  response: Buffer;
  ntResponse: Buffer;
  peerChallenge: Buffer;
}

/** What a VPN client and its NAS send for `userName` / `password` (random challenges unless given). */
export function msChapV2(userName: string, password: string, opts: { ident?: number; authenticatorChallenge?: Buffer; peerChallenge?: Buffer } = {}): MsChapV2 {
  const challenge = opts.authenticatorChallenge ?? randomBytes(16);
  const peerChallenge = opts.peerChallenge ?? randomBytes(16);
  const ntResponse = challengeResponse(challengeHash(peerChallenge, challenge, userName), ntPasswordHash(password));
  const response = Buffer.concat([Buffer.from([opts.ident ?? 1, 0]), peerChallenge, Buffer.alloc(8), ntResponse]);
  return { challenge, response, ntResponse, peerChallenge };
}

const SHS_PAD1 = Buffer.alloc(40, 0x00);
const SHS_PAD2 = Buffer.alloc(40, 0xf2);
const MAGIC2 = Buffer.from('On the client side, this is the send key; on the server side, it is the receive key.');
const MAGIC3 = Buffer.from('On the client side, this is the receive key; on the server side, it is the send key.');

/** RFC 3079 §3.4 GetMasterKey. */
export const masterKey = (password: string, ntResponse: Buffer) =>
  sha1(md4(ntPasswordHash(password)), ntResponse, Buffer.from('This is the MPPE Master Key')).subarray(0, 16);

/** RFC 3079 §3.4 GetAsymmetricStartKey, 128-bit keys. */
export function asymmetricStartKey(master: Buffer, isSend: boolean, isServer: boolean): Buffer {
  const magic = isSend === isServer ? MAGIC3 : MAGIC2;
  return sha1(master, SHS_PAD1, magic, SHS_PAD2).subarray(0, 16);
}

/**
 * The 128-bit MPPE keys as the NAS (the server side) must get them: MS-MPPE-Send-Key encrypts
 * what the NAS sends, MS-MPPE-Recv-Key what it receives (RFC 2548 §2.4.2, §2.4.3).
 */
export function serverMppeKeys(password: string, ntResponse: Buffer): { send: Buffer; recv: Buffer } {
  const master = masterKey(password, ntResponse);
  return { send: asymmetricStartKey(master, true, true), recv: asymmetricStartKey(master, false, true) };
}
