import { EventEmitter } from 'node:events';
import { randomInt, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Audit } from './audit.js';
import type { Challenge } from './challenge.js';
import type { Clock } from './clock.js';
import type { DeviceService } from './devices.js';
import type { ChallengeEngine } from './engine.js';
import { CountersignError, badRequest, notFound } from './errors.js';
import type { Platform, PushMessage, PushResult, PushTransport } from './push.js';
import type { DeviceRecord, Store, UserRecord } from './store.js';

export interface PushPolicy {
  numberMatching: boolean;
  rateLimit: { count: number; windowMs: number };
  rejectLockout: { count: number; windowMs: number; lockMs: number };
  notMeMuteMs: number;
  sendTimeoutMs: number;
}

export type Decision = 'approve' | 'reject';
export type RejectReason = 'not-me' | 'cancelled';

/** A user's push allowance in the current rate-limit window. */
export interface PushThrottleState {
  /** Pushes sent in the current window. */
  sent: number;
  limit: number;
  /** While the limit is reached: when the window ends and push is offered again. */
  rateLimitedUntil?: number;
}

const rateKey = (user: string) => `push-rate:${user}`;
const rejectsKey = (user: string) => `push-rejects:${user}`;

/** What a phone is shown of a pending login (polled or pushed): enough to decide, nothing secret. */
export type PendingView = PushMessage;

interface PushEvents {
  sent: [Platform, PushResult];
  fraud: [string];
  /** A login became the user's pending push login (on this instance): event streams look at once. */
  offered: [Challenge];
}

const sameString = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** Why push is held back (UserRecord.pushLockReason); the sign-in pages tell them apart. */
export const LOCK_REASONS = { rejections: 'repeated rejections', notMe: 'reported as not me' } as const;

/**
 * Why no push was sent for a login, in words for the person signing in. Only ever shown
 * after the first factor passed. `short` fits beside a RADIUS prompt (Reply-Message).
 */
export function whyNoPush(err: CountersignError, now: number, short = false): string {
  const until = typeof err.details?.until === 'number' ? err.details.until : undefined;
  const minutes = until === undefined ? undefined : Math.max(1, Math.ceil((until - now) / 60_000));
  const later = minutes === undefined ? 'later' : `in ${minutes} minute${minutes === 1 ? '' : 's'}`;
  switch (err.code) {
    case 'push_rate_limited':
      return short
        ? `No push sent: too many sign-in requests; try push again ${later}`
        : `No push was sent: there were too many sign-in requests in the last minutes. Use a code from your app, or try again ${later}.`;
    case 'push_locked':
      if (err.details?.reason === LOCK_REASONS.notMe) {
        return short
          ? 'No push sent: push is paused because a request was reported as not you; contact your help desk'
          : 'No push was sent: push is paused because a sign-in request was reported as not you. Use a code from your app, or contact your help desk.';
      }
      return short
        ? `No push sent: push is paused after rejected requests; try again ${later}`
        : `No push was sent: push is paused after several rejected sign-in requests. Use a code from your app, or try again ${later}.`;
    case 'no_device':
      return short ? 'No push sent: no phone is enrolled' : 'No push was sent: no phone is enrolled for push. Use a code from your app.';
    default:
      return short ? 'No push sent' : 'No push was sent for this sign-in. Use a code from your app.';
  }
}

const rateLimitedError = (until: number, now: number) =>
  new CountersignError(
    429,
    'push_rate_limited',
    `too many push requests for this user; use a one-time password or wait ${Math.max(1, Math.ceil((until - now) / 60_000))} min`,
    { until },
  );

/**
 * The push factor: who may be pushed (fatigue defences), dispatch to every
 * enrolled device through its platform's transport, and the signed answers
 * that come back. Dispatch never blocks a login: it runs beside the wait.
 */
export class PushService extends EventEmitter<PushEvents> {
  constructor(
    private store: Store,
    private engine: ChallengeEngine,
    private devices: DeviceService,
    private audit: Audit,
    private clock: Clock,
    private log: Logger,
    private transports: Map<Platform, PushTransport>,
    private policy: PushPolicy,
  ) {
    super();
  }

