import type { Challenge, Outcome, Resolution } from '../core/challenge.js';

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
  otpFailures?: number;
  otpLockedUntil?: number;
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
  /** Counts a failed OTP; locks the factor for lockMs at maxFailures. */
  recordOtpFailure(
    name: string,
    now: number,
    maxFailures: number,
    lockMs: number,
  ): Promise<{ failures: number; lockedUntil: number }>;
}

export interface AuditEvent {
  at: number;
  type: string; // login | fraud | admin | ...
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

export interface AuditQuery {
  user?: string;
  front?: string;
  outcome?: string;
  since?: number;
  limit: number;
}

export interface AuditStore {
  append(event: AuditEvent): Promise<void>;
  /** Newest first. */
  query(q: AuditQuery): Promise<AuditEvent[]>;
}

/** Small shared primitives for replay protection and rate limits. */
export interface GuardStore {
  /** True the first time a key is claimed within ttlMs; false after. */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
  /** Counts a hit in a fixed window and returns the count so far. */
  hit(key: string, windowMs: number): Promise<number>;
}
