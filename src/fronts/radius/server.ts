import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { isIP, type AddressInfo } from 'node:net';
import type { Challenge } from '../../core/challenge.js';
import { EngineStoppedError } from '../../core/engine.js';
import { CountersignError } from '../../core/errors.js';
import type { BeginOptions } from '../../core/login.js';
import { whyNoPush } from '../../core/push-service.js';
import type { AppContext } from '../../context.js';
import { normalizeAddress, type RadiusClient, type RadiusClients } from './clients.js';
import { ACCOUNTING_REQUEST, RadiusAccounting, STATUS_SERVER } from './accounting.js';
import { answerStatusServer } from './status.js';
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
  raw: RawPacket;
  /** User-Name as the NAS sent it (it may carry a realm: CORP\\alice, alice@corp). */
  user: string;
  /** The Countersign record the first factor named; the User-Name until then. */
  account?: string;
  password?: string;
  state?: Buffer;
  origin: { front: 'radius'; client: string; ip: string; userAgent?: string };
  /** Dedupe key of this packet (RFC 5080). */
  key: string;
}

/** Answers to one Access-Challenge (codes, or Enter to check the push) before the login ends. */
const MAX_FOLLOW_UPS = 20;
/** Second-factor-only refusals that must not tell an unknown user from one without that factor. */
const SAME_ANSWER = new Set([
  'user_not_found',
  'no_second_factor',
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
  private inflight = new Set<Promise<void>>();
  /** Accounting (RFC 2866), when on: its own port (listen), and Accounting-Requests handed over from this one. */
  readonly accounting?: RadiusAccounting;

  constructor(
    private ctx: AppContext,
    readonly clients: RadiusClients,
  ) {
    const drop = (reason: string, address: string, detail?: Record<string, unknown>) => this.drop(reason, address, detail);
    if (ctx.config.radius.accountingEnabled) {
      this.accounting = new RadiusAccounting(ctx, clients, {
        drop,
        statusServer: (raw, client, address, send) => answerStatusServer(ctx, raw, client, address, 'accounting', send, drop),
      });
    }
  }

  async start(host: string, port: number): Promise<AddressInfo> {
    const type = isIP(host) === 4 ? 'udp4' : 'udp6';
    const socket = dgram.createSocket({ type, ipv6Only: false, reuseAddr: false });
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      const p = this.handle(msg, rinfo).catch((err) => this.ctx.log.error({ err }, 'radius: unexpected failure; request dropped'));
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

  private async handle(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const started = Date.now();
    const address = normalizeAddress(rinfo.address);
    const client = this.clients.match(address);
    if (!client) return this.drop('unknown_client', address);
    const raw = parseRaw(msg);
    if ('ok' in raw) return this.drop('malformed', address, { detail: raw.reason, client: client.name });
    // Status-Server (RFC 5997, status.ts) and Accounting-Request (RFC 2866, accounting.ts) have steps of their own.
    if (raw.code === STATUS_SERVER || (raw.code === ACCOUNTING_REQUEST && this.accounting)) {
      const reply = (buf: Buffer) => this.socket?.send(buf, rinfo.port, rinfo.address);
      const drop = (reason: string, a: string, detail?: Record<string, unknown>) => this.drop(reason, a, detail);
      return raw.code === STATUS_SERVER ? answerStatusServer(this.ctx, raw, client, address, 'auth', reply, drop) : this.accounting!.handle(raw, client, address, rinfo.port, reply);
    }
    if (raw.code !== ACCESS_REQUEST) return this.drop('unsupported_code', address, { code: raw.code, client: client.name });
    const ma = checkMessageAuthenticator(raw, client.secret);
    if (ma === 'bad') return this.drop('bad_message_authenticator', address, { client: client.name });
    if (ma === 'missing' && client.requireMessageAuthenticator) return this.drop('missing_message_authenticator', address, { client: client.name });

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
      .update(`${client.name}|${address}|${rinfo.port}|${raw.identifier}|`)
      .update(raw.authenticator)
      .digest('base64url');
    const req: Request = {
      client,
      address,
      raw,
      user,
      password: decoded.password,
      state: decoded.state,
      origin: { front: 'radius', client: client.name, ip: decoded.callingStationId || address, userAgent: decoded.nasIdentifier },
      key,
    };
    const send = (buf: Buffer) => this.socket?.send(buf, rinfo.port, rinfo.address);

    // A retransmit of what this instance is already working on needs no store round trip.
    const mine = this.held.get(key);
    if (mine) return void this.ctx.metrics.radiusDuplicates.inc({ state: mine });

    // RFC 5080 duplicate detection, shared through the store across instances. 'processing'
    // is a short lease (an instance that dies mid-way must not hold the NAS up for the whole
    // deadline); push-wait turns it into 'pending' for the login's life once the login is open.
    const seenKey = `radius:${key}`;
    const lease = this.ctx.config.radius.processingLeaseSeconds * 1000;
    let seen: string | null;
    try {
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
      await this.ctx.store.kv
        .set(seenKey, JSON.stringify({ s: 'done', reply: buf.toString('base64') } satisfies Seen), this.ctx.config.radius.replyCacheSeconds * 1000)
        .catch(() => {});
      send(buf);
      this.record(req, reply, started);
    } catch (err) {
      if (!(err instanceof Drop)) throw err;
    } finally {
      this.held.delete(key);
    }
  }

  /** A retransmit: answer from the cache, ignore while we work on it, or take over a login another instance held. */
  private async duplicate(req: Request, seen: Seen, send: (b: Buffer) => void, started: number): Promise<void> {
    this.ctx.metrics.radiusDuplicates.inc({ state: seen.s });
    if (seen.s === 'done') return send(Buffer.from(seen.reply, 'base64'));
    if (seen.s === 'processing' || this.held.has(req.key)) return;
    this.held.set(req.key, 'pending');
    try {
      const reply = this.finalReply(req, await this.ctx.engine.wait(seen.cid));
      const buf = this.encode(req, reply);
      await this.ctx.store.kv
        .set(`radius:${req.key}`, JSON.stringify({ s: 'done', reply: buf.toString('base64') } satisfies Seen), this.ctx.config.radius.replyCacheSeconds * 1000)
        .catch(() => {});
      send(buf);
      this.record(req, reply, started);
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
      detail: { mode: req.client.secondFactorOnly ? `${req.client.mode}/second-factor-only` : req.client.mode, ...(reply.reason ? { reason: reply.reason } : {}) },
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
      if (req.state) return await this.followUp(req);
      if (req.password === undefined) {
        return { code: 'Access-Reject', message: 'Only PAP (User-Password) is supported', reason: 'no_password' };
      }
      const { client } = req;
      if (client.secondFactorOnly) return await this.secondFactorOnly(req, req.password);
      if (client.mode === 'append') return await this.append(req, req.password);
      const refused = await this.firstFactor(req, req.password);
      if (refused) return refused;
      return client.mode === 'challenge' ? await this.challenge(req) : await this.pushWait(req);
    } catch (err) {
      return this.failure(err);
    }
  }

  /**
   * Checks a password with the directories; null when it passed (req.account names the user's
   * record), else the reject to send. A right password on an account that cannot sign in as it
   * is (expired password, disabled) hears why, never "wrong password".
   */
  private async firstFactor(req: Request, password: string): Promise<Reply | null> {
    const verified = await this.ctx.directory.verify(req.user, password);
    if (verified.ok) {
      req.account = verified.name;
      return null;
    }
    return { code: 'Access-Reject', message: verified.reason === 'invalid' ? 'Wrong user name or password' : verified.message, reason: verified.reason === 'invalid' ? 'first_factor_failed' : verified.reason };
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
    const c = await this.ctx.login.otpOnce(req.account ?? req.user, code, req.origin, req.client.policy);
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
    const whole = { password: typed };
    /** The readings of the typed text, in order; none when a form does not fit (code absent: push). */
    const readings: (() => Promise<{ password: string; code?: string } | undefined>)[] = [
      async () => {
        const i = d ? typed.lastIndexOf(d) : -1;
        const second = i >= 0 ? typed.slice(i + d.length) : '';
        if (/^push$/i.test(second)) return { password: typed.slice(0, i) };
        if (/^\d{6,8}$/.test(second)) return { password: typed.slice(0, i), code: second };
      },
      async () => {
        const digits = (await this.ctx.store.users.get(req.user))?.otpDigits ?? 6;
        const m = new RegExp(`^(.*)(\\d{${digits}})$`, 's').exec(typed);
        if (m) return { password: m[1]!, code: m[2]! };
      },
      async () => whole,
    ];
    const checked = new Set<string>();
    let refused: Reply | undefined;
    for (const read of readings) {
      const r = await read();
      // Each password once; a split never leaves an empty one (no directory takes it).
      if (!r || checked.has(r.password) || (r !== whole && r.password === '')) continue;
      checked.add(r.password);
      refused = (await this.firstFactor(req, r.password)) ?? undefined;
      if (!refused) return r.code === undefined ? this.pushWait(req) : this.otp(req, r.code);
      if (refused.reason !== 'first_factor_failed') return refused;
    }
    // The whole text is always checked, so a refusal is at hand.
    return refused!;
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
