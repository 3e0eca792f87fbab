import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Challenge, Factor, Origin, Outcome, Resolution } from '../../core/challenge.js';
import { StoreUnavailableError } from '../../core/errors.js';
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
import { RedisPasskeys } from './passkeys.js';
import { ADD_DEVICE, ADVANCE_OTP, CREATE_HASH, HIT, OTP_FAILURE, PEEK, REPLACE_PASSWORD_HASH, SPEND_OTP, SWAP_PENDING, TRANSITION, UPDATE_DEVICE, UPDATE_HASH } from './scripts.js';

export interface RedisStoreOptions {
  /** redis://[:password@]host:port/db or rediss://… for a single server. */
  url?: string;
  /** Seed nodes ("host:port") of a Redis Cluster. */
  cluster?: string[];
  /** Sentinel addresses ("host:port") and the monitored master's name. */
  sentinels?: string[];
  sentinelName?: string;
  /** Password of the Sentinels themselves (requirepass on the sentinel), when set. */
  sentinelPassword?: string;
  password?: string;
  /** Prefix of every key, so several deployments can share one Redis. */
  prefix: string;
  /** Length of the security audit stream (`<prefix>:{audit}`). */
  auditLimit: number;
  /** Length of the activity audit stream (`<prefix>:{audit-activity}`); by default `auditLimit`. */
  auditActivityLimit?: number;
  commandTimeoutMs: number;
}

type Client = Redis | Cluster;

interface Scripts {
  csTransition(key: string, ...args: (string | number)[]): Promise<[number, string[]?]>;
  csCreateHash(key: string, ...args: (string | number)[]): Promise<number>;
  csUpdateHash(key: string, ...args: (string | number)[]): Promise<number>;
  csAdvanceOtp(key: string, value: number): Promise<number>;
  csOtpFailure(key: string, now: number, max: number, lockMs: number, maxLockMs: number): Promise<[number, number]>;
  csSpendOtp(key: string, match: number | '', now: number, max: number, lockMs: number, maxLockMs: number): Promise<[number, number?, number?, string?]>;
  csHit(key: string, windowMs: number): Promise<number>;
  csPeek(key: string): Promise<[number, number]>;
  csReplacePasswordHash(key: string, expected: string, hash: string): Promise<number>;
  csSwapPending(key: string, challengeId: string): Promise<string | null>;
  csUpdateDevice(key: string, id: string, patch: string): Promise<number>;
  csAddDevice(key: string, id: string, device: string, max: string): Promise<number>;
}

const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
};

/** Every call to Redis goes through here: a failure becomes "deny", never a crash. */
const guarded = async <T>(p: Promise<T>): Promise<T> => {
  try {
    return await p;
  } catch (err) {
    throw new StoreUnavailableError(err);
  }
};

export function connectRedis(opts: RedisStoreOptions, extra: RedisOptions = {}): Client {
  const common: RedisOptions = {
    // Fail fast while Redis is away: the caller denies, it does not hang.
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs,
    // Back within 2 s of Redis (or a promoted replica) returning. ioredis 6's own default
    // grows to 5 s between attempts, which kept every login denied seconds after Redis was back.
    retryStrategy: (times) => Math.min(times * 50, 2000),
    enableAutoPipelining: true,
    password: opts.password,
    ...extra,
  };
  if (opts.cluster?.length) {
    // No offline queue: ioredis' Cluster queue has no timeout, so with every node away (or
    // none reached yet at boot) commands and /readyz would wait for the cluster to return
    // instead of failing fast as with one Redis.
    const cluster = new Cluster(opts.cluster.map(hostPort), {
      redisOptions: common,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      // Re-read the slot map every 2 s (ioredis: 5 s), so a client finds masters that came
      // back or moved soon, not on the next error.
      slotsRefreshInterval: 2000,
    });
    return firstConnectionAwaited(cluster, opts.commandTimeoutMs);
  }
  if (opts.sentinels?.length) {
    return new Redis({
      ...common,
      sentinels: opts.sentinels.map(hostPort),
      name: opts.sentinelName ?? 'mymaster',
      sentinelPassword: opts.sentinelPassword,
      // Hear +switch-master from the Sentinels and move to the new master at once, rather than
      // when the old one drops us (a subscriber on a demoted master is never dropped).
      failoverDetector: true,
    });
  }
  return new Redis(opts.url ?? 'redis://127.0.0.1:6379', common);
}

