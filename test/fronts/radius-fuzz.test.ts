import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import radius from 'radius';
import { base32Decode, hotp, totpStep } from '../../src/core/otp.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { q, radclient } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

/*
 * Fuzzes the RADIUS listener with >= 100,000 malformed datagrams from one
 * dgram socket on 127.0.0.1 and records every answer. Seeded: a failure
 * reproduces with COUNTERSIGN_FUZZ_SEED=<seed> (the seed is printed).
 *
 * Note on the `radius` package: encode() fills Message-Authenticator only
 * when it adds the attribute itself (add_message_authenticator: true, or an
 * EAP-Message present). An explicit ['Message-Authenticator', zeros] makes it
 * set add_message_authenticator = false and leave the 16 zero bytes, so the
 * packets built here are signed by sign() below (checked in a test).
 */

const SECRET = 'fuzz-shared-secret';
const TOTAL = Number(process.env.COUNTERSIGN_FUZZ_TOTAL ?? 100_000);
const SEED = (process.env.COUNTERSIGN_FUZZ_SEED ? Number(process.env.COUNTERSIGN_FUZZ_SEED) : Math.floor(Math.random() * 2 ** 32)) >>> 0;
console.log(`# radius fuzz seed ${SEED} (reproduce with COUNTERSIGN_FUZZ_SEED=${SEED})`);

const haveRadclient = hasCommand('radclient');
const haveOathtool = hasCommand('oathtool');

// ---------------------------------------------------------------- PRNG (mulberry32)

function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    range: (lo: number, hi: number) => lo + int(hi - lo + 1),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes: (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    ascii: (n: number) => {
      let s = '';
      for (let i = 0; i < n; i++) s += String.fromCharCode(0x61 + int(26));
      return s;
    },
  };
}
type Rng = ReturnType<typeof prng>;

// ---------------------------------------------------------------- wire helpers

type Attr = [number, Buffer];
const USER_NAME = 1;
const USER_PASSWORD = 2;
const STATE = 24;
const CLASS = 25;
const PROXY_STATE = 33;
const NAS_IDENTIFIER = 32;
const MA = 80;

/** A packet from raw attributes; Length = the bytes written. Values over 253 bytes are the caller's business. */
function rawPacket(code: number, id: number, auth: Buffer, attrs: Attr[]): Buffer {
  const parts = attrs.map(([t, v]) => Buffer.concat([Buffer.from([t, (v.length + 2) & 0xff]), v]));
  const head = Buffer.alloc(20);
  head[0] = code;
  head[1] = id;
  auth.copy(head, 4);
  const pkt = Buffer.concat([head, ...parts]);
  pkt.writeUInt16BE(Math.min(pkt.length, 0xffff), 2);
  return pkt;
}

/** RFC 3579 §3.2: HMAC-MD5 over the packet (up to Length) with the first well-sized Message-Authenticator zeroed. */
function sign(pkt: Buffer, secret: string): Buffer {
  const length = Math.min(pkt.readUInt16BE(2), pkt.length);
  for (let off = 20; off + 2 <= length; ) {
    const len = pkt[off + 1]!;
    if (len < 2) break;
    if (pkt[off] === MA && len === 18 && off + 18 <= length) {
      pkt.fill(0, off + 2, off + 18);
      createHmac('md5', secret).update(pkt.subarray(0, length)).digest().copy(pkt, off + 2);
      break;
    }
    off += len;
  }
  return pkt;
}

/** RFC 2865 §5.2 User-Password hiding. */
function pap(password: Buffer, secret: string, auth: Buffer): Buffer {
  const n = Math.max(16, Math.ceil(password.length / 16) * 16);
  const p = Buffer.alloc(n);
  password.copy(p);
  const out = Buffer.alloc(n);
  let prev = auth;
  for (let i = 0; i < n; i += 16) {
    const h = createHash('md5').update(secret).update(prev).digest();
    for (let j = 0; j < 16; j++) out[i + j] = p[i + j]! ^ h[j]!;
    prev = out.subarray(i, i + 16);
  }
  return out;
}

/** Response Authenticator (RFC 2865 §3) over the datagram as received, with the request's authenticator. */
function responseAuthOk(reply: Buffer, reqAuth: Buffer, secret: string): boolean {
  if (reply.length < 20) return false;
  const expected = createHash('md5').update(reply.subarray(0, 4)).update(reqAuth).update(reply.subarray(20)).update(secret).digest();
  return expected.equals(reply.subarray(4, 20));
}

