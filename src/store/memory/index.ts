import type { Challenge, Outcome, Resolution } from '../../core/challenge.js';
import { systemClock, type Clock } from '../../core/clock.js';
import {
  AUDIT_STREAMS,
  auditStreamOf,
  type AuditEvent,
  type AuditQuery,
  type AuditStore,
  type AuditStream,
  type ChallengeStore,
  type DeviceRecord,
  type DeviceStore,
  type GuardStore,
  type KvStore,
  type OtpLimits,
  type OtpSpent,
  type PasskeyRecord,
  type PasskeyStore,
  type SettingsStore,
  type Store,
  type TokenStore,
  type TransitionResult,
  type UserPage,
  type UserPatch,
  type UserRecord,
  type UserStore,
} from '../../core/store.js';
import { matching, mergeNewestFirst } from '../audit.js';

/**
 * The embedded default: everything in this process, lost on restart. It keeps
 * the same semantics as the Redis store (the contract suite checks both), so
 * several engines sharing one MemoryStore behave like instances sharing Redis.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  readonly challenges: MemoryChallenges;
  readonly users = new MemoryUsers();
  readonly audit: MemoryAudit;
  readonly guards: MemoryGuards;
  readonly devices = new MemoryDevices();
  readonly tokens: MemoryTokens;
  readonly kv: MemoryKv;
  readonly settings = new MemorySettings();
  readonly passkeys = new MemoryPasskeys();
  private sweeper: NodeJS.Timeout;

  /** `auditLimit`: the security stream's length; `auditActivityLimit` the activity stream's (by default the same). */
  constructor(opts: { clock?: Clock; auditLimit?: number; auditActivityLimit?: number } = {}) {
    const clock = opts.clock ?? systemClock;
    this.challenges = new MemoryChallenges(clock);
    const auditLimit = opts.auditLimit ?? 100_000;
    this.audit = new MemoryAudit({ security: auditLimit, activity: opts.auditActivityLimit ?? auditLimit });
    this.guards = new MemoryGuards(clock);
    this.tokens = new MemoryTokens(clock);
    this.kv = new MemoryKv(clock);
    this.sweeper = setInterval(() => {
      this.challenges.dropExpired();
      this.guards.dropExpired();
      this.tokens.dropExpired();
      this.kv.dropExpired();
    }, 10_000);
    this.sweeper.unref();
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}

const copy = <T>(v: T): T => structuredClone(v);

class MemoryChallenges implements ChallengeStore {
  private records = new Map<string, { challenge: Challenge; keepUntil: number }>();
  private deadlines = new Map<string, number>();
  private listeners: ((r: Resolution) => void)[] = [];

  constructor(private clock: Clock) {}

  async create(challenge: Challenge, keepAfterMs: number): Promise<void> {
    // Relative to this store's clock, like a Redis TTL, whatever times the record carries.
    const keepUntil = this.clock.now() + (challenge.deadline - challenge.createdAt) + keepAfterMs;
    this.records.set(challenge.id, { challenge: copy(challenge), keepUntil });
    this.deadlines.set(challenge.id, challenge.deadline);
  }

  async get(id: string): Promise<Challenge | null> {
    const entry = this.records.get(id);
    if (!entry || entry.keepUntil <= this.clock.now()) return null;
    return copy(entry.challenge);
  }

  async transition(
    id: string,
    to: Outcome,
    now: number,
    detail: { method?: string; reason?: string },
    keepAfterMs: number,
  ): Promise<TransitionResult> {
    const entry = this.records.get(id);
    if (!entry || entry.keepUntil <= this.clock.now()) return { changed: false, challenge: null };
    const c = entry.challenge;
    if (c.state !== 'pending') return { changed: false, challenge: copy(c) };
    let state: Outcome = to;
    if (now >= c.deadline) state = 'expired';
    else if (to === 'expired') return { changed: false, challenge: copy(c) };
    c.state = state;
    c.resolvedAt = now;
    const method = state === 'expired' ? 'deadline' : detail.method;
    if (method) c.method = method;
    if (detail.reason) c.reason = detail.reason;
    entry.keepUntil = this.clock.now() + keepAfterMs;
    this.deadlines.delete(id);
    const resolution: Resolution = { id, state, resolvedAt: now };
    if (c.method) resolution.method = c.method;
    if (c.reason) resolution.reason = c.reason;
    // Delivered asynchronously, as a pub/sub message would be.
    for (const l of this.listeners) queueMicrotask(() => l(resolution));
    return { changed: true, challenge: copy(c) };
  }