/**
 * Before a Cluster client has its slot map it refuses every command at once. A
 * store used right after it was made (a starting server, a test) would then
 * fail its first commands; so until the first 'ready', commands wait for it,
 * for at most `ms`, and are then sent (and fail fast if it is still not there).
 * Never queued without a bound.
 */
function firstConnectionAwaited(cluster: Cluster, ms: number): Cluster {
  let first: Promise<void> | null = new Promise<void>((resolve) => cluster.once('ready', () => resolve()));
  void first.then(() => (first = null));
  const commands = new Set(cluster.getBuiltinCommands());
  const isCommand = (prop: string | symbol) => typeof prop === 'string' && (commands.has(prop) || prop === 'call' || prop.startsWith('cs'));
  return new Proxy(cluster, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (first === null || !isCommand(prop)) return value.bind(target);
      const gate = first;
      return async (...args: unknown[]) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([gate, new Promise((r) => (timer = setTimeout(r, ms)))]);
        clearTimeout(timer);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * The subscriber of a Redis Cluster deployment: a plain connection to one
 * node, not an ioredis Cluster. A classic PUBLISH (as TRANSITION does) reaches
 * every node of a cluster, so any node hears every outcome. ioredis' Cluster
 * replaces a lost subscriber connection and re-subscribes on its own but
 * emits no 'ready' for it, so the store never told waiters to re-read, and an
 * outcome published during the gap was heard only at the deadline. A plain
 * connection emits 'ready' after every reconnect; each retry moves on to the
 * next seed node, so losing the node it listened on is survived.
 */
function clusterSubscriber(opts: RedisStoreOptions): Redis {
  const seeds = opts.cluster!.map(hostPort);
  let next = 0;
  const sub: Redis = new Redis({
    ...seeds[0]!,
    password: opts.password,
    maxRetriesPerRequest: null,
    retryStrategy: (times) => {
      const node = seeds[++next % seeds.length]!;
      sub.options.host = node.host;
      sub.options.port = node.port;
      return Math.min(times * 50, 2000);
    },
  });
  return sub;
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  readonly challenges: RedisChallenges;
  readonly users: RedisUsers;
  readonly audit: RedisAudit;
  readonly guards: RedisGuards;
  readonly devices: RedisDevices;
  readonly tokens: RedisTokens;
  readonly kv: RedisKv;
  readonly settings: RedisSettings;
  readonly passkeys: RedisPasskeys;
  private readonly client: Client & Scripts;
  private subscriber?: Client;

  constructor(private readonly opts: RedisStoreOptions) {
    const client = connectRedis(opts);
    client.on('error', () => {
      // Reported through ping()/readyz and failed commands; ioredis reconnects by itself.
    });
    client.defineCommand('csTransition', { numberOfKeys: 1, lua: TRANSITION });
    client.defineCommand('csCreateHash', { numberOfKeys: 1, lua: CREATE_HASH });
    client.defineCommand('csUpdateHash', { numberOfKeys: 1, lua: UPDATE_HASH });
    client.defineCommand('csAdvanceOtp', { numberOfKeys: 1, lua: ADVANCE_OTP });
    client.defineCommand('csOtpFailure', { numberOfKeys: 1, lua: OTP_FAILURE });
    client.defineCommand('csSpendOtp', { numberOfKeys: 1, lua: SPEND_OTP });
    client.defineCommand('csHit', { numberOfKeys: 1, lua: HIT });
    client.defineCommand('csPeek', { numberOfKeys: 1, lua: PEEK });
    client.defineCommand('csReplacePasswordHash', { numberOfKeys: 1, lua: REPLACE_PASSWORD_HASH });
    client.defineCommand('csSwapPending', { numberOfKeys: 1, lua: SWAP_PENDING });
    client.defineCommand('csUpdateDevice', { numberOfKeys: 1, lua: UPDATE_DEVICE });
    client.defineCommand('csAddDevice', { numberOfKeys: 1, lua: ADD_DEVICE });
    this.client = client as Client & Scripts;
    const p = opts.prefix;
    this.challenges = new RedisChallenges(this.client, p, () => this.openSubscriber());
    this.users = new RedisUsers(this.client, p);
    // The security stream keeps the key of the one stream before it: an upgraded deployment
    // reads its old events (of every type) as security events until they are trimmed away.
    this.audit = new RedisAudit(this.client, {
      security: { key: `${p}:{audit}`, limit: opts.auditLimit },
      activity: { key: `${p}:{audit-activity}`, limit: opts.auditActivityLimit ?? opts.auditLimit },
    });
    this.guards = new RedisGuards(this.client, p);
    this.devices = new RedisDevices(this.client, p);
    this.tokens = new RedisTokens(this.client, p);
    this.kv = new RedisKv(this.client, p);
    this.settings = new RedisSettings(this.client, p);
    this.passkeys = new RedisPasskeys(this.client, p);
  }

  /** One extra connection per process carries every subscription. */
  private openSubscriber(): Client {
    this.subscriber ??= this.opts.cluster?.length
      ? clusterSubscriber(this.opts)
      : connectRedis(this.opts, { maxRetriesPerRequest: null, commandTimeout: undefined });
    this.subscriber.on('error', () => {});
    return this.subscriber;
  }

  /** Resolves once the main connection is ready, or after `ms` (the caller serves anyway, not ready). */
  async connected(ms: number): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      timer.unref();
      this.client.once('ready', onReady);
    });
  }

  async ping(): Promise<void> {
    if (this.client instanceof Cluster) {
      // Nodes of a cluster that lost a slot range still answer PING (and CLUSTERDOWN to
      // everything else): only cluster_state says whether every key can be served.
      const info = await guarded(this.client.cluster('INFO'));
      if (!/^cluster_state:ok\b/m.test(info)) throw new StoreUnavailableError(new Error('Redis Cluster state is not ok'));
      // And this client reaches the slots: the deadline index's shards sit on (nearly surely)
      // every master, so reading them goes where logins go. Right after a Cluster came back,
      // the cluster may say ok while this client's map of it is still being rebuilt.
      await this.challenges.countPending();
      return;
    }
    await guarded(this.client.ping());
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
    await this.client.quit().catch(() => this.client.disconnect());
  }

  /** For tests and benchmarks: the raw connection. */
  get raw(): Client {
    return this.client;
  }
}

