import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { isIP, type AddressInfo } from 'node:net';
import type { Challenge } from '../../core/challenge.js';
import { EngineStoppedError } from '../../core/engine.js';
import { CountersignError } from '../../core/errors.js';
import type { BeginOptions } from '../../core/login.js';
import { doorRefusal, refusalSentence, type FirstFactorSource } from '../../core/first-factor.js';
import type { ThrottleState } from '../../core/throttle.js';
import type { UserRecord } from '../../core/store.js';
import { whyNoPush } from '../../core/push-service.js';
import type { AppContext } from '../../context.js';
import type { RadiusClient, RadiusClients } from './clients.js';
import { RadsecListener } from './radsec.js';
import { udpPeer, type Peer } from './transport.js';
import { ACCOUNTING_REQUEST, RadiusAccounting, STATUS_SERVER } from './accounting.js';
import { answerStatusServer } from './status.js';
import { attributesForNas, type CarriedAttributes } from './mppe.js';
import { RadiusUpstreams, credentialKind, forwardedAttributes } from './upstream.js';
import {
  ACCESS_REQUEST,
  ReplyTooLarge,
  checkMessageAuthenticator,
  decodeRequest,
  encodeReply,
  parseRaw,
  type RawPacket,
  type ReplyCode,
} from './packet.js';

const USER_NAME = 1;
const USER_PASSWORD = 2;
const STATE = 24;
const utf8 = new TextDecoder('utf-8', { fatal: true });

interface Reply {
  code: ReplyCode;
  message?: string;
  attributes?: [string, string | Buffer | number][];
  /** For the audit event. */
  factor?: string;
  reason?: string;
}

interface Request {
  client: RadiusClient;
  address: string;
  transport: Peer['transport'];
  raw: RawPacket;
  /** User-Name as the NAS sent it (it may carry a realm: CORP\\alice, alice@corp). */
  user: string;
  /** The Countersign record the first factor named; the User-Name until then. */
  account?: string;
  password?: string;
  state?: Buffer;
  /** What the upstream's Access-Accept hands on to the NAS (MS-CHAP2-Success, MPPE keys, Class), keys in the clear. */
  upstreamCarried?: CarriedAttributes;
  origin: { front: 'radius'; client: string; ip: string; userAgent?: string };
  /** Dedupe key of this packet (RFC 5080). */
  key: string;
  /** The User-Name's record, read with the dedupe lease where a code may come with the request. */
  early?: Promise<UserRecord | null | undefined>;
  /** Where the user is, for the first-factor throttle: Calling-Station-Id, else the NAS (for many users). */
  source: FirstFactorSource;
  /** The throttle's state for this user and source, read with the dedupe lease where a password is checked. */
  throttle?: Promise<ThrottleState>;
}

/** Answers to one Access-Challenge (codes, or Enter to check the push) before the login ends. */
const MAX_FOLLOW_UPS = 20;
/** Second-factor-only refusals that must not tell an unknown user from one without that factor. */
const SAME_ANSWER = new Set([
  'user_not_found',
  'no_second_factor',
  'passkey_needs_browser',
  'otp_not_enabled',
  'otp_not_offered',
  'otp_invalid',
  'otp_replayed',
  'push_not_enabled',
  'no_device',
]);

/** How long a spent RADIUS State stays refused: longer than any State lives. */
const STATE_SPENT_MS = 2 * 3600 * 1000;

/** An entry of the shared duplicate-detection table. */
type Seen = { s: 'processing' } | { s: 'pending'; cid: string } | { s: 'done'; reply: string };

/** What a challenge-mode State stands for, kept in the store until the login's deadline. */
interface BoundState {
  cid: string;
  user: string;
  client: string;
  address: string;
  /** Why no push was sent, repeated with every prompt of this login. */
  noPush?: string;
}

/** Stops handling a request without answering (the NAS may retransmit). */
class Drop extends Error {}

/**
 * Where the user is, for the first-factor throttle: Calling-Station-Id (VPN gear puts the user's
 * public address there, Wi-Fi the station), else the NAS itself, which then speaks for many users.
 */
function sourceOf(client: RadiusClient, callingStationId: string | undefined): FirstFactorSource {
  const station = callingStationId?.trim().toLowerCase().slice(0, 64);
  return station ? { front: 'radius', address: station } : { front: 'radius', address: `nas:${client.name}`, shared: true };
}

const why: Record<string, string> = {
  expired: 'No answer in time; the login was denied',
  cancelled: 'The login was cancelled',
  rejected: 'The login was rejected on your phone',
};

/**
 * The RADIUS front: one UDP socket, each Access-Request through named steps —
 * known client, sound structure, Message-Authenticator, attributes, duplicate
 * check in the shared store, then the client's mode — and one answer.
 */
