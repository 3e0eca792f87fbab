import { EventEmitter } from 'node:events';
import type { Challenge, Factor, Origin, Outcome, Resolution } from './challenge.js';
import { isFinal } from './challenge.js';
import type { Clock, Timer } from './clock.js';
import { CountersignError, notFound } from './errors.js';
import { newChallengeId, newDisplayCode } from './ids.js';
import type { Store, TransitionResult } from './store.js';

/** Due challenges expired per sweep round. */
const SWEEP_BATCH = 200;

export interface EngineOptions {
  store: Store;
  clock: Clock;
  /** How long a challenge waits for an answer (default 150 s). */
  deadlineMs: number;
  /** How long a resolved challenge stays readable, so late answers hear why. */
  keepAfterMs: number;
  displayCodeDigits: number;
  /** How often this instance looks for challenges nobody waits on any more. */
  sweepIntervalMs: number;
}

export interface EngineEvents {
  opened: [Challenge];
  /** Emitted once per challenge, by the instance whose call resolved it. */
  resolved: [Challenge];
  error: [unknown];
}

/** Raised to local waiters when this process stops: the front denies. */
export class EngineStoppedError extends CountersignError {
  constructor() {
    super(503, 'shutting_down', 'this instance is shutting down; the login was not approved');
  }
}

interface Waiter {
  challenge?: Challenge;
  early?: Resolution;
  timer?: Timer;
  listeners: Set<{ resolve: (c: Challenge) => void; reject: (e: unknown) => void }>;
}

/**
 * The challenge lifecycle every front shares: open, wait for the single
 * outcome, resolve. State lives in the store, so any instance can resolve a
 * challenge another instance opened and the waiter learns it at once through
 * the store's resolution feed. The deadline is enforced by the store (the
 * transition script refuses to approve past it) and by a timer on whichever
 * instance waits, with a sweeper for challenges nobody waits on.
 */
export class ChallengeEngine extends EventEmitter<EngineEvents> {
  private readonly waiters = new Map<string, Waiter>();
  private sweepTimer?: Timer;
  private stopped = false;

  constructor(readonly opts: EngineOptions) {
    super();
  }

  get store(): Store {
    return this.opts.store;
  }

  get clock(): Clock {
    return this.opts.clock;
  }

  async start(): Promise<void> {
    await this.store.challenges.subscribe(
      (r) => this.onResolution(r),
      () => this.recheckWaiters(),
    );
    this.scheduleSweep();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sweepTimer?.cancel();
    const err = new EngineStoppedError();
    for (const [id, w] of this.waiters) this.finish(id, w, (l) => l.reject(err));
  }

  /** A new challenge in `state`, made now with a fresh id and display code (not stored yet). */
  private fresh(user: string, factors: Factor[], origin: Origin, state: Challenge['state'], deadlineMs = this.opts.deadlineMs): Challenge {
    if (this.stopped) throw new EngineStoppedError();
    const now = this.clock.now();
    return {
      id: newChallengeId(),
      displayCode: newDisplayCode(this.opts.displayCodeDigits),
      user,
      factors,
      origin,
      state,
      createdAt: now,
      deadline: now + deadlineMs,
    };
  }

  async open(
    user: string,
    factors: Factor[],
    origin: Origin,
    opts: { deadlineMs?: number; number?: string; bindingMessage?: string } = {},
  ): Promise<Challenge> {
    const challenge = this.fresh(user, factors, origin, 'pending', opts.deadlineMs);
    if (opts.number) challenge.number = opts.number;
    if (opts.bindingMessage) challenge.bindingMessage = opts.bindingMessage;
    await this.store.challenges.create(challenge, this.opts.keepAfterMs);
    this.emit('opened', challenge);
    return challenge;
  }