const enc = (v: unknown): string =>
  typeof v === 'boolean' ? (v ? '1' : '0') : typeof v === 'object' ? JSON.stringify(v) : String(v);

const flatToMap = (flat: string[]): Record<string, string> => {
  const m: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) m[flat[i]!] = flat[i + 1]!;
  return m;
};

const toChallenge = (h: Record<string, string>): Challenge | null => {
  if (!h.id) return null;
  const c: Challenge = {
    id: h.id,
    displayCode: h.dc!,
    user: h.user!,
    factors: (h.factors ? h.factors.split(',') : []) as Factor[],
    origin: JSON.parse(h.origin ?? '{}') as Origin,
    state: h.state as Challenge['state'],
    createdAt: Number(h.createdAt),
    deadline: Number(h.deadline),
  };
  if (h.num) c.number = h.num;
  if (h.bind) c.bindingMessage = h.bind;
  if (h.resolvedAt) c.resolvedAt = Number(h.resolvedAt);
  if (h.method) c.method = h.method;
  if (h.reason) c.reason = h.reason;
  return c;
};

/**
 * The deadline index is split in this many sorted sets, each in its own slot, so that on
 * a Redis Cluster every login's ZADD and ZREM do not all land on one master.
 */
const DUE_SHARDS = 16;

/** A challenge as its hash's fields (toChallenge reads them back); optional ones only when set. */
function challengeFields(c: Challenge): (string | number)[] {
  return [
    'id', c.id,
    'dc', c.displayCode,
    'user', c.user,
    'factors', c.factors.join(','),
    'origin', JSON.stringify(c.origin),
    'state', c.state,
    'createdAt', c.createdAt,
    'deadline', c.deadline,
    ...(c.resolvedAt !== undefined ? ['resolvedAt', c.resolvedAt] : []),
    ...(c.method ? ['method', c.method] : []),
    ...(c.reason ? ['reason', c.reason] : []),
    ...(c.number ? ['num', c.number] : []),
    ...(c.bindingMessage ? ['bind', c.bindingMessage] : []),
  ];
}