/** What is wrong with a reply that should be a well-formed, signed Access-Reject, or null. */
function replyProblem(reply: Buffer, reqAuth: Buffer, secret: string): string | null {
  if (reply.length < 20) return `reply of ${reply.length} bytes`;
  if (reply[0] !== 3) return `code ${reply[0]} instead of Access-Reject (3)`;
  const length = reply.readUInt16BE(2);
  if (length !== reply.length) return `Length field ${length} but a datagram of ${reply.length} bytes`;
  if (length > 4096) return `reply of ${length} bytes (> 4096)`;
  let mas = 0;
  for (let off = 20; off < length; ) {
    if (off + 2 > length) return `truncated attribute header at ${off}`;
    const len = reply[off + 1]!;
    if (len < 2 || off + len > length) return `attribute ${reply[off]} at ${off} has length ${len}`;
    if (reply[off] === MA) mas++;
    off += len;
  }
  if (reply[20] !== MA || reply[21] !== 18) return `first attribute is ${reply[20]}/${reply[21]}, not Message-Authenticator`;
  if (mas !== 1) return `${mas} Message-Authenticators`;
  if (!responseAuthOk(reply, reqAuth, secret)) return 'Response Authenticator does not verify';
  const zeroed = Buffer.from(reply);
  reqAuth.copy(zeroed, 4);
  zeroed.fill(0, 22, 38);
  if (!createHmac('md5', secret).update(zeroed).digest().equals(reply.subarray(22, 38))) return 'Message-Authenticator does not verify';
  return null;
}

// ---------------------------------------------------------------- the probes

/** none: must not be answered; any: an Access-Reject or nothing; reply: must get an Access-Reject. */
type Expect = 'none' | 'any' | 'reply';
interface Probe {
  buf: Buffer;
  kind: string;
  expect: Expect;
}

interface FuzzUsers {
  malloryOtp: Buffer;
}