export class RadiusFront {
  private socket?: dgram.Socket;
  /** Requests this instance is answering (a retransmit here is ignored), with the dedupe state it recorded. */
  private held = new Map<string, Seen['s']>();
  /** Answers sent whose reply-cache write has not landed yet (cacheReply). */
  private answered = new Map<string, Buffer>();
  private inflight = new Set<Promise<void>>();
  /** Accounting (RFC 2866), when on: its own port (listen), and Accounting-Requests handed over from this one. */
  readonly accounting?: RadiusAccounting;
  /** Upstream RADIUS servers checking the first factor for the clients that name one. */
  private readonly upstreams: RadiusUpstreams;
  /** RadSec (RFC 6614), when on: a TLS listener (listen) whose packets go through the same steps. */
  readonly radsec?: RadsecListener;

  constructor(
    private ctx: AppContext,
    readonly clients: RadiusClients,
  ) {
    this.upstreams = new RadiusUpstreams(ctx.config.radius.upstreams, ctx.metrics, ctx.log);
    const drop = (reason: string, address: string, detail?: Record<string, unknown>) => this.drop(reason, address, detail);
    if (ctx.config.radius.accountingEnabled) {
      this.accounting = new RadiusAccounting(ctx, clients, {
        drop,
        statusServer: (raw, client, address, send) => answerStatusServer(ctx, raw, client, address, 'accounting', send, drop),
      });
    }
    if (ctx.config.radius.radsec.enabled) this.radsec = new RadsecListener(ctx, clients, (msg, peer) => this.handle(msg, peer));
  }