class RedisChallenges implements ChallengeStore {
  private readonly dueKeys: string[];
  private readonly channel: string;

  constructor(
    private client: Client & Scripts,
    private prefix: string,
    private subscriber: () => Client,
  ) {
    this.dueKeys = Array.from({ length: DUE_SHARDS }, (_, i) => `${prefix}:{due-${i}}`);
    this.channel = `${prefix}:outcomes`;
  }

  private key(id: string) {
    return `${this.prefix}:ch:{${id}}`;
  }

  /** The shard of the deadline index that holds `id` (a stable hash of the id). */
  private dueKey(id: string): string {
    let h = 0;
    for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0;
    return this.dueKeys[(h >>> 0) % DUE_SHARDS]!;
  }

  async create(c: Challenge, keepAfterMs: number): Promise<void> {
    const ttl = c.deadline - c.createdAt + keepAfterMs;
    const key = this.key(c.id);
    // Plain commands, not a script: the id is 144 random bits, so there is nothing to check
    // first, and a script's overhead was a third of Redis's work per login. The three go out
    // in one write (auto-pipelining). Should the TTL ever be lost with a dropped connection,
    // the deadline index still expires the challenge, and that sets the TTL.
    await guarded(
      Promise.all([
        this.client.hset(key, ...challengeFields(c)),
        this.client.pexpire(key, ttl),
        this.client.zadd(this.dueKey(c.id), c.deadline, c.id),
      ]),
    );
  }

  async get(id: string): Promise<Challenge | null> {
    return toChallenge(await guarded(this.client.hgetall(this.key(id))));
  }

  async record(c: Challenge, keepAfterMs: number): Promise<void> {
    const key = this.key(c.id);
    // Already final: no deadline index entry, nothing to publish. One write with whatever
    // else the login sends (auto-pipelining).
    await guarded(
      Promise.all([
        this.client.hset(key, ...challengeFields(c)),
        this.client.pexpire(key, keepAfterMs),
      ]),
    );
  }

  async transition(
    id: string,
    to: Outcome,
    now: number,
    detail: { method?: string; reason?: string },
    keepAfterMs: number,
  ): Promise<TransitionResult> {
    const [changed, flat] = await guarded(
      this.client.csTransition(this.key(id), to, now, detail.method ?? '', detail.reason ?? '', keepAfterMs, this.channel),
    );
    if (changed === 1) {
      // The deadline index lives in another slot; a stale entry is harmless.
      this.client.zrem(this.dueKey(id), id).catch(() => {});
    }
    return { changed: changed === 1, challenge: flat ? toChallenge(flatToMap(flat)) : null };
  }

  async subscribe(onResolution: (r: Resolution) => void, onReconnect: () => void): Promise<void> {
    const sub = this.subscriber();
    let connectedBefore = false;
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      try {
        onResolution(JSON.parse(message) as Resolution);
      } catch {
        // A malformed message resolves nothing; the deadline still holds.
      }
    });
    sub.on('ready', () => {
      if (!connectedBefore) return;
      // Messages published while we were away are lost: waiters re-read state.
      (sub.subscribe(this.channel) as Promise<unknown>).then(onReconnect, () => {});
    });
    await guarded(sub.subscribe(this.channel) as Promise<unknown>);
    connectedBefore = true;
  }

  async due(now: number, limit: number): Promise<string[]> {
    // The `limit` earliest of each shard, merged: the `limit` earliest overall.
    const shards = await guarded(
      Promise.all(this.dueKeys.map((k) => this.client.zrangebyscore(k, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit))),
    );
    const all: [string, number][] = [];
    for (const flat of shards) for (let i = 0; i + 1 < flat.length; i += 2) all.push([flat[i]!, Number(flat[i + 1])]);
    return all
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit)
      .map(([id]) => id);
  }

  async forgetDue(ids: string[]): Promise<void> {
    const byShard = new Map<string, string[]>();
    for (const id of ids) {
      const k = this.dueKey(id);
      byShard.set(k, [...(byShard.get(k) ?? []), id]);
    }
    await guarded(Promise.all([...byShard].map(([k, members]) => this.client.zrem(k, ...members))));
  }

  async countPending(): Promise<number> {
    const counts = await guarded(Promise.all(this.dueKeys.map((k) => this.client.zcard(k))));
    return counts.reduce((a, b) => a + b, 0);
  }
}

