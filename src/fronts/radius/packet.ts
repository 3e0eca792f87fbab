import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import radius from 'radius';

/**
 * RADIUS on the wire. The `radius` package encodes and decodes attributes
 * with its RFC dictionaries; the parts it gets wrong for a security product
 * are done here: the structure is checked before anything is decoded,
 * Message-Authenticator is verified in constant time (and required), and it
 * is the first attribute of every response (BlastRADIUS, CVE-2024-3596).
 */

export const ACCESS_REQUEST = 1;
const HEADER = 20;
const MAX_PACKET = 4096;
const MESSAGE_AUTHENTICATOR = 80;
const PROXY_STATE = 33;

export type Malformed = { ok: false; reason: string };

/** Raw attributes in wire order, after a structural check of the whole packet. */
export interface RawPacket {
  code: number;
  identifier: number;
  authenticator: Buffer;
  attributes: [number, Buffer][];
  bytes: Buffer;
}

/** RFC 2865 §3: lengths must add up exactly; anything else is dropped. */
export function parseRaw(buf: Buffer): RawPacket | Malformed {
  if (buf.length < HEADER) return { ok: false, reason: 'shorter than a RADIUS header' };
  if (buf.length > MAX_PACKET) return { ok: false, reason: 'longer than 4096 bytes' };
  const length = buf.readUInt16BE(2);
  if (length < HEADER || length > MAX_PACKET || length > buf.length) return { ok: false, reason: `bad length field ${length}` };
  const bytes = buf.subarray(0, length); // octets past Length are padding (RFC 2865)
  const attributes: [number, Buffer][] = [];
  for (let off = HEADER; off < length; ) {
    if (off + 2 > length) return { ok: false, reason: 'truncated attribute header' };
    const type = bytes[off]!;
    const len = bytes[off + 1]!;
    if (len < 2 || off + len > length) return { ok: false, reason: `attribute ${type} overruns the packet` };
    attributes.push([type, bytes.subarray(off + 2, off + len)]);
    off += len;
  }
  return { code: bytes[0]!, identifier: bytes[1]!, authenticator: bytes.subarray(4, 20), attributes, bytes };
}

const count = (p: RawPacket, type: number) => p.attributes.filter(([t]) => t === type).length;

/**
 * RFC 3579 §3.2: HMAC-MD5 over the packet with the attribute zeroed. Returns
 * 'missing', 'bad' or 'ok'; a duplicate or wrongly sized one is 'bad'.
 */
export function checkMessageAuthenticator(p: RawPacket, secret: string): 'missing' | 'bad' | 'ok' {
  const n = count(p, MESSAGE_AUTHENTICATOR);
  if (n === 0) return 'missing';
  if (n > 1) return 'bad';
  let off = HEADER;
  for (const [type, value] of p.attributes) {
    if (type === MESSAGE_AUTHENTICATOR) break;
    off += value.length + 2;
  }
  const given = p.bytes.subarray(off + 2, off + 2 + 16);
  if (p.bytes[off + 1] !== 18) return 'bad';
  const zeroed = Buffer.from(p.bytes);
  zeroed.fill(0, off + 2, off + 18);
  const expected = createHmac('md5', secret).update(zeroed).digest();
  return timingSafeEqual(given, expected) ? 'ok' : 'bad';
}

export interface Decoded {
  userName?: string;
  /** Decrypted User-Password (PAP), undefined when absent. */
  password?: string;
  state?: Buffer;
  callingStationId?: string;
  nasIdentifier?: string;
}

/** Decodes the attributes Countersign reads; throws on what the dictionary rejects. */
export function decodeRequest(p: RawPacket, secret: string): Decoded {
  const d = radius.decode({ packet: Buffer.from(p.bytes), secret }) as { attributes: Record<string, unknown> };
  const a = d.attributes;
  const text = (v: unknown) => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : undefined);
  const password = a['User-Password'];
  return {
    userName: text(a['User-Name']),
    password: typeof password === 'string' ? password.replace(/\0+$/, '') : Buffer.isBuffer(password) ? password.toString('utf8').replace(/\0+$/, '') : undefined,
    state: Buffer.isBuffer(a.State) ? a.State : typeof a.State === 'string' ? Buffer.from(a.State) : undefined,
    callingStationId: text(a['Calling-Station-Id']),
    nasIdentifier: text(a['NAS-Identifier']),
  };
}

export type ReplyCode = 'Access-Accept' | 'Access-Reject' | 'Access-Challenge';

/** The reply would not fit in 4096 bytes (RFC 2865 §3): it must not be sent cut short. */
export class ReplyTooLarge extends Error {}
export type AttributeValue = string | Buffer | number;

const needsBuffer = new Map<string, boolean>();

/**
 * Configured reply attributes are written as text; octet-typed ones (Class,
 * State, …) must reach the encoder as bytes. Unknown names throw, so a typo
 * in the config is found at start, not on the first Access-Accept.
 */
export function replyAttribute(name: string, value: AttributeValue): [string, AttributeValue] {
  if (typeof value !== 'string') return [name, value];
  let bytes = needsBuffer.get(name);
  if (bytes === undefined) {
    try {
      radius.encode({ code: 'Access-Accept', secret: 'probe', identifier: 0, attributes: [[name, value]] });
      bytes = false;
    } catch (err) {
      if (!/must provide Buffer/.test((err as Error).message)) throw new Error(`RADIUS attribute ${name}: ${(err as Error).message}`);
      bytes = true;
    }
    needsBuffer.set(name, bytes);
  }
  return [name, bytes ? Buffer.from(value) : value];
}

/**
 * A response with Message-Authenticator first, Proxy-State echoed in order
 * (RFC 2865 §5.33), and the Response Authenticator over all of it.
 */
export function encodeReply(
  request: RawPacket,
  code: ReplyCode,
  secret: string,
  attributes: [string, AttributeValue][],
): Buffer {
  const attrs: [string | number, unknown][] = [['Message-Authenticator', Buffer.alloc(16)], ...attributes.map(([n, v]) => replyAttribute(n, v))];
  for (const [type, value] of request.attributes) if (type === PROXY_STATE) attrs.push([PROXY_STATE, value]);
  const packet = radius.encode({
    code,
    identifier: request.identifier,
    secret,
    attributes: attrs,
    add_message_authenticator: false,
  });
  // The radius package writes into a fixed 4096-byte buffer and truncates silently.
  if (packet.length > MAX_PACKET || packet.readUInt16BE(2) !== packet.length) throw new ReplyTooLarge('reply longer than 4096 bytes');
  request.authenticator.copy(packet, 4);
  // The Message-Authenticator sits at offset 20 (type, length) → value at 22.
  createHmac('md5', secret).update(packet).digest().copy(packet, 22);
  createHash('md5').update(packet).update(secret).digest().copy(packet, 4);
  return packet;
}
