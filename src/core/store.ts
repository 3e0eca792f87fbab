import type { Challenge, Outcome, Resolution } from './challenge.js';

/**
 * The one persistence interface. Two implementations, memory (the embedded
 * default) and Redis, pass the same contract suite (test/store/contract.ts).
 *
 * Every operation that decides something (a challenge's outcome, an OTP's
 * one-time use, a lockout counter) is a single atomic step in the store, so
 * instances sharing a store can race without approving anything twice.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  readonly challenges: ChallengeStore;
  readonly users: UserStore;
  readonly audit: AuditStore;
  readonly guards: GuardStore;
  readonly devices: DeviceStore;
  readonly tokens: TokenStore;
  readonly kv: KvStore;
  readonly settings: SettingsStore;
  /** WebAuthn credentials (passkeys), by credential id and by user. */
  readonly passkeys: PasskeyStore;
  /** Resolves when the store answers; throws StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface TransitionResult {
  /** True only for the one call that moved the challenge out of pending. */
  changed: boolean;
  challenge: Challenge | null;
}

export interface ChallengeStore {
  create(challenge: Challenge, keepAfterMs: number): Promise<void>;
  get(id: string): Promise<Challenge | null>;
  /**
   * pending → `to`, atomically, at most once. A request made at or after the
   * deadline becomes `expired` whatever was asked; `expired` asked before the
   * deadline changes nothing. The record is kept `keepAfterMs` after
   * resolution so late answers are told what happened.
   */
  transition(
    id: string,
    to: Outcome,
    now: number,
    detail: { method?: string; reason?: string },
    keepAfterMs: number,
  ): Promise<TransitionResult>;
  /**
   * Delivers every resolution made through any instance sharing this store.
   * One subscription per process; `onReconnect` fires after the subscription
   * was lost and restored, because resolutions in between were missed.
   */
  subscribe(onResolution: (r: Resolution) => void, onReconnect: () => void): Promise<void>;
  /** Ids of challenges whose deadline is at or before `now`, oldest first. */
  due(now: number, limit: number): Promise<string[]>;
  /**
   * Keeps a login that was decided in the request that opened it (a code typed with the
   * password): `challenge` is already in its final state. It is never pending, so it is not
   * in the deadline index and no outcome is published (nobody can be waiting on it); kept
   * `keepAfterMs`, like a resolved challenge, so it can be looked up and audited.
   */
  record(challenge: Challenge, keepAfterMs: number): Promise<void>;
  /** Drops ids from the deadline index (after they were resolved). */
  forgetDue(ids: string[]): Promise<void>;
  countPending(): Promise<number>;
}

/** A user as stored. Secrets are already encrypted or hashed by core. */
export interface UserRecord {
  name: string;
  displayName?: string;
  email?: string;
  passwordHash?: string;
  createdAt: number;
  otpEnabled: boolean;
  pushEnabled: boolean;
  /** Encrypted OTP seed (SecretBox), absent until enrolled. */
  otpSecret?: string;
  otpType?: 'totp' | 'hotp';
  otpAlgorithm?: 'SHA1' | 'SHA256' | 'SHA512';
  otpDigits?: number;
  otpPeriod?: number;
  /** Last accepted TOTP step or HOTP counter; -1 when none yet. */
  otpLast?: number;
  /** Wrong codes since the last good code or lock. */
  otpFailures?: number;
  /** Locks since the last good code: each doubles the next lock's length. */
  otpLocks?: number;
  otpLockedUntil?: number;
  /** Console access: admin, or read-only helpdesk; absent for ordinary users. */
  role?: 'admin' | 'helpdesk';
  /** Per-user number matching; the global setting applies when absent. */
  numberMatching?: boolean;
  /** Pushes are held back until then (repeated rejections, "not me"). */
  pushLockedUntil?: number;
  pushLockReason?: string;
  /** The one challenge of this user that may have a push outstanding. */
  pendingChallenge?: string;
  /** Offline HOTP batches handed out (JSON: workstation, credential, first and last counter). */
  offlineIssued?: string;
  /** For a directory's user: which directory, its stable id and current login name. */
  directory?: string;
  directoryId?: string;
  directoryLogin?: string;
  /** JSON list of the user's groups at the last sign-in or sync. */
  directoryGroups?: string;
  /** What the directory said of the account last: active, disabled, expired, locked… or removed. */
  directoryState?: 'active' | 'disabled' | 'expired' | 'locked' | 'must_change_password' | 'removed';
  directorySeenAt?: number;
  /** JSON of the attributes the directory shows an administrator (dn, userPrincipalName…). */
  directoryAttributes?: string;
}

export type UserPatch = Partial<Omit<UserRecord, 'name' | 'createdAt'>> & {
  /** Fields to remove. */
  unset?: (keyof UserRecord)[];
};