const BOOL_FIELDS = new Set(['otpEnabled', 'pushEnabled', 'numberMatching']);
const NUM_FIELDS = new Set(['createdAt', 'otpDigits', 'otpPeriod', 'otpLast', 'otpFailures', 'otpLocks', 'otpLockedUntil', 'pushLockedUntil', 'directorySeenAt']);

const toUser = (h: Record<string, string>): UserRecord | null => {
  if (!h.name) return null;
  const u: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h)) {
    u[k] = BOOL_FIELDS.has(k) ? v === '1' : NUM_FIELDS.has(k) ? Number(v) : v;
  }
  return u as unknown as UserRecord;
};

const fieldsOf = (obj: Record<string, unknown>): (string | number)[] =>
  Object.entries(obj).flatMap(([k, v]) => (v === undefined ? [] : [k, enc(v)]));

class RedisUsers implements UserStore {
  private readonly indexKey: string;
  /**
   * Reads of a user still in flight or answered in this turn of the event loop, by name: a
   * login reads its user in several steps (the front, the directory, the login service) that
   * run one after another without waiting for anything else, and they share one HGETALL
   * instead of one round trip each. Every write through this store forgets the name first,
   * so a read after a write here always goes to Redis; decisions never rest on these reads
   * (OTP use, locks, challenge outcomes are decided by scripts in Redis).
   */
  private readonly recent = new Map<string, Promise<Record<string, string>>>();
  constructor(
    private client: Client & Scripts,
    private prefix: string,
  ) {
    this.indexKey = `${prefix}:{users}`;
  }

  private key(name: string) {
    return `${this.prefix}:user:{${name}}`;
  }

  private forget(name: string): void {
    this.recent.delete(name);
  }

  async create(user: UserRecord): Promise<boolean> {
    this.forget(user.name);
    const created = await guarded(this.client.csCreateHash(this.key(user.name), 0, ...fieldsOf({ ...user })));
    if (created !== 1) return false;
    await guarded(this.client.zadd(this.indexKey, 0, user.name));
    return true;
  }

  async get(name: string): Promise<UserRecord | null> {
    let read = this.recent.get(name);
    if (!read) {
      const p = guarded(this.client.hgetall(this.key(name)));
      read = p;
      this.recent.set(name, p);
      // Kept until the event loop moves on (setImmediate runs after this turn's callbacks).
      const drop = () => void setImmediate(() => this.recent.get(name) === p && this.recent.delete(name));
      p.then(drop, drop);
    }
    // toUser builds a fresh object: callers never share one.
    return toUser(await read);
  }

  async update(name: string, patch: UserPatch): Promise<boolean> {
    this.forget(name);
    const { unset, ...set } = patch;
    const fields = fieldsOf(set);
    const r = await guarded(this.client.csUpdateHash(this.key(name), fields.length / 2, ...fields, ...(unset ?? [])));
    return r === 1;
  }

  async delete(name: string): Promise<boolean> {
    this.forget(name);
    const [n] = await guarded(Promise.all([this.client.del(this.key(name)), this.client.zrem(this.indexKey, name)]));
    return n === 1;
  }

  async list(opts: { prefix?: string; after?: string; limit: number }): Promise<UserPage> {
    const prefix = opts.prefix ?? '';
    const end = prefix ? Buffer.concat([Buffer.from(`[${prefix}`), Buffer.from([0xff])]) : '+';
    const startAtPrefix = prefix ? `[${prefix}` : '-';
    const start =
      opts.after !== undefined && Buffer.compare(Buffer.from(opts.after), Buffer.from(prefix)) >= 0
        ? `(${opts.after}`
        : startAtPrefix;
    const [names, total] = await guarded(
      Promise.all([
        this.client.zrangebylex(this.indexKey, start, end, 'LIMIT', 0, opts.limit + 1),
        this.client.zlexcount(this.indexKey, startAtPrefix, end),
      ]),
    );
    const page = names.slice(0, opts.limit);
    const users = await guarded(Promise.all(page.map((n) => this.client.hgetall(this.key(n)))));
    return {
      users: users.map(toUser).filter((u): u is UserRecord => u !== null),
      next: names.length > opts.limit ? page[page.length - 1] : undefined,
      total,
    };
  }

