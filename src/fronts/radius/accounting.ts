import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import dgram from 'node:dgram';
import { isIP, type AddressInfo } from 'node:net';
import type { Clock } from '../../core/clock.js';
import type { KvStore } from '../../core/store.js';
import type { AppContext } from '../../context.js';
import { normalizeAddress, type RadiusClient, type RadiusClients } from './clients.js';
import { checkMessageAuthenticator, parseRaw, type RawPacket } from './packet.js';

/**
 * RADIUS accounting (RFC 2866): a NAS tells us about the sessions it opened after an
 * Access-Accept. Most VPNs (OpenVPN's radiusplugin among them) refuse the user unless the
 * Accounting-Request is answered, so it is answered, on the accounting port and on the auth
 * port, from known clients only, once its Request Authenticator is right and what it says is
 * recorded: one audit event per request, and the open sessions in the store for the admin API.
 */

export const ACCOUNTING_REQUEST = 4;
export const ACCOUNTING_RESPONSE = 5;
export const STATUS_SERVER = 12;

const HEADER = 20;
const MESSAGE_AUTHENTICATOR = 80;
const PROXY_STATE = 33;

/** Drops a packet without an answer, counted by reason (the RADIUS front's own drop). */
export type DropFn = (reason: string, address: string, detail?: Record<string, unknown>) => void;
export type SendFn = (buf: Buffer) => void;

/** The packet with its authenticator field zeroed: what accounting hashes and signs. */
function zeroedAuthenticator(p: RawPacket): Buffer {
  const copy = Buffer.from(p.bytes);
  copy.fill(0, 4, HEADER);
  return copy;
}

/** RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret), compared in constant time. */
export function accountingAuthenticatorOk(p: RawPacket, secret: string): boolean {
  const expected = createHash('md5').update(zeroedAuthenticator(p)).update(secret).digest();
  return timingSafeEqual(expected, p.authenticator);
}

/**
 * Message-Authenticator in an Accounting-Request (optional there): HMAC-MD5 over the packet
 * with the authenticator field and the attribute zeroed (RFC 3579 §3.2, as FreeRADIUS signs it).
 */
export function checkAccountingMessageAuthenticator(p: RawPacket, secret: string): 'missing' | 'bad' | 'ok' {
  const zeroed = parseRaw(zeroedAuthenticator(p));
  if ('ok' in zeroed) return 'bad';
  return checkMessageAuthenticator(zeroed, secret);
}

/**
 * An Accounting-Response: no attributes but the echoed Proxy-State (RFC 2865 §5.33), and
 * Message-Authenticator first when asked (the answer to a Status-Server, RFC 5997), signed
 * with the Request Authenticator; then the Response Authenticator,
 * MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
 */