export interface UserPage {
  users: UserRecord[];
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string;
  total: number;
}

export interface UserStore {
  /** False when the name is taken. */
  create(user: UserRecord): Promise<boolean>;
  get(name: string): Promise<UserRecord | null>;
  /** False when the user does not exist. */
  update(name: string, patch: UserPatch): Promise<boolean>;
  delete(name: string): Promise<boolean>;
  /** Names in byte order, starting after `after`, filtered by prefix. */
  list(opts: { prefix?: string; after?: string; limit: number }): Promise<UserPage>;
  /**
   * Accepts OTP step/counter `value` once: true and recorded only when it is
   * greater than the last accepted one (and the user exists).
   */
  advanceOtp(name: string, value: number): Promise<boolean>;
  /**
   * Makes `challengeId` the user's pending push challenge and returns the
   * one it replaces, atomically, so two logins racing cannot both keep one.
   */
  swapPending(name: string, challengeId: string): Promise<string | undefined>;
  /** Replaces the password hash only while it is still `expected`; false otherwise. */
  replacePasswordHash(name: string, expected: string, hash: string): Promise<boolean>;
  /**
   * Counts a failed OTP. At maxFailures the factor locks and the count starts over; the
   * lock lasts lockMs, doubled for every earlier lock since the last good code, at most
   * maxLockMs. A lock that has run out no longer counts its failures.
   */
  recordOtpFailure(
    name: string,
    now: number,
    maxFailures: number,
    lockMs: number,
    maxLockMs: number,
  ): Promise<{ failures: number; lockedUntil: number }>;
  /**
   * One typed OTP, decided in one atomic step: refused while the factor is locked
   * (`lockedUntil` > now); else `match` (the step or counter the code matched, null for
   * none) is accepted when it is greater than the last accepted one, as advanceOtp; else the
   * failure is counted and may lock, as recordOtpFailure. `replay`: the code matched but was
   * used already. A missing user is `{ ok: false, failures: 0, lockedUntil: 0, missing: true }`.
   */
  spendOtp(name: string, match: number | null, now: number, limits: OtpLimits): Promise<OtpSpent>;
}

export interface OtpLimits {
  maxFailures: number;
  lockMs: number;
  maxLockMs: number;
}

export type OtpSpent =
  | { ok: true }
  | { ok: false; failures: number; lockedUntil: number; replay?: boolean; locked?: boolean; missing?: boolean };

export interface AuditEvent {
  at: number;
  type: string; // login | fraud | admin | ...
  actor?: string; // who made an admin change: a console user name, or admin-token
  user?: string;
  front?: string;
  client?: string;
  ip?: string;
  method?: string;
  outcome?: string;
  durationMs?: number;
  challengeId?: string;
  detail?: Record<string, unknown>;
}

/**
 * The audit is kept as two streams, each trimmed at its own length, so that what anyone can
 * cause in volume never pushes out what an investigation needs. `security`: logins, wrong
 * codes, fraud reports, every administrator's change and console sign-in, factor changes
 * (the portal's and the device API's included), invitations. `activity`: RADIUS per-packet
 * and accounting events, portal enrolment links, a device renaming itself or changing its
 * lock. docs/security.md lists every event and why it is where it is.
 */
export type AuditStream = 'security' | 'activity';
export const AUDIT_STREAMS: readonly AuditStream[] = ['security', 'activity'];

/** Types whose every event is activity: a NAS sends them per packet, without limit. */
const ACTIVITY_TYPES = new Set(['radius', 'accounting']);
/**
 * Actions of `account` and `device` events a portal user or an enrolled device repeats at
 * will and that change no factor; the rest of those types are factor changes and sign-ins.
 */
const ACTIVITY_ACTIONS: Record<string, ReadonlySet<string>> = {
  account: new Set(['account.device-enrolment']),
  device: new Set(['device.rename', 'device.lock']),
};

/**
 * The stream an event is kept in. Anything not named as activity is security: a new kind
 * of event is kept safe until someone decides it is high-volume.
 */
export function auditStreamOf(e: AuditEvent): AuditStream {
  if (ACTIVITY_TYPES.has(e.type)) return 'activity';
  const action = e.detail?.action;
  return typeof action === 'string' && ACTIVITY_ACTIONS[e.type]?.has(action) ? 'activity' : 'security';
}

export interface AuditQuery {
  user?: string;
  front?: string;
  outcome?: string;
  type?: string;
  /** Only this stream; both by default. */
  stream?: AuditStream;
  since?: number;
  limit: number;
}

export interface AuditStore {
  /** Kept in the stream `auditStreamOf` names, trimmed at that stream's own length. */
  append(event: AuditEvent): Promise<void>;
  /**
   * Newest first, both streams merged unless `stream` says one: each stream in the order it
   * was written, interleaved by `at` (on a tie, the activity event first).
   */
  query(q: AuditQuery): Promise<AuditEvent[]>;
}