  async advanceOtp(name: string, value: number): Promise<boolean> {
    this.forget(name);
    return (await guarded(this.client.csAdvanceOtp(this.key(name), value))) === 1;
  }

  async swapPending(name: string, challengeId: string): Promise<string | undefined> {
    this.forget(name);
    return (await guarded(this.client.csSwapPending(this.key(name), challengeId))) ?? undefined;
  }

  async replacePasswordHash(name: string, expected: string, hash: string): Promise<boolean> {
    this.forget(name);
    return (await guarded(this.client.csReplacePasswordHash(this.key(name), expected, hash))) === 1;
  }

  async recordOtpFailure(name: string, now: number, maxFailures: number, lockMs: number, maxLockMs: number) {
    this.forget(name);
    const [failures, lockedUntil] = await guarded(this.client.csOtpFailure(this.key(name), now, maxFailures, lockMs, maxLockMs));
    return { failures, lockedUntil };
  }

  async spendOtp(name: string, match: number | null, now: number, l: OtpLimits): Promise<OtpSpent> {
    this.forget(name);
    const [ok, failures = 0, lockedUntil = 0, why = ''] = await guarded(
      this.client.csSpendOtp(this.key(name), match ?? '', now, l.maxFailures, l.lockMs, l.maxLockMs),
    );
    if (ok === 1) return { ok: true };
    return { ok: false, failures, lockedUntil, ...(why ? { [why]: true } : {}) };
  }
}

class RedisAudit implements AuditStore {
  constructor(
    private client: Client,
    private streams: Record<AuditStream, { key: string; limit: number }>,
  ) {}

  async append(event: AuditEvent): Promise<void> {
    const { key, limit } = this.streams[auditStreamOf(event)];
    await guarded(this.client.xadd(key, 'MAXLEN', '~', limit, '*', 'e', JSON.stringify(event)));
  }

  async query(q: AuditQuery): Promise<AuditEvent[]> {
    // Unfiltered reads need no more than they show; filtered ones scan in batches.
    const filtered = Boolean(q.user || q.front || q.outcome || q.type);
    const count = filtered ? 500 : Math.min(500, q.limit);
    const read = (s: AuditStream) => matching(this.newestFirst(this.streams[s].key, this.streams[s].limit, count), q);
    return mergeNewestFirst((q.stream ? [q.stream] : AUDIT_STREAMS).map(read), q.limit);
  }

  /** One stream newest first, in batches of `count`, no further than its cap. */
  private async *newestFirst(key: string, limit: number, count: number): AsyncGenerator<AuditEvent> {
    let end = '+';
    for (let scanned = 0; scanned < limit; ) {
      const batch = await guarded(this.client.xrevrange(key, end, '-', 'COUNT', count));
      if (batch.length === 0) return;
      end = `(${batch[batch.length - 1]![0]}`;
      scanned += batch.length;
      for (const [, fields] of batch) yield JSON.parse(fields[1] ?? '{}') as AuditEvent;
    }
  }
}

class RedisGuards implements GuardStore {
  constructor(
    private client: Client & Scripts,
    private prefix: string,
  ) {}

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    return (await guarded(this.client.set(`${this.prefix}:once:{${key}}`, '1', 'PX', ttlMs, 'NX'))) === 'OK';
  }

  async hit(key: string, windowMs: number): Promise<number> {
    return guarded(this.client.csHit(this.hitsKey(key), windowMs));
  }

  async peek(key: string): Promise<{ count: number; remainingMs: number }> {
    const [count, pttl] = await guarded(this.client.csPeek(this.hitsKey(key)));
    // HIT sets the TTL in the step that creates the counter: a key without one is not a window.
    return pttl > 0 ? { count, remainingMs: pttl } : { count: 0, remainingMs: 0 };
  }

  async reset(key: string): Promise<void> {
    await guarded(this.client.del(this.hitsKey(key)));
  }

  private hitsKey(key: string) {
    return `${this.prefix}:hits:{${key}}`;
  }
}