export function encodeAccountingResponse(request: RawPacket, secret: string, opts: { messageAuthenticator?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  if (opts.messageAuthenticator) parts.push(Buffer.from([MESSAGE_AUTHENTICATOR, 18]), Buffer.alloc(16));
  for (const [type, value] of request.attributes) if (type === PROXY_STATE) parts.push(Buffer.from([PROXY_STATE, value.length + 2]), value);
  const attributes = Buffer.concat(parts);
  // Never longer than the request, which carried these attributes (and, for Status-Server, Message-Authenticator).
  const packet = Buffer.alloc(HEADER + attributes.length);
  packet[0] = ACCOUNTING_RESPONSE;
  packet[1] = request.identifier;
  packet.writeUInt16BE(packet.length, 2);
  request.authenticator.copy(packet, 4);
  attributes.copy(packet, HEADER);
  if (opts.messageAuthenticator) createHmac('md5', secret).update(packet).digest().copy(packet, HEADER + 2);
  createHash('md5').update(packet).update(secret).digest().copy(packet, 4);
  return packet;
}

// ------------------------------------------------------------------ what an Accounting-Request says

const A = {
  userName: 1,
  nasIpAddress: 4,
  framedIpAddress: 8,
  callingStationId: 31,
  nasIdentifier: 32,
  statusType: 40,
  delayTime: 41,
  inputOctets: 42,
  outputOctets: 43,
  sessionId: 44,
  sessionTime: 46,
  inputPackets: 47,
  outputPackets: 48,
  terminateCause: 49,
  inputGigawords: 52,
  outputGigawords: 53,
  nasIpv6Address: 95,
} as const;

const STATUS: Record<number, string> = { 1: 'start', 2: 'stop', 3: 'interim-update', 7: 'accounting-on', 8: 'accounting-off' };

/** RFC 2866 §5.10 and RFC 3580 §2.4. */
const TERMINATE_CAUSES = [
  '',
  'User-Request',
  'Lost-Carrier',
  'Lost-Service',
  'Idle-Timeout',
  'Session-Timeout',
  'Admin-Reset',
  'Admin-Reboot',
  'Port-Error',
  'NAS-Error',
  'NAS-Request',
  'NAS-Reboot',
  'Port-Unneeded',
  'Port-Preempted',
  'Port-Suspended',
  'Service-Unavailable',
  'Callback',
  'User-Error',
  'Host-Request',
  'Supplicant-Restart',
  'Reauthentication-Failure',
  'Port-Reinitialized',
  'Port-Administratively-Disabled',
];

/** The attributes Countersign records from one Accounting-Request. */
export interface AccountingRequest {
  /** start | stop | interim-update | accounting-on | accounting-off, else status-<n>. */
  status: string;
  user?: string;
  sessionId?: string;
  nasIp?: string;
  nasIdentifier?: string;
  framedIp?: string;
  callingStationId?: string;
  /** Seconds. */
  sessionTime?: number;
  /** Octets, Gigawords included. */
  inputOctets?: number;
  outputOctets?: number;
  inputPackets?: number;
  outputPackets?: number;
  terminateCause?: string;
  /** Seconds the NAS has been trying to send this (RFC 2866 §5.2). */
  delayTime?: number;
}

const ipv6 = (b: Buffer) => Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');

/** Reads what the request says; a string is why it cannot be recorded (the request is dropped). */
export function parseAccounting(p: RawPacket): AccountingRequest | string {
  const all = (type: number) => p.attributes.filter(([t]) => t === type).map(([, v]) => v);
  const one = (type: number) => all(type)[0];
  const text = (type: number) => one(type)?.toString('utf8');
  const int = (type: number, name: string): number | undefined => {
    const v = one(type);
    if (v === undefined) return undefined;
    if (v.length !== 4) throw new Error(`${name} is not a 4-octet integer`);
    return v.readUInt32BE(0);
  };
  const ip4 = (type: number, name: string): string | undefined => {
    const v = one(type);
    if (v === undefined) return undefined;
    if (v.length !== 4) throw new Error(`${name} is not an IPv4 address`);
    return [...v].join('.');
  };
  try {
    if (all(A.statusType).length !== 1) return 'exactly one Acct-Status-Type is required';
    const type = int(A.statusType, 'Acct-Status-Type')!;
    const status = STATUS[type] ?? `status-${type}`;
    const sessionId = text(A.sessionId);
    if ((type === 1 || type === 2 || type === 3) && !sessionId) return `${status} without Acct-Session-Id`;
    const octets = (low: number, high: number, name: string) => {
      const l = int(low, name);
      const h = int(high, `${name.replace('Octets', 'Gigawords')}`);
      return l === undefined && h === undefined ? undefined : (h ?? 0) * 2 ** 32 + (l ?? 0);
    };
    const v6 = one(A.nasIpv6Address);
    if (v6 !== undefined && v6.length !== 16) return 'NAS-IPv6-Address is not an IPv6 address';
    const cause = int(A.terminateCause, 'Acct-Terminate-Cause');
    return strip({
      status,
      user: text(A.userName),
      sessionId,
      nasIp: ip4(A.nasIpAddress, 'NAS-IP-Address') ?? (v6 ? ipv6(v6) : undefined),
      nasIdentifier: text(A.nasIdentifier),
      framedIp: ip4(A.framedIpAddress, 'Framed-IP-Address'),
      callingStationId: text(A.callingStationId),
      sessionTime: int(A.sessionTime, 'Acct-Session-Time'),
      inputOctets: octets(A.inputOctets, A.inputGigawords, 'Acct-Input-Octets'),
      outputOctets: octets(A.outputOctets, A.outputGigawords, 'Acct-Output-Octets'),
      inputPackets: int(A.inputPackets, 'Acct-Input-Packets'),
      outputPackets: int(A.outputPackets, 'Acct-Output-Packets'),
      terminateCause: cause === undefined ? undefined : TERMINATE_CAUSES[cause] || String(cause),
      delayTime: int(A.delayTime, 'Acct-Delay-Time'),
    });
  } catch (err) {
    return (err as Error).message;
  }
}

/** Without the keys whose value is undefined (the audit and the store keep what was said). */
function strip<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// ------------------------------------------------------------------ open sessions in the store

/** An open session as the NAS last reported it. */
export interface RadiusSession {
  /** Countersign's id of the record (the client, the NAS and its Acct-Session-Id). */
  id: string;
  sessionId: string;
  user?: string;
  /** The RADIUS client (NAS entry) it came from, and the NAS itself. */
  client: string;
  nas: { address: string; ip?: string; identifier?: string };
  framedIp?: string;
  callingStationId?: string;
  startedAt: number;
  updatedAt: number;
  sessionTime?: number;
  inputOctets?: number;
  outputOctets?: number;
}

const DAY_MS = 86_400_000;
/** A session not heard of for a day is forgotten (a NAS that went away without Stop). */
export const SESSION_TTL_MS = DAY_MS;

/** The NAS as the client names it: its NAS-Identifier, else NAS-IP-Address, else the source address. */
const nasName = (nas: RadiusSession['nas']) => nas.identifier ?? nas.ip ?? nas.address;

/**
 * The open sessions, in `kv` so every instance and the admin API see them: one record per
 * session (a day's lifetime, refreshed by every Interim-Update), listed through a day's index
 * (a session's last update is in today's or yesterday's, which expire on their own).
 */
export class SessionStore {
  constructor(
    private kv: KvStore,
    private clock: Pick<Clock, 'now'>,
  ) {}

  static id(client: string, nas: RadiusSession['nas'], sessionId: string): string {
    return createHash('sha256').update(`${client}\n${nasName(nas)}\n${sessionId}`).digest('base64url').slice(0, 32);
  }

  private index(day: number) {
    return `radius-sessions:${day}`;
  }

  async get(id: string): Promise<RadiusSession | null> {
    const raw = await this.kv.get(`radius-session:${id}`);
    return raw ? (JSON.parse(raw) as RadiusSession) : null;
  }

  async put(session: RadiusSession): Promise<void> {
    await this.kv.set(`radius-session:${session.id}`, JSON.stringify(session), SESSION_TTL_MS);
    await this.kv.addMember(this.index(Math.floor(this.clock.now() / DAY_MS)), session.id, 2 * DAY_MS);
  }

  async remove(id: string): Promise<void> {
    await this.kv.delete(`radius-session:${id}`);
  }

  /** Stop: the session is gone, and an Interim-Update that arrives after it (reordered) does not bring it back. */
  async stop(id: string): Promise<void> {
    await this.kv.set(`radius-session-stopped:${id}`, '1', SESSION_TTL_MS);
    await this.remove(id);
  }

  async stopped(id: string): Promise<boolean> {
    return (await this.kv.get(`radius-session-stopped:${id}`)) !== null;
  }

  /** Open sessions, newest first, filtered by user and client. */
  async list(filter: { user?: string; client?: string; limit?: number } = {}): Promise<RadiusSession[]> {
    const today = Math.floor(this.clock.now() / DAY_MS);
    const ids = new Set([...(await this.kv.members(this.index(today))), ...(await this.kv.members(this.index(today - 1)))]);
    const found = await Promise.all([...ids].map((id) => this.get(id)));
    return found
      .filter((s): s is RadiusSession => s !== null && (!filter.user || s.user === filter.user) && (!filter.client || s.client === filter.client))
      .sort((a, b) => b.startedAt - a.startedAt)
      .slice(0, filter.limit ?? 1000);
  }

  /**
   * Accounting-On / Accounting-Off: the NAS (re)started or stops, so none of its sessions is
   * open any more. The NAS is the one of this client named by NAS-Identifier or NAS-IP-Address,
   * else the one at the source address.
   */
  async closeNas(client: string, nas: RadiusSession['nas']): Promise<number> {
    const named = nas.identifier !== undefined || nas.ip !== undefined;
    const same = (s: RadiusSession) =>
      s.client === client &&
      (named ? (nas.identifier !== undefined && s.nas.identifier === nas.identifier) || (nas.ip !== undefined && s.nas.ip === nas.ip) : s.nas.address === nas.address);
    const open = (await this.list({ client, limit: Number.MAX_SAFE_INTEGER })).filter(same);
    await Promise.all(open.map((s) => this.remove(s.id)));
    return open.length;
  }
}

// ------------------------------------------------------------------ the accounting steps

export interface AccountingOptions {
  /** The RADIUS front's drop (metric and log). */
  drop: DropFn;
  /** Answers a Status-Server that reached the accounting port. */
  statusServer: (raw: RawPacket, client: RadiusClient, address: string, send: SendFn) => Promise<void>;
}

/**
 * Accounting-Request, on the accounting port (its own socket) or handed over by the auth
 * port: Request Authenticator, Message-Authenticator when present, attributes, duplicate
 * check, record, answer. Nothing is answered that was not recorded (RFC 2866 §2).
 */
export class RadiusAccounting {
  readonly sessions: SessionStore;
  private socket?: dgram.Socket;
  private inflight = new Set<Promise<void>>();

  constructor(
    private ctx: AppContext,
    private clients: RadiusClients,
    private opts: AccountingOptions,
  ) {
    this.sessions = new SessionStore(ctx.store.kv, ctx.clock);
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const socket = dgram.createSocket({ type: isIP(host) === 4 ? 'udp4' : 'udp6', ipv6Only: false, reuseAddr: false });
    socket.on('message', (msg, rinfo) => {
      const p = this.packet(msg, rinfo).catch((err) => this.ctx.log.error({ err }, 'radius accounting: unexpected failure; request dropped'));
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    socket.on('error', (err) => this.ctx.log.error({ err }, 'radius accounting socket error'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
    return socket.address();
  }

  async stop(): Promise<void> {
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 2000))]);
    const socket = this.socket;
    this.socket = undefined;
    await new Promise<void>((r) => (socket ? socket.close(() => r()) : r()));
  }

  /** The accounting port: known client, sound structure, then Accounting-Request or Status-Server. */
  private async packet(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const address = normalizeAddress(rinfo.address);
    const client = this.clients.match(address);
    if (!client) return this.opts.drop('unknown_client', address);
    const raw = parseRaw(msg);
    if ('ok' in raw) return this.opts.drop('malformed', address, { detail: raw.reason, client: client.name });
    const send: SendFn = (buf) => this.socket?.send(buf, rinfo.port, rinfo.address);
    if (raw.code === ACCOUNTING_REQUEST) return this.handle(raw, client, address, String(rinfo.port), send);
    if (raw.code === STATUS_SERVER) return this.opts.statusServer(raw, client, address, send);
    return this.opts.drop('unsupported_code', address, { code: raw.code, client: client.name, port: 'accounting' });
  }

  /** `source` tells senders at one address apart for duplicate detection: the UDP source port, or the RadSec connection. */
  async handle(raw: RawPacket, client: RadiusClient, address: string, source: string, send: SendFn): Promise<void> {
    const { drop } = this.opts;
    if (!accountingAuthenticatorOk(raw, client.secret)) return drop('bad_accounting_authenticator', address, { client: client.name });
    if (checkAccountingMessageAuthenticator(raw, client.secret) === 'bad') return drop('bad_message_authenticator', address, { client: client.name });
    const req = parseAccounting(raw);
    if (typeof req === 'string') return drop('bad_attributes', address, { client: client.name, detail: req });

    // RFC 5080 §2.2.2: the same client, source port (RadSec: connection), identifier and
    // authenticator is a retransmit: answered again once recorded, never recorded twice.
    const seenKey = `radius-acct:${createHash('sha256').update(`${client.name}|${address}|${source}|${raw.identifier}|`).update(raw.authenticator).digest('base64url')}`;
    const ttl = this.ctx.config.radius.replyCacheSeconds * 1000;
    let seen: string | null;
    try {
      seen = await this.ctx.store.kv.setIfAbsent(seenKey, 'processing', ttl);
    } catch (err) {
      return drop('accounting_not_recorded', address, { client: client.name, err });
    }
    if (seen !== null) {
      this.ctx.metrics.radiusDuplicates.inc({ state: `accounting-${seen}` });
      if (seen === 'done') send(encodeAccountingResponse(raw, client.secret));
      return;
    }
    try {
      await this.record(req, client, address);
    } catch (err) {
      // Not recorded, so not answered: the NAS sends it again (RFC 2866 §2).
      await this.ctx.store.kv.delete(seenKey).catch(() => {});
      return drop('accounting_not_recorded', address, { client: client.name, err });
    }
    await this.ctx.store.kv.set(seenKey, 'done', ttl).catch(() => {});
    send(encodeAccountingResponse(raw, client.secret));
    this.ctx.metrics.radiusAccounting.inc({ client: client.name, status: req.status });
  }

  private async record(req: AccountingRequest, client: RadiusClient, address: string): Promise<void> {
    const now = this.ctx.clock.now();
    // When it happened: the NAS may have been trying for a while (Acct-Delay-Time).
    const at = now - (req.delayTime ?? 0) * 1000;
    const nas = strip({ address, ip: req.nasIp, identifier: req.nasIdentifier });
    let closed: number | undefined;
    if (req.status === 'start' || req.status === 'interim-update') {
      const id = SessionStore.id(client.name, nas, req.sessionId!);
      const before = req.status === 'interim-update' ? await this.sessions.get(id) : null;
      // An Interim-Update that arrives after its Stop (reordered) does not bring the session back.
      const gone = req.status === 'interim-update' && !before && (await this.sessions.stopped(id));
      if (!gone) await this.sessions.put(
        strip({
          id,
          sessionId: req.sessionId!,
          user: req.user ?? before?.user,
          client: client.name,
          nas,
          framedIp: req.framedIp ?? before?.framedIp,
          callingStationId: req.callingStationId ?? before?.callingStationId,
          // An interim for a session whose Start we never heard: started Acct-Session-Time ago.
          startedAt: before?.startedAt ?? at - (req.status === 'interim-update' ? (req.sessionTime ?? 0) * 1000 : 0),
          updatedAt: at,
          sessionTime: req.sessionTime,
          inputOctets: req.inputOctets,
          outputOctets: req.outputOctets,
        }),
      );
    } else if (req.status === 'stop') {
      await this.sessions.stop(SessionStore.id(client.name, nas, req.sessionId!));
    } else if (req.status === 'accounting-on' || req.status === 'accounting-off') {
      closed = await this.sessions.closeNas(client.name, nas);
    }
    const { status, user, delayTime: _d, ...said } = req;
    await this.ctx.audit.record({
      at,
      type: 'accounting',
      ...(user !== undefined ? { user } : {}),
      front: 'radius',
      client: client.name,
      ip: req.callingStationId || address,
      outcome: status,
      detail: { ...said, nasAddress: address, ...(closed !== undefined ? { closedSessions: closed } : {}) },
    });
  }
}