/** Small shared primitives for replay protection and rate limits. */
export interface GuardStore {
  /** True the first time a key is claimed within ttlMs; false after. */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
  /** Counts a hit in a fixed window and returns the count so far. */
  hit(key: string, windowMs: number): Promise<number>;
  /**
   * The hits counted so far in the key's window and the time left in it, without
   * counting one (0 and 0 once the window is over), so a limit can be shown.
   */
  peek(key: string): Promise<{ count: number; remainingMs: number }>;
  /** Forgets a counter: the next hit starts a fresh window (an administrator lifting a limit). */
  reset(key: string): Promise<void>;
}

/** A phone (or other authenticator) enrolled for push. */
export interface DeviceRecord {
  id: string;
  user: string;
  name: string;
  platform: 'android' | 'ios' | 'webpush';
  /** FCM registration token, APNs device token or Web Push subscription (JSON); absent for poll-only devices. */
  pushToken?: string;
  /** The device's ES256 public key (JWK), sealed by core. */
  publicKey: string;
  /** The app is PIN/biometric-protected, so approvals must come from the phone. */
  protected: boolean;
  createdAt: number;
  lastSeenAt?: number;
  /** The push service said the token is dead; the device still polls and answers. */
  stale?: boolean;
}

export interface DeviceStore {
  put(device: DeviceRecord): Promise<void>;
  /**
   * Adds a new device unless its user already has `max` devices, in one step: of enrolments
   * racing for the last place (on any instance) only one gets it. False when full.
   */
  add(device: DeviceRecord, max: number): Promise<boolean>;
  get(user: string, id: string): Promise<DeviceRecord | null>;
  list(user: string): Promise<DeviceRecord[]>;
  /** False when there is no such device. */
  update(user: string, id: string, patch: Partial<Omit<DeviceRecord, 'id' | 'user'>>): Promise<boolean>;
  delete(user: string, id: string): Promise<boolean>;
  deleteAll(user: string): Promise<void>;
}

/**
 * Single-use secrets with a lifetime: enrolment links and the like. Callers
 * pass a digest of the secret, so a copy of the store holds no live link.
 */
export interface TokenStore {
  put(kind: string, token: string, value: string, ttlMs: number): Promise<void>;
  /** Returns the value and deletes it in one step: a token works once. */
  take(kind: string, token: string): Promise<string | null>;
}

/** Short-lived shared values: RADIUS reply caches and challenge states. */
export interface KvStore {
  /** Sets the value unless the key exists; returns the existing value, or null when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  get(key: string): Promise<string | null>;
  delete(key: string): Promise<void>;
  /** A set of strings under a key, kept at least ttlMs after the last addition. */
  addMember(key: string, member: string, ttlMs: number): Promise<void>;
  members(key: string): Promise<string[]>;
}

/** Administered records without a lifetime (RADIUS clients, OIDC clients): kind → id → JSON. */
export interface SettingsStore {
  put(kind: string, id: string, value: string): Promise<void>;
  get(kind: string, id: string): Promise<string | null>;
  list(kind: string): Promise<Map<string, string>>;
  delete(kind: string, id: string): Promise<boolean>;
}

/**
 * A WebAuthn credential (passkey) registered for a user. A public key is no secret: it is
 * stored as it is. The credential id is unique across users (the passwordless lookup).
 */
export interface PasskeyRecord {
  /** The credential id, base64url. */
  id: string;
  user: string;
  name: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  /** The authenticator's signature counter at the last use (0: it keeps none). */
  counter: number;
  transports?: string[];
  /** multiDevice: synced (a passkey in a password manager or platform cloud); singleDevice: bound to one authenticator. */
  deviceType: 'singleDevice' | 'multiDevice';
  backedUp: boolean;
  createdAt: number;
  lastUsedAt?: number;
}

export interface PasskeyStore {
  /** False when the credential id is already registered, to this user or another. */
  create(passkey: PasskeyRecord): Promise<boolean>;
  /** By credential id, whoever it belongs to. */
  get(id: string): Promise<PasskeyRecord | null>;
  /** A user's passkeys, oldest first. */
  list(user: string): Promise<PasskeyRecord[]>;
  /**
   * Records a use: the counter moves from `from` to `to` only while it is still `from`
   * (compare-and-set), so two assertions racing with the same counter cannot both pass.
   * False when it moved meanwhile or the passkey is gone.
   */
  recordUse(id: string, from: number, to: number, usedAt: number, backedUp: boolean): Promise<boolean>;
  /** False when the user has no such passkey. */
  delete(user: string, id: string): Promise<boolean>;
  deleteAll(user: string): Promise<void>;
}