  async record(challenge: Challenge, keepAfterMs: number): Promise<void> {
    // Already final: not in the deadline index, nothing delivered to listeners.
    this.records.set(challenge.id, { challenge: copy(challenge), keepUntil: this.clock.now() + keepAfterMs });
  }

  async subscribe(onResolution: (r: Resolution) => void): Promise<void> {
    this.listeners.push(onResolution);
  }

  async due(now: number, limit: number): Promise<string[]> {
    return [...this.deadlines.entries()]
      .filter(([, d]) => d <= now)
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit)
      .map(([id]) => id);
  }

  async forgetDue(ids: string[]): Promise<void> {
    for (const id of ids) this.deadlines.delete(id);
  }

  async countPending(): Promise<number> {
    return this.deadlines.size;
  }

  dropExpired(): void {
    const now = this.clock.now();
    for (const [id, e] of this.records) if (e.keepUntil <= now) this.records.delete(id);
  }
}

class MemoryUsers implements UserStore {
  private records = new Map<string, UserRecord>();
  private sorted: string[] | null = null;

  async create(user: UserRecord): Promise<boolean> {
    if (this.records.has(user.name)) return false;
    this.records.set(user.name, copy(user));
    this.sorted = null;
    return true;
  }

  async get(name: string): Promise<UserRecord | null> {
    const u = this.records.get(name);
    return u ? copy(u) : null;
  }

  async update(name: string, patch: UserPatch): Promise<boolean> {
    const u = this.records.get(name);
    if (!u) return false;
    const { unset, ...set } = patch;
    for (const [k, v] of Object.entries(set)) if (v !== undefined) (u as unknown as Record<string, unknown>)[k] = v;
    for (const k of unset ?? []) delete (u as unknown as Record<string, unknown>)[k];
    return true;
  }

  async delete(name: string): Promise<boolean> {
    const had = this.records.delete(name);
    if (had) this.sorted = null;
    return had;
  }

  async list(opts: { prefix?: string; after?: string; limit: number }): Promise<UserPage> {
    // Byte order, like Redis ZRANGE BYLEX.
    this.sorted ??= [...this.records.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const prefix = opts.prefix ?? '';
    const matching = prefix ? this.sorted.filter((n) => n.startsWith(prefix)) : this.sorted;
    const start = opts.after === undefined ? 0 : matching.findIndex((n) => Buffer.compare(Buffer.from(n), Buffer.from(opts.after!)) > 0);
    const from = start < 0 ? matching.length : start;
    const names = matching.slice(from, from + opts.limit);
    const hasMore = from + opts.limit < matching.length;
    return {
      users: names.map((n) => copy(this.records.get(n)!)),
      next: hasMore ? names[names.length - 1] : undefined,
      total: matching.length,
    };
  }

  async advanceOtp(name: string, value: number): Promise<boolean> {
    return this.advance(name, value);
  }

  private advance(name: string, value: number): boolean {
    const u = this.records.get(name);
    if (!u || value <= (u.otpLast ?? -1)) return false;
    u.otpLast = value;
    u.otpFailures = 0;
    delete u.otpLocks;
    return true;
  }

  async swapPending(name: string, challengeId: string): Promise<string | undefined> {
    const u = this.records.get(name);
    if (!u) return undefined;
    const old = u.pendingChallenge;
    u.pendingChallenge = challengeId;
    return old;
  }

  async replacePasswordHash(name: string, expected: string, hash: string): Promise<boolean> {
    const u = this.records.get(name);
    if (!u || u.passwordHash !== expected) return false;
    u.passwordHash = hash;
    return true;
  }

  async spendOtp(name: string, match: number | null, now: number, l: OtpLimits): Promise<OtpSpent> {
    const u = this.records.get(name);
    if (!u) return { ok: false, failures: 0, lockedUntil: 0, missing: true };
    if ((u.otpLockedUntil ?? 0) > now) return { ok: false, failures: u.otpFailures ?? 0, lockedUntil: u.otpLockedUntil!, locked: true };
    // One synchronous step, as the Redis script is one atomic step.
    if (match !== null && this.advance(name, match)) return { ok: true };
    const f = this.failure(name, now, l.maxFailures, l.lockMs, l.maxLockMs);
    return { ok: false, ...f, ...(match !== null ? { replay: true } : {}) };
  }

  async recordOtpFailure(name: string, now: number, maxFailures: number, lockMs: number, maxLockMs: number) {
    return this.failure(name, now, maxFailures, lockMs, maxLockMs);
  }

  private failure(name: string, now: number, maxFailures: number, lockMs: number, maxLockMs: number) {
    const u = this.records.get(name);
    if (!u) return { failures: 0, lockedUntil: 0 };
    if (u.otpLockedUntil !== undefined && u.otpLockedUntil <= now) {
      u.otpFailures = 0;
      delete u.otpLockedUntil;
    }
    const failures = (u.otpFailures ?? 0) + 1;
    u.otpFailures = failures;
    if (failures >= maxFailures) {
      u.otpLocks = (u.otpLocks ?? 0) + 1;
      u.otpLockedUntil = now + Math.min(lockMs * 2 ** Math.min(u.otpLocks - 1, 30), maxLockMs);
      u.otpFailures = 0;
    }
    return { failures, lockedUntil: u.otpLockedUntil ?? 0 };
  }
}

function* backwards<T>(items: T[]): Generator<T> {
  for (let i = items.length - 1; i >= 0; i--) yield items[i]!;
}

class MemoryAudit implements AuditStore {
  private streams: Record<AuditStream, AuditEvent[]> = { security: [], activity: [] };
  constructor(private limits: Record<AuditStream, number>) {}

