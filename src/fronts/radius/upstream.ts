import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { RadiusUpstreamConfig } from '../../config/schema.js';
import type { Metrics } from '../../observability/metrics.js';
import { MS, VENDOR_MICROSOFT, VENDOR_SPECIFIC, carryFromAccept, chapErrors, hidePassword, msAttributes, unhidePassword, type CarriedAttributes } from './mppe.js';
import { checkMessageAuthenticator, parseRaw, type RawPacket } from './packet.js';

/**
 * An upstream RADIUS server (Windows NPS, FreeRADIUS) as the first factor: the credentials of a
 * NAS's Access-Request go out in a fresh Access-Request of Countersign's own — new identifier,
 * new Request Authenticator, Message-Authenticator always — and only an answer that proves
 * itself (Response Authenticator, Message-Authenticator, identifier, source) counts. A forged
 * or garbled answer is ignored and the wait goes on; giving up is never an accept.
 */

const ACCESS_REQUEST = 1;
const ACCESS_ACCEPT = 2;
const ACCESS_REJECT = 3;
const ACCESS_CHALLENGE = 11;
const HEADER = 20;
const MAX_PACKET = 4096;
const MESSAGE_AUTHENTICATOR = 80;

const USER_NAME = 1;
const USER_PASSWORD = 2;
const CHAP_PASSWORD = 3;
const CHAP_CHALLENGE = 60;
/** NAS and session attributes an upstream's policy (NPS network policies) may match on, copied as they are. */
const CONTEXT = new Set([
  4, // NAS-IP-Address
  5, // NAS-Port
  6, // Service-Type
  7, // Framed-Protocol
  30, // Called-Station-Id
  31, // Calling-Station-Id
  32, // NAS-Identifier
  61, // NAS-Port-Type
  87, // NAS-Port-Id
  95, // NAS-IPv6-Address
]);
/** MS-CHAP (v1 and v2) as the NAS sent it: the challenge is the NAS's, so it passes unchanged. */
const MSCHAP = new Set<number>([MS.CHAP_CHALLENGE, MS.CHAP_RESPONSE, MS.CHAP2_RESPONSE]);

/** Sockets per upstream, each with 256 identifiers: at most 2048 requests in flight to one server. */
const MAX_SOCKETS = 8;

export type UpstreamOutcome = 'accept' | 'reject' | 'challenge' | 'timeout' | 'bad_response' | 'busy' | 'error';

export interface UpstreamAnswer {
  outcome: UpstreamOutcome;
  /** The verified answer's attributes (accept, reject, challenge). */
  attributes: [number, Buffer][];
  /** The Request Authenticator of the request Countersign sent: it keys the answer's encrypted attributes. */
  requestAuthenticator: Buffer;
}

/** Which first factor a NAS request carries (none: nothing to forward). */
export function credentialKind(raw: RawPacket): 'pap' | 'chap' | 'mschap' | 'mschapv2' | null {
  if (raw.attributes.some(([t]) => t === USER_PASSWORD)) return 'pap';
  if (raw.attributes.some(([t]) => t === CHAP_PASSWORD)) return 'chap';
  const ms = msAttributes(raw.attributes).map(([t]) => t);
  if (ms.includes(MS.CHAP2_RESPONSE) && ms.includes(MS.CHAP_CHALLENGE)) return 'mschapv2';
  if (ms.includes(MS.CHAP_RESPONSE) && ms.includes(MS.CHAP_CHALLENGE)) return 'mschap';
  return null;
}

/**
 * The attributes to forward, in the NAS's order. `password` replaces the NAS's User-Password
 * (append mode forwards the password without the code); otherwise it is decrypted with the
 * NAS's secret. The User-Password is hidden again by `encodeRequest` with the upstream's.
 */