function generator(rng: Rng, users: FuzzUsers) {
  const caps = new Map<string, number>();
  /** Expensive kinds (scrypt with the default cost for unknown users, challenges) are capped. */
  const capped = (name: string, max: number) => {
    const n = caps.get(name) ?? 0;
    if (n >= max) return false;
    caps.set(name, n + 1);
    return true;
  };
  const id = () => rng.int(256);
  const auth = () => rng.bytes(16);

  /** A six-digit code that is not mallory's code anywhere near now. */
  const notMallorysCode = () => {
    const step = totpStep(Date.now(), 30);
    const near = new Set<string>();
    for (let s = step - 4; s <= step + 4; s++) near.add(hotp(users.malloryOtp, s, 'SHA1', 6));
    let c: string;
    do c = String(rng.int(1_000_000)).padStart(6, '0');
    while (near.has(c));
    return c;
  };

  /** Attributes every decoder understands. */
  const benign = (): [string, unknown][] => {
    const out: [string, unknown][] = [];
    const n = rng.int(4);
    for (let i = 0; i < n; i++) {
      const k = rng.int(6);
      if (k === 0) out.push(['NAS-Identifier', `nas-${rng.ascii(rng.range(1, 20))}`]);
      else if (k === 1) out.push(['Calling-Station-Id', `10.0.${rng.int(256)}.${rng.int(256)}`]);
      else if (k === 2) out.push(['NAS-Port', rng.int(65536)]);
      else if (k === 3) out.push(['Proxy-State', rng.bytes(rng.range(1, 40))]);
      else if (k === 4) out.push(['Class', rng.bytes(rng.range(1, 60))]);
      else out.push(['NAS-IP-Address', `192.0.2.${rng.int(256)}`]);
    }
    return out;
  };

  /** A signed Access-Request built with the `radius` package (Message-Authenticator anywhere). */
  const lib = (attrs: [string | number, unknown][], secret = SECRET): Buffer => {
    const authenticator = auth();
    // encode() hides an empty password as an empty attribute, which RFC 2865 §5.2 does not allow
    // (at least 16 octets): hide that one here and hand it over as bytes.
    const all = attrs.map(([n, v]): [string | number, unknown] => (n === 'User-Password' && v === '' ? [n, pap(Buffer.alloc(0), secret, authenticator)] : [n, v]));
    all.splice(rng.int(all.length + 1), 0, ['Message-Authenticator', Buffer.alloc(16)]);
    const args = { code: 'Access-Request', secret, identifier: id(), authenticator, attributes: all };
    return sign(radius.encode(args as Parameters<typeof radius.encode>[0]), secret);
  };

  /** Credentials a well-formed request may carry: none of them may ever be accepted. */
  const credentials = (): { kind: string; attrs: [string, unknown][] } => {
    const k = rng.int(100);
    // (With a delimiter the password is checked twice: split, then whole. Each check is an scrypt.)
    if (k < 30) return { kind: 'wrong-password', attrs: [['User-Name', 'mallory'], ['User-Password', `wrong-${rng.ascii(6)},${String(rng.int(1e6)).padStart(6, '0')}`]] };
    if (k < 55) return { kind: 'wrong-password', attrs: [['User-Name', 'mallory'], ['User-Password', `wrong-${rng.ascii(rng.range(1, 30))}`]] };
    if (k < 65) return { kind: 'wrong-password-alice', attrs: [['User-Name', 'alice'], ['User-Password', `alice-${rng.ascii(4)}`]] };
    if (k < 73) return { kind: 'no-password', attrs: [['User-Name', rng.pick(['mallory', 'alice', 'nobody'])]] };
    if (k < 81) return { kind: 'unknown-state', attrs: [['User-Name', 'mallory'], ['User-Password', ''], ['State', rng.bytes(rng.range(1, 64))]] };
    if (k < 86 && capped('right-password-wrong-otp', 40)) return { kind: 'right-password-wrong-otp', attrs: [['User-Name', 'mallory'], ['User-Password', `mallory-pw,${notMallorysCode()}`]] };
    if (k < 89 && capped('right-password-no-push', 25)) return { kind: 'right-password-no-push', attrs: [['User-Name', 'mallory'], ['User-Password', rng.pick(['mallory-pw', 'mallory-pw,push', 'mallory-pw,PUSH'])]] };
    if (k < 91 && capped('unknown-user', 12)) return { kind: 'unknown-user', attrs: [['User-Name', `ghost-${rng.ascii(rng.range(1, 240))}`], ['User-Password', 'x,123456']] };
    if (k < 95) return { kind: 'long-password', attrs: [['User-Name', 'mallory'], ['User-Password', rng.ascii(rng.range(17, 128))]] };
    return { kind: 'empty-password', attrs: [['User-Name', 'mallory'], ['User-Password', '']] };
  };

  /** A well-formed, signed request that must be answered with an Access-Reject. */
  const clean = (): Probe => {
    const c = credentials();
    return { buf: lib([...c.attrs, ...benign()]), kind: `clean/${c.kind}`, expect: 'reply' };
  };

  /** A clean packet only ever used as material: built and signed, never sent as is. */
  const base = () => lib([['User-Name', 'mallory'], ['User-Password', `wrong-${rng.ascii(5)},123456`], ...benign()]);

  const resend: Buffer[] = [];

  const nonUtf8 = [
    [0xff],
    [0xfe, 0xff],
    [0xc0, 0xaf],
    [0xe0, 0x80, 0xaf],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0x61, 0xe2, 0x82],
    [0x80],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
  ].map((b) => Buffer.from(b));

  const kinds: [number, () => Probe][] = [
    // Random bytes, mostly short, some past 4096; a third with a plausible header.
    [14, () => {
      const n = rng.chance(0.9) ? rng.int(200) : rng.range(200, 5000);
      const b = rng.bytes(n);
      if (n >= 4 && rng.chance(0.33)) {
        b[0] = 1;
        b.writeUInt16BE(n, 2);
      }
      return { buf: b, kind: 'random-bytes', expect: 'none' };
    }],
    // Truncated: a signed packet cut short (Length now beyond the datagram).
    [8, () => {
      const b = base();
      return { buf: b.subarray(0, rng.int(b.length)), kind: 'truncated', expect: 'none' };
    }],
    // Length field shorter, longer than the datagram, past 4096, or 0..19.
    [9, () => {
      const b = Buffer.from(base());
      const k = rng.int(4);
      const len = k === 0 ? rng.range(20, b.length - 1) : k === 1 ? rng.range(b.length + 1, 4096) : k === 2 ? rng.range(4097, 65535) : rng.int(20);
      b.writeUInt16BE(len, 2);
      const kind = `length-field/${['short', 'long', 'over-4096', 'under-header'][k]}`;
      // Re-signed with a shorter Length that ends on an attribute boundary, the rest is padding: a valid request.
      if (rng.chance(0.5)) return { buf: sign(b, SECRET), kind: `${kind}/re-signed`, expect: 'any' };
      return { buf: b, kind, expect: 'none' };
    }],
    // Attribute lengths 0 or 1, overrunning the packet, or a dangling attribute header.
    [9, () => {
      const k = rng.int(4);
      const attrs: Attr[] = [[USER_NAME, Buffer.from('mallory')], [MA, Buffer.alloc(16)]];
      let b = rawPacket(1, id(), auth(), attrs);
      const at = 20 + (rng.chance(0.5) ? 0 : 9); // the first or the second attribute
      if (k === 0 || k === 1) b[at + 1] = k;
      else if (k === 2) b[at + 1] = rng.range(b.length - at + 1, 255);
      else {
        b = Buffer.concat([b, Buffer.from([rng.int(256)])]);
        b.writeUInt16BE(b.length, 2);
      }
      return { buf: sign(b, SECRET), kind: `attribute-length/${['0', '1', 'overrun', 'dangling'][k]}`, expect: 'none' };
    }],
    // Duplicate User-Name / User-Password / State, or no User-Name: signed.
    [6, () => {
      const a = auth();
      const k = rng.int(4);
      const attrs: Attr[] = [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, pap(Buffer.from('wrong,123456'), SECRET, a)], [MA, Buffer.alloc(16)]];
      if (k === 0) attrs.push([USER_NAME, Buffer.from(rng.pick(['mallory', 'alice', 'admin']))]);
      if (k === 1) attrs.push([USER_PASSWORD, pap(Buffer.from('mallory-pw,123456'), SECRET, a)]);
      if (k === 2) attrs.push([STATE, rng.bytes(16)], [STATE, rng.bytes(16)]);
      if (k === 3) attrs.shift();
      for (let i = attrs.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [attrs[i], attrs[j]] = [attrs[j]!, attrs[i]!];
      }
      return { buf: sign(rawPacket(1, id(), a, attrs), SECRET), kind: `duplicate/${['User-Name', 'User-Password', 'State', 'no-User-Name'][k]}`, expect: 'any' };
    }],
    // Non-UTF-8 User-Name, signed.
    [5, () => {
      const a = auth();
      const name = Buffer.concat([Buffer.from(rng.ascii(rng.int(5))), rng.pick(nonUtf8), Buffer.from(rng.ascii(rng.int(5)))]);
      const attrs: Attr[] = [[USER_NAME, name], [USER_PASSWORD, pap(Buffer.from('wrong,123456'), SECRET, a)], [MA, Buffer.alloc(16)]];
      return { buf: sign(rawPacket(1, id(), a, attrs), SECRET), kind: 'non-utf8-user-name', expect: 'any' };
    }],
    // Codes other than Access-Request, on an otherwise valid signed packet. Not Status-Server (12),
    // which a known client with a valid Message-Authenticator is answered (radius-status.test.ts);
    // an Accounting-Request (4) signed so has a wrong Request Authenticator and is dropped.
    [8, () => {
      const b = Buffer.from(base());
      b[0] = rng.pick([0, 2, 3, 4, 5, 6, 11, 13, 40, 41, 43, 50, 254, 255, rng.range(14, 253)]);
      return { buf: sign(b, SECRET), kind: 'unknown-code', expect: 'none' };
    }],
    // Message-Authenticator: wrong value, wrong secret, missing, wrong size, twice.
    [12, () => {
      const k = rng.int(6);
      const a = auth();
      const pw = pap(Buffer.from('wrong,123456'), SECRET, a);
      if (k === 0) {
        const b = Buffer.from(base());
        const at = b.indexOf(Buffer.from([MA, 18]), 20);
        if (at > 0) b[at + 2 + rng.int(16)]! ^= 1 << rng.int(8);
        return { buf: b, kind: 'message-authenticator/corrupt', expect: 'none' };
      }
      if (k === 1) return { buf: lib([['User-Name', 'mallory'], ['User-Password', 'wrong,123456']], 'not-the-secret'), kind: 'message-authenticator/other-secret', expect: 'none' };
      if (k === 2) return { buf: radius.encode({ code: 'Access-Request', secret: SECRET, identifier: id(), attributes: [['User-Name', 'mallory'], ['User-Password', 'mallory-pw']] }), kind: 'message-authenticator/missing', expect: 'none' };
      if (k === 3) {
        const size = rng.pick([0, 1, 15, 17, 32, 100]);
        return { buf: rawPacket(1, id(), a, [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, pw], [MA, rng.bytes(size)]]), kind: 'message-authenticator/size', expect: 'none' };
      }
      if (k === 4) {
        const b = sign(rawPacket(1, id(), a, [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, pw], [MA, Buffer.alloc(16)], [MA, Buffer.alloc(16)]]), SECRET);
        return { buf: b, kind: 'message-authenticator/twice', expect: 'none' };
      }
      return { buf: rawPacket(1, id(), a, [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, pw], [MA, Buffer.alloc(16)]]), kind: 'message-authenticator/zero', expect: 'none' };
    }],
    // Bit flips of a valid signed packet: 1 to 4 distinct bits anywhere.
    [20, () => {
      const b = Buffer.from(base());
      const bits = new Set<number>();
      const n = rng.range(1, 4);
      while (bits.size < n) bits.add(rng.int(b.length * 8));
      for (const bit of bits) b[bit >> 3]! ^= 1 << (bit & 7);
      return { buf: b, kind: 'bit-flip', expect: 'none' };
    }],
    // Oversized: 253-byte values, packets at 4096, datagrams past 4096, User-Password lengths the decoder refuses.
    [6, () => {
      const k = rng.int(7);
      const a = auth();
      if (k === 0) {
        // Many Class attributes up to the 4096 limit: well-formed.
        // No User-Password: rejected without a password check ("Only PAP"), so cheap enough to send often.
        const attrs: [string, unknown][] = [['User-Name', 'mallory']];
        const n = rng.range(1, 15);
        for (let i = 0; i < n; i++) attrs.push(['Class', rng.bytes(253)]);
        return { buf: lib(attrs), kind: 'oversized/many-253-byte-attributes', expect: 'reply' };
      }
      if (k === 1) {
        // User-Password 144..240 bytes or not a multiple of 16, or empty.
        const len = rng.pick([0, 1, 15, 17, 33, 127, 144, 160, 240, 253]);
        const attrs: Attr[] = [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, rng.bytes(len)], [MA, Buffer.alloc(16)]];
        return { buf: sign(rawPacket(1, id(), a, attrs), SECRET), kind: 'oversized/bad-password-length', expect: 'any' };
      }
      if (k === 2) {
        // A datagram past 4096 bytes whose Length is small (the rest "padding").
        const b = base();
        return { buf: Buffer.concat([b, rng.bytes(4097 - b.length + rng.int(500))]), kind: 'oversized/datagram-over-4096', expect: 'none' };
      }
      if (k === 3) {
        // Attribute length byte claiming 255 with fewer bytes, on a 4096-byte packet.
        const b = rng.bytes(4096);
        b[0] = 1;
        b.writeUInt16BE(4096, 2);
        return { buf: b, kind: 'oversized/random-4096', expect: 'none' };
      }
      if (k === 4 && capped('long-user-name', 8)) {
        return { buf: lib([['User-Name', rng.ascii(253)], ['User-Password', 'x']]), kind: 'oversized/253-byte-user-name', expect: 'reply' };
      }
      if (k === 5) {
        // Vendor-Specific and unknown attribute types with odd contents, signed: decodable or not.
        const attrs: Attr[] = [[USER_NAME, Buffer.from('mallory')], [USER_PASSWORD, pap(Buffer.from('wrong,1'), SECRET, a)], [MA, Buffer.alloc(16)]];
        const n = rng.range(1, 6);
        for (let i = 0; i < n; i++) attrs.push([rng.pick([26, 26, 5, 4, 27, 61, 79, 255, rng.range(1, 255)]), rng.bytes(rng.int(40))]);
        return { buf: sign(rawPacket(1, id(), a, attrs), SECRET), kind: 'oversized/odd-attributes', expect: 'any' };
      }
      // Proxy-State near the limit: the echo in the reply must still fit in 4096 bytes. With a last
      // value of 203 or 204 bytes the request is 4095 or 4096 bytes and the Access-Reject ("Wrong user
      // name or password") would be 4097 or 4098: the first such probe always is one of those.
      if (capped('proxy-state-near-limit', 10)) {
        const attrs: [string | number, unknown][] = [['User-Name', 'mallory'], ['User-Password', 'wrong,123456']];
        for (let i = 0; i < 15; i++) attrs.push(['Proxy-State', rng.bytes(253)]);
        attrs.push(['Proxy-State', rng.bytes(caps.get('proxy-state-near-limit') === 1 ? rng.range(203, 204) : rng.range(190, 204))]);
        return { buf: lib(attrs), kind: 'oversized/proxy-state-near-4096', expect: 'any' };
      }
      return clean();
    }],
    // Padding past Length within 4096 (RFC 2865: ignored), retransmits of answered packets.
    [1, () => {
      if (resend.length && rng.chance(0.6)) return { buf: rng.pick(resend), kind: 'retransmit', expect: 'any' };
      const b = clean().buf;
      resend.push(b);
      return { buf: Buffer.concat([b, rng.bytes(rng.range(1, 200))]), kind: 'padded', expect: 'any' };
    }],
    // Well-formed requests with credentials that must be rejected.
    [0.8, clean],
  ];
  const total = kinds.reduce((a, [w]) => a + w, 0);
  return (): Probe => {
    let r = rng.next() * total;
    for (const [w, f] of kinds) {
      if ((r -= w) < 0) return f();
    }
    return clean();
  };
}