  async append(event: AuditEvent): Promise<void> {
    const stream = auditStreamOf(event);
    const events = this.streams[stream];
    events.push(copy(event));
    const limit = this.limits[stream];
    if (events.length > limit * 1.1) events.splice(0, events.length - limit);
  }

  async query(q: AuditQuery): Promise<AuditEvent[]> {
    // A snapshot of each stream: appends and trims may land while the merge awaits.
    const newestFirst = (s: AuditStream) => matching(backwards(this.streams[s].slice()), q);
    const events = await mergeNewestFirst((q.stream ? [q.stream] : AUDIT_STREAMS).map(newestFirst), q.limit);
    return events.map(copy);
  }
}

class MemoryGuards implements GuardStore {
  private claims = new Map<string, number>();
  private counters = new Map<string, { count: number; until: number }>();
  constructor(private clock: Clock) {}

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const until = this.claims.get(key);
    if (until !== undefined && until > now) return false;
    this.claims.set(key, now + ttlMs);
    return true;
  }

  async hit(key: string, windowMs: number): Promise<number> {
    const now = this.clock.now();
    const c = this.counters.get(key);
    if (!c || c.until <= now) {
      this.counters.set(key, { count: 1, until: now + windowMs });
      return 1;
    }
    return ++c.count;
  }

  async peek(key: string): Promise<{ count: number; remainingMs: number }> {
    const now = this.clock.now();
    const c = this.counters.get(key);
    return c && c.until > now ? { count: c.count, remainingMs: c.until - now } : { count: 0, remainingMs: 0 };
  }

  async reset(key: string): Promise<void> {
    this.counters.delete(key);
  }

  dropExpired(): void {
    const now = this.clock.now();
    for (const [k, until] of this.claims) if (until <= now) this.claims.delete(k);
    for (const [k, c] of this.counters) if (c.until <= now) this.counters.delete(k);
  }
}

class MemoryDevices implements DeviceStore {
  private byUser = new Map<string, Map<string, DeviceRecord>>();

  async put(device: DeviceRecord): Promise<void> {
    let m = this.byUser.get(device.user);
    if (!m) this.byUser.set(device.user, (m = new Map()));
    m.set(device.id, copy(device));
  }

  async add(device: DeviceRecord, max: number): Promise<boolean> {
    // One synchronous step: nothing else runs between the count and the write.
    if ((this.byUser.get(device.user)?.size ?? 0) >= max) return false;
    await this.put(device);
    return true;
  }

  async get(user: string, id: string): Promise<DeviceRecord | null> {
    const d = this.byUser.get(user)?.get(id);
    return d ? copy(d) : null;
  }

  async list(user: string): Promise<DeviceRecord[]> {
    return [...(this.byUser.get(user)?.values() ?? [])].map(copy).sort((a, b) => a.createdAt - b.createdAt);
  }

  async update(user: string, id: string, patch: Partial<Omit<DeviceRecord, 'id' | 'user'>>): Promise<boolean> {
    const d = this.byUser.get(user)?.get(id);
    if (!d) return false;
    Object.assign(d, patch);
    return true;
  }