export function forwardedAttributes(nas: RawPacket, nasSecret: string, password?: Buffer): { attributes: [number, Buffer][]; password?: Buffer } {
  const attributes: [number, Buffer][] = [];
  let pw: Buffer | undefined;
  let chap = false;
  let chapChallenge = false;
  for (const [type, value] of nas.attributes) {
    if (type === USER_NAME || type === CHAP_PASSWORD || type === CHAP_CHALLENGE || CONTEXT.has(type)) {
      attributes.push([type, value]);
      chap ||= type === CHAP_PASSWORD;
      chapChallenge ||= type === CHAP_CHALLENGE;
    } else if (type === USER_PASSWORD) {
      pw = password ?? stripNuls(unhidePassword(value, nasSecret, nas.authenticator));
    } else if (type === VENDOR_SPECIFIC) {
      const ms = msAttributes([[type, value]]).filter(([t]) => MSCHAP.has(t));
      for (const [t, v] of ms) attributes.push([VENDOR_SPECIFIC, Buffer.concat([u32(VENDOR_MICROSOFT), Buffer.from([t, v.length + 2]), v])]);
    }
  }
  // RFC 2865 §5.3: without CHAP-Challenge the NAS's Request Authenticator was the challenge,
  // and ours is new: name it.
  if (chap && !chapChallenge) attributes.push([CHAP_CHALLENGE, Buffer.from(nas.authenticator)]);
  if (password && pw === undefined) pw = password;
  return { attributes, password: pw };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

function stripNuls(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return b.subarray(0, end);
}

/** An Access-Request with Message-Authenticator first (signed last), and the password hidden. */
export function encodeRequest(identifier: number, authenticator: Buffer, secret: string, attributes: [number, Buffer][], password?: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([MESSAGE_AUTHENTICATOR, 18]), Buffer.alloc(16)];
  const add = (type: number, value: Buffer) => {
    if (value.length > 253) throw new RangeError(`attribute ${type} is longer than 253 octets`);
    parts.push(Buffer.from([type, value.length + 2]), value);
  };
  for (const [type, value] of attributes) {
    add(type, value);
    if (type === USER_NAME && password) add(USER_PASSWORD, hidePassword(password, secret, authenticator));
  }
  const body = Buffer.concat(parts);
  if (HEADER + body.length > MAX_PACKET) throw new RangeError('the forwarded request would be longer than 4096 octets');
  const packet = Buffer.concat([Buffer.from([ACCESS_REQUEST, identifier, 0, 0]), authenticator, body]);
  packet.writeUInt16BE(packet.length, 2);
  createHmac('md5', secret).update(packet).digest().copy(packet, HEADER + 2);
  return packet;
}

/**
 * Whether `buf` is the answer to our request: the Response Authenticator
 * MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret) matches, and the
 * Message-Authenticator (computed with the Request Authenticator in place) too — required when
 * `requireMessageAuthenticator`.
 */
export function verifyAnswer(buf: Buffer, requestAuthenticator: Buffer, secret: string, requireMessageAuthenticator: boolean): RawPacket | string {
  const p = parseRaw(buf);
  if ('ok' in p) return `malformed: ${p.reason}`;
  if (![ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE].includes(p.code)) return `unexpected code ${p.code}`;
  const withRequest = Buffer.from(p.bytes);
  requestAuthenticator.copy(withRequest, 4);
  const expected = createHash('md5').update(withRequest).update(secret).digest();
  if (!timingSafeEqual(expected, p.authenticator)) return 'bad response authenticator';
  const reparsed = parseRaw(withRequest) as RawPacket;
  const ma = checkMessageAuthenticator(reparsed, secret);
  if (ma === 'bad') return 'bad message authenticator';
  if (ma === 'missing' && requireMessageAuthenticator) return 'missing message authenticator';
  return p;
}

interface Pending {
  authenticator: Buffer;
  resolve: (p: RawPacket | null) => void;
  /** Why answers were refused, for the log and the outcome. */
  refused: string[];
}

/** One socket and the 256 identifiers it can have in flight. */
class Lane {
  readonly pending = new Map<number, Pending>();
  private next = randomBytes(1)[0]!;

  constructor(
    readonly socket: dgram.Socket,
    private upstream: RadiusUpstream,
  ) {
    socket.on('message', (msg, rinfo) => this.upstream.answer(this, msg, rinfo));
    socket.on('error', (err) => this.upstream.log.warn({ err, upstream: this.upstream.name }, 'radius upstream: socket error'));
  }

  /** A free identifier, or undefined when all 256 are in flight. */
  take(): number | undefined {
    for (let i = 0; i < 256; i++) {
      const id = (this.next + i) & 0xff;
      if (!this.pending.has(id)) {
        this.next = (id + 1) & 0xff;
        return id;
      }
    }
    return undefined;
  }
}

/** One configured upstream server: its sockets (made as needed, at most MAX_SOCKETS) and its requests in flight. */
export class RadiusUpstream {
  readonly name: string;
  private lanes: Lane[] = [];
  private closed = false;

  constructor(
    private config: RadiusUpstreamConfig,
    private metrics: Metrics,
    readonly log: Logger,
  ) {
    this.name = config.name;
  }