  /**
   * A login decided in the request that opened it (a code typed with the password, checked
   * once in the store before this is called): kept in its final state without ever being
   * pending — one write instead of open, transition and the deadline index, and no outcome to
   * publish, as nobody waits on it. `resolved` is emitted at once (the audit event), so the
   * record, the audit event and whatever the front writes next leave in one pipelined write.
   * The outcome does not rest on the record: a write that fails is reported as an engine
   * error, the login's answer stands.
   */
  decided(user: string, factors: Factor[], origin: Origin, to: Outcome, detail: { method: string; reason?: string }): Challenge {
    const made = this.fresh(user, factors, origin, to);
    const challenge: Challenge = { ...made, resolvedAt: made.createdAt, method: detail.method };
    if (detail.reason) challenge.reason = detail.reason;
    this.store.challenges.record(challenge, this.opts.keepAfterMs).catch((err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    this.emit('opened', challenge);
    this.emit('resolved', challenge);
    return challenge;
  }

  /** The challenge, with `expired` shown once its deadline has passed. */
  async get(id: string): Promise<Challenge | null> {
    const c = await this.store.challenges.get(id);
    if (c && c.state === 'pending' && this.clock.now() >= c.deadline) {
      return (await this.resolve(id, 'expired', {})).challenge;
    }
    return c;
  }

  /**
   * Moves a pending challenge to an outcome, once. Whoever calls this second
   * (or after the deadline) gets the recorded outcome and `changed: false`.
   */
  async resolve(id: string, to: Outcome, detail: { method?: string; reason?: string }): Promise<TransitionResult> {
    const result = await this.store.challenges.transition(id, to, this.clock.now(), detail, this.opts.keepAfterMs);
    if (result.changed && result.challenge) {
      this.emit('resolved', result.challenge);
      const w = this.waiters.get(id);
      if (w) this.settle(id, w, result.challenge);
    }
    return result;
  }

  approve(id: string, method: string) {
    return this.resolve(id, 'approved', { method });
  }

  reject(id: string, method: string, reason?: string) {
    return this.resolve(id, 'rejected', { method, reason });
  }

  cancel(id: string, reason: string) {
    return this.resolve(id, 'cancelled', { method: 'cancel', reason });
  }

  /**
   * Resolves with the challenge in its final state: as soon as any instance
   * decides it, or `expired` at the deadline. Rejects when the challenge does
   * not exist, the store fails, or this instance stops: callers deny then.
   */
  wait(id: string, signal?: AbortSignal): Promise<Challenge> {
    if (this.stopped) return Promise.reject(new EngineStoppedError());
    let w = this.waiters.get(id);
    const fresh = !w;
    if (!w) {
      w = { listeners: new Set() };
      this.waiters.set(id, w);
    }
    const waiter = w;
    const promise = new Promise<Challenge>((resolve, reject) => {
      const listener = { resolve, reject };
      waiter.listeners.add(listener);
      signal?.addEventListener(
        'abort',
        () => {
          waiter.listeners.delete(listener);
          reject(signal.reason ?? new Error('aborted'));
          if (waiter.listeners.size === 0) this.drop(id, waiter);
        },
        { once: true },
      );
    });
    // Registered before reading, so a resolution published meanwhile is kept in `early`.
    if (fresh) void this.watch(id, waiter);
    return promise;
  }

  /** How many waits this instance holds (for metrics and benchmarks). */
  get waiting(): number {
    return this.waiters.size;
  }

  private async watch(id: string, w: Waiter): Promise<void> {
    try {
      const c = await this.store.challenges.get(id);
      if (this.waiters.get(id) !== w) return;
      if (!c) return this.finish(id, w, (l) => l.reject(notFound('challenge', id)));
      w.challenge = c;
      if (w.early) return this.settle(id, w, { ...c, ...w.early });
      if (isFinal(c.state)) return this.settle(id, w, c);
      w.timer = this.clock.at(c.deadline, () => void this.expire(id, w));
    } catch (err) {
      this.finish(id, w, (l) => l.reject(err));
    }
  }

  private async expire(id: string, w: Waiter): Promise<void> {
    try {
      const r = await this.resolve(id, 'expired', {});
      if (this.waiters.get(id) !== w) return;
      if (!r.challenge) return this.finish(id, w, (l) => l.reject(notFound('challenge', id)));
      if (isFinal(r.challenge.state)) return this.settle(id, w, r.challenge);
      // Another instance's clock is behind ours: look again shortly.
      w.timer = this.clock.at(this.clock.now() + 250, () => void this.expire(id, w));
    } catch (err) {
      // The store is unreachable at the deadline: the login is over, and denied.
      this.finish(id, w, (l) => l.reject(err));
    }
  }

  private onResolution(r: Resolution): void {
    const w = this.waiters.get(r.id);
    if (!w) return;
    if (!w.challenge) w.early = r;
    else this.settle(r.id, w, { ...w.challenge, ...r });
  }

  /**
   * After the outcome channel was lost and is back: outcomes published meanwhile
   * were missed, so every waiter reads its challenge again. One that is gone
   * (Redis came back without its data) ends now, denied as not found, rather than
   * hanging to its deadline. A read that fails leaves the waiter to its deadline.
   */
  private recheckWaiters(): void {
    for (const [id, w] of this.waiters) {
      if (!w.challenge) continue;
      this.store.challenges.get(id).then(
        (c) => {
          if (this.waiters.get(id) !== w) return;
          if (!c) this.finish(id, w, (l) => l.reject(notFound('challenge', id)));
          else if (isFinal(c.state)) this.settle(id, w, c);
        },
        () => {},
      );
    }
  }

  private settle(id: string, w: Waiter, c: Challenge): void {
    this.finish(id, w, (l) => l.resolve(c));
  }

  private finish(id: string, w: Waiter, call: (l: { resolve: (c: Challenge) => void; reject: (e: unknown) => void }) => void) {
    this.drop(id, w);
    for (const l of w.listeners) call(l);
    w.listeners.clear();
  }

  private drop(id: string, w: Waiter): void {
    w.timer?.cancel();
    if (this.waiters.get(id) === w) this.waiters.delete(id);
  }

  private scheduleSweep(): void {
    if (this.stopped) return;
    this.sweepTimer = this.clock.at(this.clock.now() + this.opts.sweepIntervalMs, () => {
      this.sweep()
        .catch((err) => {
          if (this.listenerCount('error') > 0) this.emit('error', err);
        })
        .finally(() => this.scheduleSweep());
    });
  }

  /** Expires challenges whose deadline passed with nobody waiting on them. */
  async sweep(): Promise<number> {
    let expired = 0;
    // Batches in parallel, and on while they come back full (bounded per tick): a backlog
    // after an outage drains in seconds. Other instances sweep the same index; the
    // transition is once-only, so the overlap costs round trips, never a second outcome.
    for (let round = 0; round < 10; round++) {
      const ids = await this.store.challenges.due(this.clock.now(), SWEEP_BATCH);
      const results = await Promise.all(ids.map((id) => this.resolve(id, 'expired', {})));
      const gone: string[] = [];
      results.forEach((r, i) => {
        if (r.changed) expired++;
        else if (!r.challenge || isFinal(r.challenge.state)) gone.push(ids[i]!);
      });
      await this.store.challenges.forgetDue(gone);
      if (ids.length < SWEEP_BATCH || this.stopped) break;
    }
    return expired;
  }
}