/** A user's devices in one hash next to the user (same slot): id → JSON. */
class RedisDevices implements DeviceStore {
  constructor(
    private client: Client & Scripts,
    private prefix: string,
  ) {}

  private key(user: string) {
    return `${this.prefix}:dev:{${user}}`;
  }

  async put(device: DeviceRecord): Promise<void> {
    await guarded(this.client.hset(this.key(device.user), device.id, JSON.stringify(device)));
  }

  async add(device: DeviceRecord, max: number): Promise<boolean> {
    return (await guarded(this.client.csAddDevice(this.key(device.user), device.id, JSON.stringify(device), String(max)))) === 1;
  }

  async get(user: string, id: string): Promise<DeviceRecord | null> {
    const v = await guarded(this.client.hget(this.key(user), id));
    return v ? (JSON.parse(v) as DeviceRecord) : null;
  }

  async list(user: string): Promise<DeviceRecord[]> {
    const all = await guarded(this.client.hvals(this.key(user)));
    return all.map((v) => JSON.parse(v) as DeviceRecord).sort((a, b) => a.createdAt - b.createdAt);
  }

  async update(user: string, id: string, patch: Partial<Omit<DeviceRecord, 'id' | 'user'>>): Promise<boolean> {
    return (await guarded(this.client.csUpdateDevice(this.key(user), id, JSON.stringify(patch)))) === 1;
  }

  async delete(user: string, id: string): Promise<boolean> {
    return (await guarded(this.client.hdel(this.key(user), id))) === 1;
  }

  async deleteAll(user: string): Promise<void> {
    await guarded(this.client.del(this.key(user)));
  }
}

class RedisTokens implements TokenStore {
  constructor(
    private client: Client,
    private prefix: string,
  ) {}

  async put(kind: string, token: string, value: string, ttlMs: number): Promise<void> {
    await guarded(this.client.set(`${this.prefix}:tok:{${kind}:${token}}`, value, 'PX', ttlMs));
  }

  async take(kind: string, token: string): Promise<string | null> {
    return guarded(this.client.getdel(`${this.prefix}:tok:{${kind}:${token}}`));
  }
}

class RedisKv implements KvStore {
  constructor(
    private client: Client,
    private prefix: string,
  ) {}

  private key(k: string) {
    return `${this.prefix}:kv:{${k}}`;
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<string | null> {
    // SET … NX GET: one round trip, atomic, answers the value that was there.
    const r = await guarded(this.client.call('SET', this.key(key), value, 'PX', String(ttlMs), 'NX', 'GET') as Promise<string | null>);
    return r;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await guarded(this.client.set(this.key(key), value, 'PX', ttlMs));
  }

  async get(key: string): Promise<string | null> {
    return guarded(this.client.get(this.key(key)));
  }

  async delete(key: string): Promise<void> {
    await guarded(this.client.del(this.key(key)));
  }

  async addMember(key: string, member: string, ttlMs: number): Promise<void> {
    const k = this.key(key);
    // Both on one key, so one slot; GT keeps the longest lifetime asked for.
    await guarded(Promise.all([this.client.sadd(k, member), this.client.pexpire(k, ttlMs, 'GT'), this.client.pexpire(k, ttlMs, 'NX')]));
  }

  async members(key: string): Promise<string[]> {
    return guarded(this.client.smembers(this.key(key)));
  }
}

/** One hash per kind of record. */
class RedisSettings implements SettingsStore {
  constructor(
    private client: Client,
    private prefix: string,
  ) {}

  private key(kind: string) {
    return `${this.prefix}:settings:{${kind}}`;
  }

  async put(kind: string, id: string, value: string): Promise<void> {
    await guarded(this.client.hset(this.key(kind), id, value));
  }

  async get(kind: string, id: string): Promise<string | null> {
    return guarded(this.client.hget(this.key(kind), id));
  }

  async list(kind: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await guarded(this.client.hgetall(this.key(kind)))));
  }

  async delete(kind: string, id: string): Promise<boolean> {
    return (await guarded(this.client.hdel(this.key(kind), id))) === 1;
  }
}