// ---------------------------------------------------------------- the run

interface Sent {
  auth: Buffer;
  kind: string;
  expect: Expect;
  answered: number;
}

interface Outcome {
  sent: number;
  processed: number;
  elapsedMs: number;
  byKind: Map<string, { sent: number; answered: number }>;
  accepts: string[];
  malformedReplies: string[];
  unexpectedReplies: string[];
  unmatchedReplies: string[];
  cleanSent: number;
  cleanAnswered: number;
  errorsLogged: unknown[];
  stalls: number;
}

const sumOf = async (c: { get(): Promise<{ values: { value: number }[] }> }) => (await c.get()).values.reduce((a, v) => a + v.value, 0);
const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const hex = (b: Buffer, n = 64) => b.subarray(0, n).toString('hex') + (b.length > n ? `…(${b.length} bytes)` : '');

async function fuzz(s: TestServer, users: FuzzUsers, errorsLogged: unknown[]): Promise<Outcome> {
  const rng = prng(SEED);
  const next = generator(rng, users);
  const m = s.ctx.metrics;
  const processed = async () =>
    (await sumOf(m.radiusDropped)) + (await sumOf(m.radiusRequests)) + (await sumOf(m.radiusDuplicates)) + (await sumOf(m.radiusAccounting)) + (await sumOf(m.radiusStatusServer)) + errorsLogged.length;
  const start = await processed();

  const out: Outcome = {
    sent: 0,
    processed: 0,
    elapsedMs: 0,
    byKind: new Map(),
    accepts: [],
    malformedReplies: [],
    unexpectedReplies: [],
    unmatchedReplies: [],
    cleanSent: 0,
    cleanAnswered: 0,
    errorsLogged,
    stalls: 0,
  };
  const byId: Sent[][] = Array.from({ length: 256 }, () => []);

  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg) => {
    if (msg.length < 20) return void out.unmatchedReplies.push(hex(msg));
    const list = byId[msg[1]!]!;
    let match: Sent | undefined;
    for (let i = list.length - 1; i >= 0 && !match; i--) if (responseAuthOk(msg, list[i]!.auth, SECRET)) match = list[i];
    if (msg[0] === 2) out.accepts.push(`Access-Accept to ${match?.kind ?? 'an unknown request'}: ${hex(msg)}`);
    if (!match) return void out.unmatchedReplies.push(`code ${msg[0]}: ${hex(msg)}`);
    match.answered++;
    out.byKind.get(match.kind)!.answered++;
    const problem = replyProblem(msg, match.auth, SECRET);
    if (problem) out.malformedReplies.push(`${match.kind}: ${problem}: ${hex(msg)}`);
    if (match.expect === 'none') out.unexpectedReplies.push(`${match.kind}: code ${msg[0]}: ${hex(msg)}`);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));

  // Flow control: keep the bytes not yet handled by the server (estimated with
  // the kernel's per-datagram overhead) well under the default 208 KiB buffer.
  const WINDOW = 96 * 1024;
  const cost = (n: number) => n + 1280;
  const prefix: number[] = [0];
  let done = 0;
  let lastProgress = Date.now();
  const started = Date.now();
  const clean: Sent[] = [];

  const send = async (p: Probe) => {
    while (prefix[out.sent]! + cost(p.buf.length) - prefix[Math.min(done, out.sent)]! > WINDOW) {
      await tick();
      const now = (await processed()) - start;
      if (now > done) {
        done = now;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > 5000) {
        out.stalls++;
        lastProgress = Date.now();
        break;
      }
    }
    const rec: Sent = { auth: Buffer.from(p.buf.length >= 20 ? p.buf.subarray(4, 20) : Buffer.alloc(16)), kind: p.kind, expect: p.expect, answered: 0 };
    if (p.buf.length >= 2) byId[p.buf[1]!]!.push(rec);
    if (p.expect === 'reply') clean.push(rec);
    const k = out.byKind.get(p.kind) ?? { sent: 0, answered: 0 };
    k.sent++;
    out.byKind.set(p.kind, k);
    sock.send(p.buf, s.radiusPort!, '127.0.0.1');
    prefix.push(prefix[out.sent]! + cost(p.buf.length));
    out.sent++;
    if (out.sent % 256 === 0) await tick();
  };

  try {
    for (let i = 0; i < TOTAL; i++) await send(next());
    // Wait for the server to work through everything (signed requests run scrypt).
    lastProgress = Date.now();
    while (Date.now() - lastProgress < 10_000) {
      const now = (await processed()) - start;
      if (now >= out.sent) break;
      if (now > done) {
        done = now;
        lastProgress = Date.now();
      }
      await sleep(20);
    }
    await sleep(300); // the last replies on their way
    out.processed = (await processed()) - start;
    out.elapsedMs = Date.now() - started;
    out.cleanSent = clean.length;
    out.cleanAnswered = clean.filter((c) => c.answered > 0).length;
  } finally {
    await new Promise<void>((r) => sock.close(() => r()));
  }
  return out;
}