  async delete(user: string, id: string): Promise<boolean> {
    return this.byUser.get(user)?.delete(id) ?? false;
  }

  async deleteAll(user: string): Promise<void> {
    this.byUser.delete(user);
  }
}

class MemoryTokens implements TokenStore {
  private tokens = new Map<string, { value: string; until: number }>();
  constructor(private clock: Clock) {}

  async put(kind: string, token: string, value: string, ttlMs: number): Promise<void> {
    this.tokens.set(`${kind}:${token}`, { value, until: this.clock.now() + ttlMs });
  }

  async take(kind: string, token: string): Promise<string | null> {
    const key = `${kind}:${token}`;
    const t = this.tokens.get(key);
    this.tokens.delete(key);
    return t && t.until > this.clock.now() ? t.value : null;
  }

  dropExpired(): void {
    const now = this.clock.now();
    for (const [k, t] of this.tokens) if (t.until <= now) this.tokens.delete(k);
  }
}

class MemoryKv implements KvStore {
  private values = new Map<string, { value: string; until: number }>();
  private sets = new Map<string, { members: Set<string>; until: number }>();
  constructor(private clock: Clock) {}

  private live(key: string) {
    const v = this.values.get(key);
    return v && v.until > this.clock.now() ? v : undefined;
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<string | null> {
    const cur = this.live(key);
    if (cur) return cur.value;
    this.values.set(key, { value, until: this.clock.now() + ttlMs });
    return null;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.values.set(key, { value, until: this.clock.now() + ttlMs });
  }

  async get(key: string): Promise<string | null> {
    return this.live(key)?.value ?? null;
  }

  async delete(key: string): Promise<void> {
    this.values.delete(key);
    this.sets.delete(key);
  }

  async addMember(key: string, member: string, ttlMs: number): Promise<void> {
    const now = this.clock.now();
    const s = this.sets.get(key);
    const live = s && s.until > now ? s : { members: new Set<string>(), until: 0 };
    live.members.add(member);
    live.until = Math.max(live.until, now + ttlMs);
    this.sets.set(key, live);
  }

  async members(key: string): Promise<string[]> {
    const s = this.sets.get(key);
    return s && s.until > this.clock.now() ? [...s.members] : [];
  }

  dropExpired(): void {
    const now = this.clock.now();
    for (const [k, v] of this.values) if (v.until <= now) this.values.delete(k);
    for (const [k, v] of this.sets) if (v.until <= now) this.sets.delete(k);
  }
}

class MemorySettings implements SettingsStore {
  private kinds = new Map<string, Map<string, string>>();
  private of(kind: string) {
    let m = this.kinds.get(kind);
    if (!m) this.kinds.set(kind, (m = new Map()));
    return m;
  }
  async put(kind: string, id: string, value: string): Promise<void> {
    this.of(kind).set(id, value);
  }
  async get(kind: string, id: string): Promise<string | null> {
    return this.of(kind).get(id) ?? null;
  }
  async list(kind: string): Promise<Map<string, string>> {
    return new Map(this.of(kind));
  }
  async delete(kind: string, id: string): Promise<boolean> {
    return this.of(kind).delete(id);
  }
}

/** Passkeys by credential id; a user's are found by scanning (a handful per user, one process). */
class MemoryPasskeys implements PasskeyStore {
  private byId = new Map<string, PasskeyRecord>();

  async create(passkey: PasskeyRecord): Promise<boolean> {
    if (this.byId.has(passkey.id)) return false;
    this.byId.set(passkey.id, copy(passkey));
    return true;
  }

  async get(id: string): Promise<PasskeyRecord | null> {
    const p = this.byId.get(id);
    return p ? copy(p) : null;
  }

  async list(user: string): Promise<PasskeyRecord[]> {
    return [...this.byId.values()].filter((p) => p.user === user).map(copy).sort((a, b) => a.createdAt - b.createdAt);
  }

  async recordUse(id: string, from: number, to: number, usedAt: number, backedUp: boolean): Promise<boolean> {
    const p = this.byId.get(id);
    if (!p || p.counter !== from) return false;
    Object.assign(p, { counter: to, lastUsedAt: usedAt, backedUp });
    return true;
  }

  async delete(user: string, id: string): Promise<boolean> {
    if (this.byId.get(id)?.user !== user) return false;
    return this.byId.delete(id);
  }

  async deleteAll(user: string): Promise<void> {
    for (const [id, p] of this.byId) if (p.user === user) this.byId.delete(id);
  }
}