  /** Why push cannot be offered to this user now, or null when it can. */
  async blocked(u: UserRecord): Promise<CountersignError | null> {
    const now = this.clock.now();
    if (!u.pushEnabled) return new CountersignError(403, 'push_not_enabled', `push is not enabled for '${u.name}'`);
    if ((u.pushLockedUntil ?? 0) > now) {
      return new CountersignError(
        423,
        'push_locked',
        `push is held back until ${new Date(u.pushLockedUntil!).toISOString()} (${u.pushLockReason ?? 'locked'}); use a one-time password or ask an administrator`,
        { until: u.pushLockedUntil, reason: u.pushLockReason },
      );
    }
    const devices = await this.store.devices.list(u.name);
    if (devices.length === 0) return new CountersignError(403, 'no_device', `'${u.name}' has no enrolled device for push`);
    return null;
  }

  /** The user's allowance now, for the user view and the check before a push; counts nothing. */
  async throttle(user: string): Promise<PushThrottleState> {
    const { count, remainingMs } = await this.store.guards.peek(rateKey(user));
    const limit = this.policy.rateLimit.count;
    // Past the limit only by logins that raced for the last push and lost (see reserveSend): not sent.
    return count >= limit ? { sent: limit, limit, rateLimitedUntil: this.clock.now() + remainingMs } : { sent: count, limit };
  }

  /** The rate-limit refusal when the user's allowance is used up; reads, counts nothing. */
  async rateLimited(user: string): Promise<CountersignError | null> {
    const t = await this.throttle(user);
    return t.rateLimitedUntil === undefined ? null : rateLimitedError(t.rateLimitedUntil, this.clock.now());
  }

  /**
   * Counts one push that is about to go out. The count is the store's atomic hit, so of
   * logins racing (on any instance) for the last push in the window only one gets it; the
   * others are refused here, push-free, and their hits only push the counter past the limit.
   */
  async reserveSend(user: string): Promise<CountersignError | null> {
    const n = await this.store.guards.hit(rateKey(user), this.policy.rateLimit.windowMs);
    if (n <= this.policy.rateLimit.count) return null;
    return rateLimitedError(this.clock.now() + (await this.store.guards.peek(rateKey(user))).remainingMs, this.clock.now());
  }

  /** Starts the user's rate-limit window and rejection count over (an administrator's unlock). */
  async clearThrottle(user: string): Promise<void> {
    await Promise.all([this.store.guards.reset(rateKey(user)), this.store.guards.reset(rejectsKey(user))]);
  }

  numberFor(u: UserRecord): string | undefined {
    return (u.numberMatching ?? this.policy.numberMatching) ? String(randomInt(10, 100)) : undefined;
  }

  /**
   * Makes `c` the user's one pending push login; an older one still pending
   * is cancelled, so a stale push cannot be approved by mistake.
   */
  async supersede(c: Challenge): Promise<void> {
    const old = await this.store.users.swapPending(c.user, c.id);
    if (old && old !== c.id) await this.engine.cancel(old, 'superseded by a newer login');
    this.emit('offered', c);
  }

  watchRule(c: Challenge, d: DeviceRecord): PushMessage['watch'] {
    return d.protected || c.number ? 'reject-only' : 'approve-reject';
  }

  private messageFor(c: Challenge, d: DeviceRecord): PushMessage {
    return {
      challengeId: c.id,
      displayCode: c.displayCode,
      user: c.user,
      client: c.origin.client,
      ip: c.origin.ip,
      createdAt: c.createdAt,
      deadline: c.deadline,
      watch: this.watchRule(c, d),
      numberMatching: Boolean(c.number),
      bindingMessage: c.bindingMessage,
    };
  }

  /** Sends to every device of the user that has a live push token. */
  async dispatch(c: Challenge): Promise<PushResult[]> {
    const devices = (await this.store.devices.list(c.user)).filter((d) => d.pushToken && !d.stale);
    return Promise.all(
      devices.map(async (d) => {
        const transport = this.transports.get(d.platform);
        if (!transport) {
          const r: PushResult = { ok: false, stale: false, error: `no ${d.platform} push transport configured` };
          this.log.warn({ device: d.id, user: c.user }, r.error);
          return r;
        }
        const message = this.messageFor(c, d);
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<PushResult>((resolve) => {
          timer = setTimeout(() => resolve({ ok: false, stale: false, error: 'push service timed out' }), this.policy.sendTimeoutMs);
        });
        const r = await Promise.race([
          transport.send({ deviceId: d.id, platform: d.platform, token: d.pushToken! }, message, this.clock.now()),
          timeout,
        ]).catch((err: unknown): PushResult => ({ ok: false, stale: false, error: String(err) }));
        clearTimeout(timer);
        this.emit('sent', d.platform, r);
        if (!r.ok) {
          this.log.warn(
            { device: d.id, user: c.user, error: r.error, stale: r.stale, ...(r.refused ? { refused: r.refused } : {}) },
            r.refused ? 'push not sent: the endpoint is refused' : 'push not delivered',
          );
          if (r.stale) await this.devices.markStale(c.user, d.id).catch(() => {});
        }
        return r;
      }),
    );
  }