const metric = (text: string, reason: string) => Number(new RegExp(`countersign_radius_dropped_total\\{reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
const DROP_REASONS = ['malformed', 'unsupported_code', 'bad_message_authenticator', 'missing_message_authenticator', 'bad_attributes', 'undecodable'];

/** Where alice signed in before the fuzz (her Calling-Station-Id): her usual place. */
const ALICE_HOME = '198.51.100.9';

describe(`RADIUS front under fuzz (seed ${SEED})`, () => {
  let s: TestServer;
  let out: Outcome;
  let aliceOtp: string;
  const errorsLogged: unknown[] = [];
  const dropsBefore = new Map<string, number>();

  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.radius.clients = [
        { name: 'fuzz-nas', address: '127.0.0.1/32', secret: SECRET, mode: 'append', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      ];
    });
    // Anything that escapes handle() ends in log.error ("unexpected failure"); the level is silent, so listen here.
    const log = s.ctx.log as unknown as { error: (...args: unknown[]) => void };
    log.error = (...args: unknown[]) => void errorsLogged.push(args);
    for (const [name, password] of [['alice', 'alice-pw'], ['mallory', 'mallory-pw']]) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password })).status, 201);
    }
    aliceOtp = (await s.api('POST', '/api/v1/users/alice/otp', {})).body.secret;
    const mallory = (await s.api('POST', '/api/v1/users/mallory/otp', {})).body.secret as string;
    await s.api('POST', '/api/v1/users/factors', { users: ['alice', 'mallory'], factor: 'otp', enabled: true });
    // alice signs in once from her usual place before the flood of wrong passwords in her name.
    const usual = await radclient(s.radiusPort!, SECRET, {
      'User-Name': 'alice',
      'User-Password': q(`alice-pw,${oathTotp(aliceOtp, 6, ['-N', `@${Math.floor(Date.now() / 1000) - 30}`])}`),
      'Calling-Station-Id': ALICE_HOME,
    });
    assert.equal(usual.code, 'Access-Accept', usual.output);
    const metrics = (await s.api('GET', '/metrics')).body as string;
    for (const r of DROP_REASONS) dropsBefore.set(r, metric(metrics, r));
    out = await fuzz(s, { malloryOtp: base32Decode(mallory) }, errorsLogged);
    const kinds = [...out.byKind].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v.sent}/${v.answered}`);
    console.log(`# seed ${SEED}: sent ${out.sent}, handled ${out.processed}, ${out.elapsedMs} ms, stalls ${out.stalls}; sent/answered by kind: ${kinds.join(', ')}`);
   }, { timeout: 240_000 });
  after(() => s?.close());

  it(`sends ${TOTAL} malformed packets and the listener handles every one`, (t) => {
    t.diagnostic(`seed ${SEED}; sent ${out.sent} in ${out.elapsedMs} ms; handled ${out.processed}`);
    assert.ok(out.sent >= TOTAL);
    // No time limit: a busy machine is slow, not wrong. Liveness is the stall check below.
    assert.equal(out.stalls, 0, 'the server stopped making progress for 5 s');
    assert.equal(out.processed, out.sent, 'every datagram was dropped, answered or counted as a duplicate (none lost, none hanging)');
  });

  it('never answers with an Access-Accept', () => {
    assert.deepEqual(out.accepts, []);
  });

  it('answers only with well-formed Access-Rejects whose authenticators verify, Message-Authenticator first', () => {
    assert.deepEqual(out.unmatchedReplies, [], 'replies that match no request sent');
    const byProblem = new Map<string, string[]>();
    for (const p of out.malformedReplies) {
      const key = p.split(': ').slice(0, 2).join(': ').replace(/\d+/g, 'N');
      byProblem.set(key, [...(byProblem.get(key) ?? []), p]);
    }
    const summary = [...byProblem].map(([k, v]) => `${v.length}× ${k} — e.g. ${v[0]}`);
    assert.deepEqual(summary, [], `seed ${SEED}`);
  });

  it('answers nothing to bit-flipped, unsigned, badly signed or structurally broken packets', () => {
    assert.deepEqual(out.unexpectedReplies.slice(0, 20), [], `seed ${SEED}: ${out.unexpectedReplies.length} unexpected replies`);
  });

  it('answers the well-formed requests (with a Reject)', () => {
    assert.ok(out.cleanSent >= 500, `only ${out.cleanSent} well-formed requests`);
    assert.ok(out.cleanAnswered >= out.cleanSent * 0.95, `${out.cleanAnswered} of ${out.cleanSent} well-formed requests answered`);
  });

  it('counts the drops by reason in /metrics', async () => {
    const metrics = (await s.api('GET', '/metrics')).body as string;
    const grown = DROP_REASONS.map((r) => [r, metric(metrics, r) - dropsBefore.get(r)!] as const);
    for (const [r, n] of grown) assert.ok(n > 0, `countersign_radius_dropped_total{reason="${r}"} did not grow: ${JSON.stringify(grown)}`);
    const total = grown.reduce((a, [, n]) => a + n, 0);
    assert.ok(total >= TOTAL * 0.9, `only ${total} drops counted`);
  });

  it('logs no unexpected failure while handling them', () => {
    assert.deepEqual(
      errorsLogged.map((a) => String((a as [{ err?: Error }, string])[1] ?? '') + ': ' + String((a as [{ err?: Error }])[0]?.err?.stack ?? '').split('\n').slice(0, 3).join(' | ')).slice(0, 5),
      [],
    );
  });

  it('is alive afterwards: the admin API and /metrics answer', { timeout: 20_000 }, async () => {
    assert.equal((await s.api('GET', '/api/v1/users/alice')).status, 200);
    assert.equal((await s.api('GET', '/metrics')).status, 200);
  });

  it('is alive afterwards: a valid login (append mode, password + TOTP via radclient) is accepted at alice’s usual place', { timeout: 20_000 }, async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${oathTotp(aliceOtp)}`), 'Calling-Station-Id': ALICE_HOME });
    assert.equal(r.code, 'Access-Accept', r.output);
  });

  it('the harness signs like the radius package does (encode with add_message_authenticator)', () => {
    const authenticator = Buffer.alloc(16, 7);
    // encode() pushes the Message-Authenticator it adds onto the array it is given: a fresh one each time.
    const attributes = () => [['User-Name', 'mallory'], ['User-Password', 'pw']];
    const byLib = radius.encode({ code: 'Access-Request', secret: SECRET, identifier: 9, authenticator, attributes: attributes(), add_message_authenticator: true } as Parameters<typeof radius.encode>[0]);
    const zeros = radius.encode({ code: 'Access-Request', secret: SECRET, identifier: 9, authenticator, attributes: [...attributes(), ['Message-Authenticator', Buffer.alloc(16)]] } as Parameters<typeof radius.encode>[0]);
    assert.ok(zeros.subarray(-16).equals(Buffer.alloc(16)), 'an explicit Message-Authenticator is left as zeros by encode()');
    assert.ok(sign(Buffer.from(zeros), SECRET).equals(byLib));
    assert.ok(pap(Buffer.from('pw'), SECRET, authenticator).equals(byLib.subarray(31, 47)));
  });

  it('a request whose Proxy-State echo would pass 4096 bytes gets a well-formed reply or none', async () => {
    // 4082 bytes: User-Name, Message-Authenticator and 16 Proxy-State attributes
    // (15 × 255 + 1 × 210 bytes). No User-Password, so the answer is an Access-Reject
    // "Only PAP (User-Password) is supported" (39 bytes) plus Message-Authenticator
    // plus the echoed Proxy-States: 4112 bytes, past the 4096 limit of RFC 2865.
    const attributes: [string, unknown][] = [['User-Name', 'mallory'], ['Message-Authenticator', Buffer.alloc(16)]];
    for (let i = 0; i < 15; i++) attributes.push(['Proxy-State', Buffer.alloc(253, i)]);
    attributes.push(['Proxy-State', Buffer.alloc(208, 0xee)]);
    const req = sign(radius.encode({ code: 'Access-Request', secret: SECRET, identifier: 42, authenticator: Buffer.alloc(16, 0x42), attributes } as Parameters<typeof radius.encode>[0]), SECRET);
    assert.equal(req.length, 4082);
    const sock = dgram.createSocket('udp4');
    try {
      const reply = await new Promise<Buffer | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), 1500);
        sock.on('message', (msg) => {
          clearTimeout(timer);
          resolve(msg);
        });
        sock.bind(0, '127.0.0.1', () => sock.send(req, s.radiusPort!, '127.0.0.1'));
      });
      if (reply) assert.equal(replyProblem(reply, req.subarray(4, 20), SECRET), null, `reply: ${hex(reply, 24)}`);
    } finally {
      sock.close();
    }
  });
});