  async start(host: string, port: number): Promise<AddressInfo> {
    const type = isIP(host) === 4 ? 'udp4' : 'udp6';
    const socket = dgram.createSocket({ type, ipv6Only: false, reuseAddr: false });
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      const p = this.handle(msg, udpPeer(socket, rinfo)).catch((err) => this.ctx.log.error({ err }, 'radius: unexpected failure; request dropped'));
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    socket.on('error', (err) => this.ctx.log.error({ err }, 'radius socket error'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    await this.clients.start();
    return socket.address();
  }

  async stop(): Promise<void> {
    this.clients.stop();
    await this.accounting?.stop();
    await this.radsec?.stop();
    // A request still waiting on an upstream ends now, as a reject.
    this.upstreams.close();
    // Held requests are released by the engine stopping; wait for their last word.
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 2000))]);
    await new Promise<void>((r) => (this.socket ? this.socket.close(() => r()) : r()));
  }

  /** Per client: when a missing Message-Authenticator was last logged at warn, and the drops not logged since. */
  private maWarned = new Map<string, { at: number; suppressed: number }>();

  private drop(reason: string, address: string, detail?: Record<string, unknown>): void {
    this.ctx.metrics.radiusDropped.inc({ reason });
    const client = typeof detail?.client === 'string' ? detail.client : undefined;
    if (client) this.ctx.metrics.radiusClientDropped.inc({ client, reason });
    if (client && reason === 'missing_message_authenticator') return this.missingMessageAuthenticator(client, address);
    this.ctx.log.warn({ address, reason, ...detail }, 'radius: request dropped');
  }

  /**
   * Gear that cannot send Message-Authenticator has every request dropped, which looks like a
   * dead server from the NAS: say so at warn, naming the client and the setting, at most once a
   * minute per client so a busy NAS does not flood the log (the metric counts every drop).
   */
  private missingMessageAuthenticator(client: string, address: string): void {
    const now = this.ctx.clock.now();
    const last = this.maWarned.get(client);
    if (last && now - last.at < 60_000) {
      last.suppressed++;
      this.ctx.log.debug({ address, reason: 'missing_message_authenticator', client }, 'radius: request dropped');
      return;
    }
    if (this.maWarned.size >= 10_000) this.maWarned.clear();
    this.maWarned.set(client, { at: now, suppressed: 0 });
    this.ctx.log.warn(
      { address, reason: 'missing_message_authenticator', client, ...(last?.suppressed ? { droppedSinceLastWarning: last.suppressed } : {}) },
      `radius: requests from client ${client} are dropped: they carry no Message-Authenticator. ` +
        `Only for gear that cannot send one (pam_radius before 3.0, OpenVPN's radiusplugin, radsecproxy before 1.11), ` +
        `set radius.clients[].requireMessageAuthenticator: false for this client (added through the API: add it again with --no-message-authenticator) ` +
        `and restrict its address: without it a man in the middle can forge an Access-Accept (BlastRADIUS, CVE-2024-3596). Logged at most once a minute per client`,
    );
  }

  /** One packet from a UDP datagram or a RadSec frame (transport.ts), through the steps. */
  private async handle(msg: Buffer, peer: Peer): Promise<void> {
    const started = Date.now();
    const { address } = peer;
    // RadSec named the client by its certificate; UDP by the source address.
    const client = peer.client ?? this.clients.match(address);
    if (!client) return this.drop('unknown_client', address);
    const raw = parseRaw(msg);
    if ('ok' in raw) return this.drop('malformed', address, { detail: raw.reason, client: client.name });
    // Status-Server (RFC 5997, status.ts) and Accounting-Request (RFC 2866, accounting.ts) have steps of their own.
    if (raw.code === STATUS_SERVER || (raw.code === ACCOUNTING_REQUEST && this.accounting)) {
      const drop = (reason: string, a: string, detail?: Record<string, unknown>) => this.drop(reason, a, detail);
      return raw.code === STATUS_SERVER
        ? answerStatusServer(this.ctx, raw, client, address, 'auth', peer.send, drop, peer.transport)
        : this.accounting!.handle(raw, client, address, peer.dedupe, peer.send);
    }
    if (raw.code !== ACCESS_REQUEST) return this.drop('unsupported_code', address, { code: raw.code, client: client.name });
    const ma = checkMessageAuthenticator(raw, client.secret);
    if (ma === 'bad') return this.drop('bad_message_authenticator', address, { client: client.name });
    // Over RadSec TLS protects the packet (RFC 6614): Message-Authenticator is checked when present.
    if (ma === 'missing' && client.requireMessageAuthenticator && peer.transport === 'udp') return this.drop('missing_message_authenticator', address, { client: client.name });

    const count = (t: number) => raw.attributes.filter(([type]) => type === t).length;
    if (count(USER_NAME) !== 1 || count(USER_PASSWORD) > 1 || count(STATE) > 1) {
      return this.drop('bad_attributes', address, { client: client.name });
    }
    let user: string;
    let decoded;
    try {
      user = utf8.decode(raw.attributes.find(([t]) => t === USER_NAME)![1]);
      decoded = decodeRequest(raw, client.secret);
    } catch {
      return this.drop('undecodable', address, { client: client.name });
    }

    const key = createHash('sha256')
      .update(`${client.name}|${address}|${peer.dedupe}|${raw.identifier}|`)
      .update(raw.authenticator)
      .digest('base64url');
    const req: Request = {
      client,
      address,
      transport: peer.transport,
      raw,
      user,
      password: decoded.password,
      state: decoded.state,
      origin: { front: 'radius', client: client.name, ip: decoded.callingStationId || address, userAgent: decoded.nasIdentifier },
      key,
      source: sourceOf(client, decoded.callingStationId),
    };
    const send = peer.send;

    // A retransmit of what this instance is already working on, or has just answered, needs no store round trip.
    const answered = this.answered.get(key);
    if (answered) {
      this.ctx.metrics.radiusDuplicates.inc({ state: 'done' });
      return void send(answered);
    }
    const mine = this.held.get(key);
    if (mine) return void this.ctx.metrics.radiusDuplicates.inc({ state: mine });

    // RFC 5080 duplicate detection, shared through the store across instances. 'processing'
    // is a short lease (an instance that dies mid-way must not hold the NAS up for the whole
    // deadline); push-wait turns it into 'pending' for the login's life once the login is open.
    const seenKey = `radius:${key}`;
    const lease = this.ctx.config.radius.processingLeaseSeconds * 1000;
    let seen: string | null;
    try {
      // Where a code may come with the request, the user's record rides in the same write as
      // the lease: the steps after it read the user in this same turn of the event loop and
      // share that answer (RedisUsers keeps reads that recent), one round trip less.
      if (req.password !== undefined && !req.state && (client.mode === 'append' || client.secondFactorOnly)) {
        req.early = this.ctx.store.users.get(user).catch(() => undefined);
      }
      // Where a password will be checked, the throttle's state leaves in the same write too.
      if (!req.state && !client.secondFactorOnly && (req.password !== undefined || client.upstream)) {
        req.throttle = this.ctx.firstFactor.prefetch(user, req.source);
        // Awaited only if the request gets that far; a store failure is handled there.
        req.throttle?.catch(() => {});
      }
      seen = await this.ctx.store.kv.setIfAbsent(seenKey, JSON.stringify({ s: 'processing' } satisfies Seen), lease);
    } catch {
      // Without the store no login can be decided; say so rather than hang.
      try {
        return void send(this.encode(req, { code: 'Access-Reject', message: 'The second-factor service is unavailable; login denied' }));
      } catch (err) {
        if (err instanceof Drop) return;
        throw err;
      }
    }
    if (seen !== null) return this.duplicate(req, JSON.parse(seen) as Seen, send, started);

    this.held.set(key, 'processing');
    try {
      const reply = await this.decide(req);
      const buf = this.encode(req, reply);
      send(buf);
      this.record(req, reply, started);
      await this.cacheReply(key, buf);
    } catch (err) {
      if (!(err instanceof Drop)) throw err;
    } finally {
      this.held.delete(key);
    }
  }

  /**
   * The answer is sent before it is cached: no round trip between a decision (a phone's
   * approval) and the NAS. The cache write then leaves with the login's record and audit
   * event; until it lands, a retransmit here is answered from `answered`, and one on another
   * instance sees the login still held (ignored, as any retransmit while we work).
   */
  private async cacheReply(key: string, buf: Buffer): Promise<void> {
    this.answered.set(key, buf);
    try {
      await this.ctx.store.kv
        .set(`radius:${key}`, JSON.stringify({ s: 'done', reply: buf.toString('base64') } satisfies Seen), this.ctx.config.radius.replyCacheSeconds * 1000)
        .catch(() => {});
    } finally {
      this.answered.delete(key);
    }
  }

  /** A retransmit: answer from the cache, ignore while we work on it, or take over a login another instance held. */
  private async duplicate(req: Request, seen: Seen, send: (b: Buffer) => void, started: number): Promise<void> {
    this.ctx.metrics.radiusDuplicates.inc({ state: seen.s });
    if (seen.s === 'done') return send(Buffer.from(seen.reply, 'base64'));
    if (seen.s === 'processing' || this.held.has(req.key)) return;
    this.held.set(req.key, 'pending');
    try {
      const reply = await this.carriedForRetransmit(req, this.finalReply(req, await this.ctx.engine.wait(seen.cid)));
      const buf = this.encode(req, reply);
      send(buf);
      this.record(req, reply, started);
      await this.cacheReply(req.key, buf);
    } catch (err) {
      if (err instanceof EngineStoppedError || err instanceof Drop) return;
      try {
        send(this.encode(req, this.failure(err)));
      } catch (again) {
        if (!(again instanceof Drop)) throw again;
      }
    } finally {
      this.held.delete(req.key);
    }
  }

  private encode(req: Request, reply: Reply): Buffer {
    const attrs: [string, string | Buffer | number][] = [];
    if (reply.message) attrs.push(['Reply-Message', reply.message.slice(0, 250)]);
    attrs.push(...(reply.attributes ?? []));
    try {
      return encodeReply(req.raw, reply.code, req.client.secret, attrs);
    } catch (err) {
      if (!(err instanceof ReplyTooLarge)) {
        // A reply that cannot be encoded (a bad per-user attribute) is a reject, never silence.
        this.ctx.log.error({ err, client: req.client.name }, 'radius: reply could not be encoded');
        try {
          return encodeReply(req.raw, 'Access-Reject', req.client.secret, [['Reply-Message', 'Internal error; login denied']]);
        } catch (again) {
          if (!(again instanceof ReplyTooLarge)) throw again;
        }
      }
      // The echoed Proxy-State alone leaves no room: no valid answer exists, so none is sent.
      this.drop('reply_too_large', req.address, { client: req.client.name });
      throw new Drop();
    }
  }

  private record(req: Request, reply: Reply, started: number): void {
    const outcome = reply.code === 'Access-Accept' ? 'accept' : reply.code === 'Access-Reject' ? 'reject' : 'challenge';
    this.ctx.metrics.radiusRequests.inc({ client: req.client.name, outcome });
    void this.ctx.audit.record({
      at: Date.now(),
      type: 'radius',
      user: req.user,
      front: 'radius',
      client: req.client.name,
      ip: req.origin.ip,
      method: reply.factor,
      outcome,
      durationMs: Date.now() - started,
      detail: {
        mode: req.client.secondFactorOnly ? `${req.client.mode}/second-factor-only` : req.client.mode,
        ...(reply.reason ? { reason: reply.reason } : {}),
        ...(req.transport === 'radsec' ? { transport: 'radsec' } : {}),
        ...(req.client.upstream ? { firstFactor: `upstream:${req.client.upstream}` } : {}),
      },
    });
  }

  /** Any error on the way is a reject with words the user can act on; nothing approves. */
  private failure(err: unknown): Reply {
    if (err instanceof EngineStoppedError) throw new Drop();
    if (err instanceof CountersignError) {
      const message =
        err.code === 'first_factor_failed' || err.code === 'user_not_found'
          ? 'Wrong user name or password'
          : err.code === 'challenge_not_found'
            ? 'This login was lost by the second-factor service; login denied, please try again'
            : err.code === 'no_second_factor'
            ? `No second factor is set up for this account; set one up at ${this.ctx.devices.publicUrl.replace(/\/+$/, '')}/account/`
            : err.status >= 500
            ? 'The second-factor service is unavailable; login denied'
            : err.message;
      return { code: 'Access-Reject', message, reason: err.code };
    }
    this.ctx.log.error({ err }, 'radius: request failed');
    return { code: 'Access-Reject', message: 'Internal error; login denied', reason: 'internal' };
  }

  private acceptAttributes(req: Request, c?: Challenge) {
    const user = c?.user ?? req.user;
    // A user named "constructor" must not reach Object.prototype.
    const own = this.ctx.config.radius.userAttributes;
    return [...req.client.acceptAttributes, ...(Object.hasOwn(own, user) ? own[user]! : [])] as [string, string | number][];
  }

  private finalReply(req: Request, c: Challenge): Reply {
    if (c.state === 'approved') return { code: 'Access-Accept', attributes: this.acceptAttributes(req, c), factor: c.method };
    const reason = c.reason === 'superseded by a newer login' ? 'A newer login replaced this one' : c.reason === 'wrong-number' ? 'The number did not match; login rejected' : why[c.state];
    return { code: 'Access-Reject', message: reason, factor: c.method, reason: c.reason ?? c.state };
  }

  private async decide(req: Request): Promise<Reply> {
    try {
      if (req.state) return req.client.upstream ? await this.carriedAcrossRounds(req, await this.followUp(req)) : await this.followUp(req);
      if (req.client.upstream) return await this.viaUpstream(req);
      if (req.password === undefined) {
        return { code: 'Access-Reject', message: 'Only PAP (User-Password) is supported', reason: 'no_password' };
      }
      const { client } = req;
      if (client.secondFactorOnly) return await this.secondFactorOnly(req, req.password);
      if (client.mode === 'append') return await this.append(req, req.password);
      const checked = await this.firstFactor(req, [req.password]);
      if ('refused' in checked) return checked.refused;
      return client.mode === 'challenge' ? await this.challenge(req) : await this.pushWait(req);
    } catch (err) {
      return this.failure(err);
    }
  }

  /**
   * The first factor of this request, through the step every front shares (src/core/first-factor.ts):
   * the readings of the typed text (append tries up to three) are one attempt for the throttle,
   * checked by the directories or, for a client that names one, the upstream server. The reading
   * accepted (req.account names the user's record), or the reject to send: a right password on an
   * account that cannot sign in as it is (expired password, disabled) hears why, never "wrong
   * password"; a source that must wait hears that.
   */
  private async firstFactor(req: Request, passwords: (string | undefined)[]): Promise<{ reading: number } | { refused: Reply }> {
    try {
      if (req.client.upstream) return await this.upstreamFirstFactor(req, passwords);
      const verified = await this.ctx.firstFactor.check({ login: req.user, passwords: passwords as string[], source: req.source, early: req.throttle });
      if (verified.ok) {
        req.account = verified.name;
        return { reading: verified.reading };
      }
      const invalid = verified.reason === 'invalid';
      return { refused: { code: 'Access-Reject', message: invalid ? 'Wrong user name or password' : verified.message, reason: invalid ? 'first_factor_failed' : verified.reason } };
    } catch (err) {
      const refused = doorRefusal(err);
      if (refused) return { refused: { code: 'Access-Reject', message: refusalSentence(err as CountersignError), reason: refused } };
      throw err;
    }
  }

  /**
   * The first factor by an upstream RADIUS server (upstream.ts), then the client's mode. append
   * with PAP splits the code off as it does for the directories (firstFactor forwards each
   * password it tries); MS-CHAP and CHAP carry no code, so append pushes. Nothing goes upstream
   * again for the second factor.
   */
  private async viaUpstream(req: Request): Promise<Reply> {
    if (req.client.mode === 'append' && req.password !== undefined) return this.withCarried(req, await this.append(req, req.password));
    // The NAS's credentials as they came (PAP, CHAP, MS-CHAP): one reading.
    const checked = await this.firstFactor(req, [undefined]);
    if ('refused' in checked) return checked.refused;
    if (req.client.mode !== 'challenge') {
      await this.keepCarriedForRetransmit(req);
      return this.withCarried(req, await this.pushWait(req));
    }
    const reply = await this.challenge(req);
    if (reply.code === 'Access-Challenge') await this.keepCarried(req, reply);
    return this.withCarried(req, reply);
  }

  /**
   * The readings forwarded to the upstream one by one, under the first-factor throttle like a
   * directory's check: an upstream reject is a failure, an upstream that does not answer is none.
   */
  private async upstreamFirstFactor(req: Request, passwords: (string | undefined)[]): Promise<{ reading: number } | { refused: Reply }> {
    return this.ctx.firstFactor.guarded<{ reading: number } | { refused: Reply }>(req.user, req.source, req.throttle, async () => {
      let last: Reply | undefined;
      for (const [reading, password] of passwords.entries()) {
        const refused = await this.upstreamCheck(req, password);
        if (!refused) return { result: { reading }, outcome: 'accepted' };
        last = refused;
        if (refused.reason !== 'first_factor_failed') return { result: { refused }, outcome: 'other' };
      }
      return { result: { refused: last! }, outcome: 'invalid' };
    });
  }

  /**
   * Forwards the NAS's credentials (PAP with `password` in its place when given); null when the
   * upstream accepted, else the reject. Only a verified Access-Accept lets the login go on.
   */
  private async upstreamCheck(req: Request, password?: string): Promise<Reply | null> {
    const name = req.client.upstream!;
    const upstream = this.upstreams.get(name);
    const unavailable = (reason: string): Reply => ({ code: 'Access-Reject', message: 'The password server is unavailable; login denied', reason });
    if (!upstream) {
      // A client added through the API may outlive its upstream in the config file.
      this.ctx.log.error({ client: req.client.name, upstream: name }, 'radius: the client names an upstream that is not configured; the login is denied');
      return unavailable('upstream_unknown');
    }
    if (!credentialKind(req.raw)) return { code: 'Access-Reject', message: 'No password in the request (PAP, CHAP or MS-CHAP)', reason: 'no_password' };
    const forwarded = forwardedAttributes(req.raw, req.client.secret, password === undefined ? undefined : Buffer.from(password, 'utf8'));
    const answer = await upstream.forward(forwarded.attributes, forwarded.password);
    if (answer.outcome === 'reject') {
      // MS-CHAP clients read why (E=691 and the like) from MS-CHAP-Error.
      return { code: 'Access-Reject', message: 'Wrong user name or password', reason: 'first_factor_failed', attributes: upstream.chapErrors(answer) };
    }
    if (answer.outcome === 'challenge') {
      return { code: 'Access-Reject', message: 'The password server asked for more than a password; login denied', reason: 'upstream_challenge' };
    }
    if (answer.outcome !== 'accept') return unavailable(`upstream_${answer.outcome}`);
    try {
      req.upstreamCarried = upstream.carried(answer);
    } catch (err) {
      this.ctx.log.warn({ err, upstream: name }, 'radius: the upstream accepted with keys that do not decrypt; the login is denied');
      return unavailable('upstream_bad_keys');
    }
    return null;
  }

  /** An Access-Accept carries what the upstream handed on, keys encrypted for the NAS request it answers. */
  private withCarried(req: Request, reply: Reply, carried = req.upstreamCarried): Reply {
    if (reply.code !== 'Access-Accept' || !carried) return reply;
    return { ...reply, attributes: [...(reply.attributes ?? []), ...attributesForNas(carried, req.client.secret, req.raw.authenticator)] };
  }

  private carriedKey = (state: Buffer) => `radius-upstream:${state.toString('base64url')}`;

  /** challenge mode: what the upstream handed on waits, sealed, beside the State until the final answer. */
  private async keepCarried(req: Request, reply: Reply): Promise<void> {
    const c = req.upstreamCarried;
    if (!c || c.plain.length + c.keys.length + c.classes.length === 0) return;
    const state = reply.attributes?.find(([n]) => n === 'State')?.[1];
    const seconds = reply.attributes?.find(([n]) => n === 'Session-Timeout')?.[1];
    if (!Buffer.isBuffer(state) || typeof seconds !== 'number') throw new Error('an Access-Challenge without State or Session-Timeout');
    const key = this.carriedKey(state);
    await this.ctx.store.kv.set(key, this.ctx.box.seal(Buffer.from(JSON.stringify(c)), key), seconds * 1000 + 5000);
  }

  /**
   * push-wait: a retransmit of this request may reach another instance, which then awaits the
   * login and answers (duplicate()); it finds what the upstream handed on here, sealed, under the
   * request's dedupe key. The retransmit is the same packet, so the same authenticator keys it.
   */
  private async keepCarriedForRetransmit(req: Request): Promise<void> {
    const c = req.upstreamCarried;
    if (!c || c.plain.length + c.keys.length + c.classes.length === 0) return;
    const key = `radius-upstream-request:${req.key}`;
    await this.ctx.store.kv.set(key, this.ctx.box.seal(Buffer.from(JSON.stringify(c)), key), this.ctx.config.challenge.deadlineSeconds * 1000 + 60_000);
  }

  private async carriedForRetransmit(req: Request, reply: Reply): Promise<Reply> {
    if (reply.code !== 'Access-Accept' || !req.client.upstream) return reply;
    const key = `radius-upstream-request:${req.key}`;
    const sealed = await this.ctx.store.kv.get(key);
    return sealed ? this.withCarried(req, reply, JSON.parse(this.ctx.box.open(sealed, key).toString()) as CarriedAttributes) : reply;
  }

  /**
   * The follow-up's final answer: an Access-Accept gets the kept attributes, keys encrypted with
   * the Request Authenticator of this follow-up (the request it answers); they are then spent.
   */
  private async carriedAcrossRounds(req: Request, reply: Reply): Promise<Reply> {
    if (reply.code === 'Access-Challenge' || !req.state) return reply;
    const key = this.carriedKey(req.state);
    // A refusal of a State that is not this NAS's or already spent leaves the real login's keys alone.
    if (reply.code === 'Access-Reject' && (reply.reason === 'bad_state' || reply.reason === 'state_reused')) return reply;
    const sealed = await this.ctx.store.kv.get(key);
    await this.ctx.store.kv.delete(key).catch(() => {});
    if (reply.code !== 'Access-Accept' || !sealed) return reply;
    return this.withCarried(req, reply, JSON.parse(this.ctx.box.open(sealed, key).toString()) as CarriedAttributes);
  }

  private opts(req: Request, more: BeginOptions = {}): BeginOptions {
    return { ...more, policy: req.client.policy };
  }

  /** push-wait: hold the request until the phone answers or the deadline passes. */
  private async pushWait(req: Request): Promise<Reply> {
    const c = await this.ctx.login.begin(req.account ?? req.user, null, req.origin, this.opts(req, { only: 'push', noScreen: true }));
    await this.ctx.store.kv.set(`radius:${req.key}`, JSON.stringify({ s: 'pending', cid: c.id } satisfies Seen), c.deadline - c.createdAt + 60_000);
    if (this.held.has(req.key)) this.held.set(req.key, 'pending');
    return this.finalReply(req, await this.ctx.engine.wait(c.id));
  }

  /** A code typed with the request: a wrong or reused one ends the login at once. */
  private async otp(req: Request, code: string): Promise<Reply> {
    const name = req.account ?? req.user;
    const known = name === req.user ? await req.early : undefined;
    const c = await this.ctx.login.otpOnce(name, code, req.origin, req.client.policy, known);
    return { code: 'Access-Accept', attributes: this.acceptAttributes(req, c), factor: c.method };
  }

  /**
   * The NAS checked the password: the password field is the OTP, or empty / "push". Nothing
   * here checked that the user exists, so an unknown user, a user without the factor and a
   * wrong code get the same answer.
   */
  private async secondFactorOnly(req: Request, answer: string): Promise<Reply> {
    const a = answer.trim();
    const push = a === '' || a.toLowerCase() === 'push';
    try {
      if (push) return await (req.client.mode === 'challenge' ? this.challenge(req) : this.pushWait(req));
      return await this.otp(req, a);
    } catch (err) {
      if (err instanceof CountersignError && SAME_ANSWER.has(err.code)) {
        return { code: 'Access-Reject', message: push ? 'Login denied: no push for this account' : 'Login denied: wrong one-time code', reason: err.code };
      }
      throw err;
    }
  }

  /**
   * append: the typed text is "password,123456" (or "password,push"), "password123456", or the
   * password alone (then a push is sent). The ways to read it are tried in that order — the
   * delimiter split, the trailing digits (the user's code length, 6 for an unknown user), the
   * whole text — and the first password the directory accepts decides: its code is checked then
   * (so a split that fails never uses up a code), or a push is sent. Each distinct password is
   * checked once; a refusal other than a wrong password (expired, directory unavailable) ends the
   * search. An unknown user goes through the same checks as a wrong password. appendDelimiter ""
   * turns the delimiter form off (trailing digits only).
   */
  private async append(req: Request, typed: string): Promise<Reply> {
    const d = req.client.appendDelimiter;
    const readings: { password: string; code?: string }[] = [];
    // Each password once; a split never leaves an empty one (no directory takes it).
    const add = (r: { password: string; code?: string }, split = true) => {
      if ((split && r.password === '') || readings.some((x) => x.password === r.password)) return;
      readings.push(r);
    };
    const i = d ? typed.lastIndexOf(d) : -1;
    const second = i >= 0 ? typed.slice(i + d.length) : '';
    if (/^push$/i.test(second)) add({ password: typed.slice(0, i) });
    else if (/^\d{6,8}$/.test(second)) add({ password: typed.slice(0, i), code: second });
    const early = await req.early;
    const digits = (early !== undefined ? early : await this.ctx.store.users.get(req.user))?.otpDigits ?? 6;
    const m = new RegExp(`^(.*)(\\d{${digits}})$`, 's').exec(typed);
    if (m) add({ password: m[1]!, code: m[2]! });
    add({ password: typed }, false);
    // All readings are one attempt for the throttle: a wrong password counts once, not three times.
    const checked = await this.firstFactor(req, readings.map((r) => r.password));
    if ('refused' in checked) return checked.refused;
    const { code } = readings[checked.reading]!;
    return code === undefined ? this.pushWait(req) : this.otp(req, code);
  }

  /** challenge: ask for the OTP or the push approval in an Access-Challenge bound to a State. */
  private async challenge(req: Request): Promise<Reply> {
    const { challenge: c, pushNotSent } = await this.ctx.login.open(req.account ?? req.user, null, req.origin, this.opts(req));
    // The policy let the user in on the first factor alone.
    if (c.state === 'approved') return this.finalReply(req, c);
    // Only reached once the first factor passed (or the NAS vouched for it): the reason is the user's own.
    const noPush = pushNotSent ? whyNoPush(pushNotSent, this.ctx.clock.now(), true) : undefined;
    const state = randomBytes(16);
    await this.ctx.store.kv.set(
      `radius-state:${state.toString('base64url')}`,
      JSON.stringify({ cid: c.id, user: req.user, client: req.client.name, address: req.address, ...(noPush ? { noPush } : {}) } satisfies BoundState),
      c.deadline - this.ctx.clock.now(),
    );
    return this.prompt(c, state, '', noPush);
  }

  private prompt(c: Challenge, state: Buffer, before: string, noPush?: string): Reply {
    const push = c.factors.includes('push');
    const otp = c.factors.includes('otp');
    const number = c.number ? `, type ${c.number} on your phone,` : '';
    const message = otp && push
      ? `Enter your one-time code, or approve the push (ID ${c.displayCode})${number} and press Enter`
      : push
        ? `Approve the push on your phone (ID ${c.displayCode})${number} and press Enter`
        : 'Enter your one-time code';
    return {
      code: 'Access-Challenge',
      // Within the 250 characters a Reply-Message keeps (encode cuts there): prompt first, reason after.
      message: before + message + (noPush && !push ? ` (${noPush})` : ''),
      attributes: [
        ['State', state],
        ['Session-Timeout', Math.max(1, Math.ceil((c.deadline - this.ctx.clock.now()) / 1000))],
      ],
      reason: 'challenge',
    };
  }

  /** The answer to an Access-Challenge: an OTP, or Enter to check the push. */
  private async followUp(req: Request): Promise<Reply> {
    const stateKey = `radius-state:${req.state!.toString('base64url')}`;
    const raw = await this.ctx.store.kv.get(stateKey);
    const bound = raw ? (JSON.parse(raw) as BoundState) : null;
    if (!bound || bound.user !== req.user || bound.client !== req.client.name || bound.address !== req.address) {
      return { code: 'Access-Reject', message: 'This login is unknown or has expired; start again', reason: 'bad_state' };
    }
    const answer = (req.password ?? '').trim();
    let c = await this.ctx.engine.get(bound.cid);
    if (!c) return { code: 'Access-Reject', message: 'This login has expired; start again', reason: 'expired' };
    // A NAS (or a script behind it) pressing Enter for ever must not cost us without limit.
    if (c.state === 'pending' && (await this.ctx.store.guards.hit(`radius-followups:${req.state!.toString('base64url')}`, c.deadline - this.ctx.clock.now() + 60_000)) > MAX_FOLLOW_UPS) {
      c = (await this.ctx.engine.cancel(c.id, 'too many answers to one challenge')).challenge ?? c;
      await this.ctx.store.kv.delete(stateKey).catch(() => {});
      return { code: 'Access-Reject', message: 'Too many attempts for this login; start again', reason: 'too_many_follow_ups' };
    }
    if (c.state === 'pending' && /^\d{6,8}$/.test(answer) && c.factors.includes('otp')) {
      try {
        c = await this.ctx.login.answerOtp(c.id, answer);
      } catch (err) {
        if (err instanceof CountersignError && (err.code === 'otp_invalid' || err.code === 'otp_replayed')) {
          return this.prompt(c, req.state!, 'Wrong code. ', bound.noPush);
        }
        throw err;
      }
    }
    if (c.state === 'pending') return this.prompt(c, req.state!, 'Not approved yet. ', bound.noPush);
    // One decided login, one final answer: a State is spent by the first follow-up that gets
    // one, on whichever instance (a retransmit of that same packet is answered from the reply
    // cache before it gets here). Another packet with the same State is refused.
    const spent = !(await this.ctx.store.guards.claimOnce(`radius-state-used:${req.state!.toString('base64url')}`, STATE_SPENT_MS));
    if (spent) return { code: 'Access-Reject', message: 'This login was already completed; start again', reason: 'state_reused' };
    await this.ctx.store.kv.delete(stateKey).catch(() => {});
    return this.finalReply(req, c);
  }
}