  /** The pending login a device's user may answer (poll-only devices use this). */
  async pendingFor(device: DeviceRecord): Promise<PendingView[]> {
    const u = await this.store.users.get(device.user);
    if (!u?.pendingChallenge) return [];
    const c = await this.engine.get(u.pendingChallenge);
    if (!c || c.state !== 'pending' || c.user !== device.user || !c.factors.includes('push')) return [];
    return [this.messageFor(c, device)];
  }

  /**
   * A signed answer from a device, already verified by DeviceService: it must
   * be for that device's user's push challenge, while pending; the first
   * valid answer wins. A wrong number rejects the login.
   */
  async answer(device: DeviceRecord, claims: Record<string, unknown>): Promise<Challenge> {
    const cid = claims.cid;
    const decision = claims.decision;
    if (typeof cid !== 'string' || (decision !== 'approve' && decision !== 'reject')) {
      throw badRequest('malformed_answer', 'an answer carries cid (the challenge id) and decision (approve | reject)');
    }
    const reason = claims.reason;
    if (reason !== undefined && reason !== 'not-me' && reason !== 'cancelled') {
      throw badRequest('malformed_answer', 'reason must be not-me or cancelled');
    }
    const c = await this.engine.get(cid);
    if (!c) throw notFound('challenge', cid);
    if (c.user !== device.user) throw new CountersignError(403, 'not_your_challenge', 'this login belongs to another user');
    if (!c.factors.includes('push')) throw new CountersignError(403, 'push_not_offered', 'this login does not accept a push answer');
    if (c.state !== 'pending') {
      throw new CountersignError(409, `challenge_${c.state}`, `this login is already ${c.state}`, { state: c.state });
    }

    let result;
    if (decision === 'approve') {
      if (claims.via === 'watch' && this.watchRule(c, device) === 'reject-only') {
        throw new CountersignError(403, 'approve_on_phone', 'this login must be approved on the phone, not the watch');
      }
      if (c.number && !(typeof claims.number === 'string' && sameString(claims.number, c.number))) {
        result = await this.engine.reject(c.id, 'push', 'wrong-number');
        await this.countRejection(c.user);
        throw new CountersignError(403, 'wrong_number', 'the number did not match the login screen; the login was rejected');
      }
      result = await this.engine.approve(c.id, 'push');
    } else {
      result = await this.engine.reject(c.id, 'push', (reason as RejectReason | undefined) ?? 'rejected');
      if (result.changed) {
        if (reason === 'not-me') await this.reportFraud(c, device);
        else await this.countRejection(c.user);
      }
    }
    if (!result.changed) {
      const state = result.challenge?.state ?? 'expired';
      throw new CountersignError(409, `challenge_${state}`, `this login is already ${state}`, { state });
    }
    return result.challenge!;
  }

  private async countRejection(user: string): Promise<void> {
    const { count, windowMs, lockMs } = this.policy.rejectLockout;
    const n = await this.store.guards.hit(rejectsKey(user), windowMs);
    if (n >= count) {
      await this.store.users.update(user, { pushLockedUntil: this.clock.now() + lockMs, pushLockReason: LOCK_REASONS.rejections });
    }
  }

  private async reportFraud(c: Challenge, device: DeviceRecord): Promise<void> {
    this.emit('fraud', c.user);
    await this.audit.record({
      at: this.clock.now(),
      type: 'fraud',
      user: c.user,
      front: c.origin.front,
      client: c.origin.client,
      ip: c.origin.ip,
      challengeId: c.id,
      outcome: 'rejected',
      detail: { reason: 'not-me', device: device.id },
    });
    if (this.policy.notMeMuteMs > 0) {
      await this.store.users.update(c.user, { pushLockedUntil: this.clock.now() + this.policy.notMeMuteMs, pushLockReason: LOCK_REASONS.notMe });
    }
  }
}