  /** Forwards one first factor and waits for a verified answer, retransmitting the same packet on silence. */
  async forward(attributes: [number, Buffer][], password?: Buffer): Promise<UpstreamAnswer> {
    const started = performance.now();
    const requestAuthenticator = randomBytes(16);
    const done = (outcome: UpstreamOutcome, answer?: RawPacket): UpstreamAnswer => {
      this.metrics.radiusUpstreamRequests.inc({ upstream: this.name, outcome });
      this.metrics.radiusUpstreamLatency.observe({ upstream: this.name }, (performance.now() - started) / 1000);
      return { outcome, attributes: answer?.attributes ?? [], requestAuthenticator };
    };
    if (this.closed) return done('error');
    const slot = this.slot();
    if (!slot) {
      this.log.warn({ upstream: this.name }, 'radius upstream: every identifier is in flight; the login is denied');
      return done('busy');
    }
    const { lane, id } = slot;
    let packet: Buffer;
    try {
      packet = encodeRequest(id, requestAuthenticator, this.config.secret, attributes, password);
    } catch (err) {
      this.log.warn({ err, upstream: this.name }, 'radius upstream: the request could not be encoded; the login is denied');
      return done('error');
    }
    const refused: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await new Promise<RawPacket | null>((resolve) => {
        lane.pending.set(id, { authenticator: requestAuthenticator, resolve, refused });
        let sent = 0;
        const send = () => {
          if (sent > this.config.retries) return resolve(null);
          sent++;
          try {
            lane.socket.send(packet, this.config.port, this.config.host, (err) => {
              if (err) this.log.warn({ err, upstream: this.name }, 'radius upstream: send failed');
            });
          } catch (err) {
            // A socket closed under us (stop): the wait ends as silence, a reject.
            this.log.warn({ err, upstream: this.name }, 'radius upstream: send failed');
            return resolve(null);
          }
          timer = setTimeout(send, this.config.timeoutMs);
        };
        send();
      });
      if (!answer) {
        this.log.warn(
          { upstream: this.name, host: this.config.host, port: this.config.port, ...(refused.length ? { refused: refused.slice(0, 5) } : {}) },
          refused.length ? 'radius upstream: no valid answer (answers failed verification: wrong shared secret?); the login is denied' : 'radius upstream: no answer; the login is denied',
        );
        return done(refused.length ? 'bad_response' : 'timeout');
      }
      return done(answer.code === ACCESS_ACCEPT ? 'accept' : answer.code === ACCESS_REJECT ? 'reject' : 'challenge', answer);
    } finally {
      clearTimeout(timer);
      lane.pending.delete(id);
    }
  }

  /** What a verified Access-Accept hands on to the NAS, its keys decrypted with this server's secret; throws when they do not decrypt. */
  carried(answer: UpstreamAnswer): CarriedAttributes {
    return carryFromAccept(answer.attributes, this.config.secret, answer.requestAuthenticator);
  }

  /** MS-CHAP-Error of a verified Access-Reject, as Vendor-Specific attributes for the NAS. */
  chapErrors(answer: UpstreamAnswer): [string, Buffer][] {
    return chapErrors(answer.attributes);
  }

  /** An answer on one of our sockets: from the server, to a request in flight, and proven. */
  answer(lane: Lane, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = rinfo.address.startsWith('::ffff:') ? rinfo.address.slice(7) : rinfo.address;
    if (from !== this.config.host || rinfo.port !== this.config.port || msg.length < HEADER) return;
    const pending = lane.pending.get(msg[1]!);
    if (!pending) return;
    const verified = verifyAnswer(msg, pending.authenticator, this.config.secret, this.config.requireMessageAuthenticator);
    if (typeof verified === 'string') {
      pending.refused.push(verified);
      return;
    }
    pending.resolve(verified);
  }

  /** A socket with a free identifier; a new socket (bound at once, sends queue meanwhile) while under MAX_SOCKETS. */
  private slot(): { lane: Lane; id: number } | undefined {
    for (const lane of this.lanes) {
      const id = lane.take();
      if (id !== undefined) return { lane, id };
    }
    if (this.lanes.length >= MAX_SOCKETS) return undefined;
    const socket = dgram.createSocket(isIP(this.config.host) === 6 ? 'udp6' : 'udp4');
    const lane = new Lane(socket, this);
    socket.bind(0);
    socket.unref();
    this.lanes.push(lane);
    return { lane, id: lane.take()! };
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes) {
      for (const p of lane.pending.values()) p.resolve(null);
      lane.socket.close();
    }
    this.lanes = [];
  }
}

/** The configured upstreams by name. */
export class RadiusUpstreams {
  private byName = new Map<string, RadiusUpstream>();

  constructor(configs: RadiusUpstreamConfig[], metrics: Metrics, log: Logger) {
    for (const c of configs) this.byName.set(c.name, new RadiusUpstream(c, metrics, log));
  }

  get(name: string): RadiusUpstream | undefined {
    return this.byName.get(name);
  }

  close(): void {
    for (const u of this.byName.values()) u.close();
  }
}
