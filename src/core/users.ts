import type { Clock } from './clock.js';
import type { Factor } from './challenge.js';
import { CountersignError, badRequest, conflict, notFound } from './errors.js';
import { hashPassword, type ScryptCost } from './password.js';
import { SecretBox } from './secretbox.js';
import { findOtpMatch, newOtpSecret, otpauthUri, type OtpAlgorithm, type OtpParams } from './otp.js';
import type { PushThrottleState } from './push-service.js';
import type { Store, UserRecord } from './store.js';

export interface UserPolicy {
  issuer: string;
  otpDefaults: OtpParams;
  scrypt: ScryptCost;
}

/** What the API shows of a user: never a hash or a seed. */
export interface UserView {
  name: string;
  displayName?: string;
  email?: string;
  createdAt: number;
  hasPassword: boolean;
  role?: 'admin' | 'helpdesk';
  /** For a directory's user: where they come from, their login and groups there, and the account's state. */
  directory?: {
    name: string;
    login?: string;
    groups: string[];
    state: NonNullable<UserRecord['directoryState']>;
    seenAt?: number;
    attributes: Record<string, string | string[]>;
  };
  otp: {
    enabled: boolean;
    enrolled: boolean;
    type?: 'totp' | 'hotp';
    algorithm?: OtpAlgorithm;
    digits?: number;
    period?: number;
    failures: number;
    lockedUntil?: number;
  };
  /**
   * `sent`, `limit` and `rateLimitedUntil` (PushThrottleState) are read per user, so
   * only the view of one user has them; a list has none.
   */
  push: { enabled: boolean; lockedUntil?: number; lockReason?: string; numberMatching?: boolean } & Partial<PushThrottleState>;
  factors: Factor[];
}

/** The push rate limit as the user view shows it and unlock clears it (PushService). */
export interface PushThrottleSource {
  throttle(user: string): Promise<PushThrottleState>;
  clearThrottle(user: string): Promise<void>;
}

export interface OtpEnrolment {
  uri: string;
  secret: string; // base32, shown once for manual entry
  params: OtpParams;
}

export interface BulkResult {
  name: string;
  ok: boolean;
  error?: string;
  otp?: OtpEnrolment;
}

export const otpContext = (name: string) => `otp:${name}`;

/** Users and their factors. The store holds them; this decides what is allowed. */
export class UserService {
  private pushThrottle?: PushThrottleSource;

  constructor(
    private store: Store,
    private box: SecretBox,
    private clock: Clock,
    private policy: UserPolicy,
  ) {}

  readPushThrottleFrom(source: PushThrottleSource): void {
    this.pushThrottle = source;
  }

  view(u: UserRecord): UserView {
    const locked = (u.otpLockedUntil ?? 0) > this.clock.now();
    return {
      name: u.name,
      displayName: u.displayName,
      email: u.email,
      createdAt: u.createdAt,
      hasPassword: Boolean(u.passwordHash),
      role: u.role,
      ...(u.directory
        ? {
            directory: {
              name: u.directory,
              login: u.directoryLogin,
              groups: u.directoryGroups ? (JSON.parse(u.directoryGroups) as string[]) : [],
              state: u.directoryState ?? 'active',
              seenAt: u.directorySeenAt,
              attributes: u.directoryAttributes ? (JSON.parse(u.directoryAttributes) as Record<string, string | string[]>) : {},
            },
          }
        : {}),
      otp: {
        enabled: u.otpEnabled,
        enrolled: Boolean(u.otpSecret),
        type: u.otpType,
        algorithm: u.otpAlgorithm,
        digits: u.otpDigits,
        period: u.otpType === 'totp' ? u.otpPeriod : undefined,
        failures: u.otpFailures ?? 0,
        lockedUntil: locked ? u.otpLockedUntil : undefined,
      },
      push: {
        enabled: u.pushEnabled,
        lockedUntil: (u.pushLockedUntil ?? 0) > this.clock.now() ? u.pushLockedUntil : undefined,
        lockReason: (u.pushLockedUntil ?? 0) > this.clock.now() ? u.pushLockReason : undefined,
        numberMatching: u.numberMatching,
      },
      factors: this.factorsOf(u),
    };
  }

  /** The second factors a login for this user can be offered. */
  factorsOf(u: UserRecord): Factor[] {
    const f: Factor[] = [];
    if (u.otpEnabled && u.otpSecret) f.push('otp');
    if (u.pushEnabled) f.push('push');
    return f;
  }

  async create(input: { name: string; password?: string; displayName?: string; email?: string; role?: 'admin' | 'helpdesk' }): Promise<UserView> {
    const record: UserRecord = {
      name: input.name,
      displayName: input.displayName,
      email: input.email,
      passwordHash: input.password ? await hashPassword(input.password, this.policy.scrypt) : undefined,
      createdAt: this.clock.now(),
      otpEnabled: false,
      pushEnabled: false,
      role: input.role,
    };
    if (!(await this.store.users.create(record))) throw conflict('user_exists', `user '${input.name}' already exists`);
    return this.view(record);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.store.users.get(name)) !== null;
  }

  async require(name: string): Promise<UserRecord> {
    const u = await this.store.users.get(name);
    if (!u) throw notFound('user', name);
    return u;
  }

  /** One user, with the push allowance: one more store read than `view`. */
  async get(name: string): Promise<UserView> {
    const [u, throttle] = await Promise.all([this.require(name), this.pushThrottle?.throttle(name)]);
    const v = this.view(u);
    if (throttle) v.push = { ...v.push, ...throttle };
    return v;
  }

  async list(opts: { prefix?: string; after?: string; limit: number }) {
    // Without the push allowance: a page of users must not cost a store read per user.
    const page = await this.store.users.list(opts);
    return { users: page.users.map((u) => this.view(u)), next: page.next, total: page.total };
  }

  async delete(name: string): Promise<void> {
    if (!(await this.store.users.delete(name))) throw notFound('user', name);
    await this.store.devices.deleteAll(name);
    // A user made again under this name must not inherit these.
    await this.store.passkeys.deleteAll(name);
    // Recovery codes are tied to the record's creation time already; this drops the leftover set.
    await this.store.settings.delete('recovery', name);
  }

  async update(
    name: string,
    patch: {
      password?: string | null;
      displayName?: string;
      email?: string;
      numberMatching?: boolean | null;
      role?: 'admin' | 'helpdesk' | null;
    },
  ): Promise<UserView> {
    const unset: (keyof UserRecord)[] = patch.password === null ? ['passwordHash'] : [];
    if (patch.numberMatching === null) unset.push('numberMatching');
    if (patch.role === null) unset.push('role');
    const ok = await this.store.users.update(name, {
      displayName: patch.displayName,
      email: patch.email,
      numberMatching: patch.numberMatching ?? undefined,
      role: patch.role ?? undefined,
      passwordHash: patch.password ? await hashPassword(patch.password, this.policy.scrypt) : undefined,
      unset,
    });
    if (!ok) throw notFound('user', name);
    return this.get(name);
  }

  /**
   * (Re-)enrols OTP: a fresh seed, counters reset. The seed is returned once,
   * as an otpauth:// URI for any authenticator app, and stored only encrypted.
   */
  async enrolOtp(name: string, params: Partial<OtpParams> = {}): Promise<OtpEnrolment> {
    const p: OtpParams = { ...this.policy.otpDefaults, ...params };
    const secret = newOtpSecret(p.algorithm);
    const ok = await this.store.users.update(name, {
      otpEnabled: true,
      otpSecret: this.box.seal(secret, otpContext(name)),
      otpType: p.type,
      otpAlgorithm: p.algorithm,
      otpDigits: p.digits,
      otpPeriod: p.period,
      otpLast: -1,
      otpFailures: 0,
      unset: ['otpLockedUntil', 'otpLocks', 'offlineIssued'],
    });
    if (!ok) throw notFound('user', name);
    return this.enrolment(name, secret, p, 0);
  }

  private enrolment(name: string, secret: Buffer, params: OtpParams, counter: number): OtpEnrolment {
    const uri = otpauthUri({ issuer: this.policy.issuer, account: name, secret, params, counter });
    return { uri, secret: new URL(uri).searchParams.get('secret')!, params };
  }

  /**
   * Turns a factor on or off for many users in one call. Enabling OTP for a
   * user who has no seed yet enrols one and returns its URI; a user who
   * already has one keeps it. Each name gets its own result: one unknown
   * name does not undo the others.
   */
  async setFactor(
    names: string[],
    factor: Exclude<Factor, 'passkey'>,
    enabled: boolean,
    otpParams: Partial<OtpParams> = {},
  ): Promise<BulkResult[]> {
    const unique = [...new Set(names)];
    const one = async (name: string): Promise<BulkResult> => {
      try {
        if (factor === 'push') {
          if (!(await this.store.users.update(name, { pushEnabled: enabled }))) throw notFound('user', name);
          return { name, ok: true };
        }
        if (!enabled) {
          if (!(await this.store.users.update(name, { otpEnabled: false }))) throw notFound('user', name);
          return { name, ok: true };
        }
        const u = await this.require(name);
        if (u.otpSecret) {
          await this.store.users.update(name, { otpEnabled: true });
          return { name, ok: true };
        }
        return { name, ok: true, otp: await this.enrolOtp(name, otpParams) };
      } catch (err) {
        if (err instanceof CountersignError && err.status < 500) return { name, ok: false, error: err.message };
        throw err;
      }
    };
    // Bounded concurrency: fast on Redis (pipelined), gentle on a big batch.
    const results: BulkResult[] = new Array(unique.length);
    let next = 0;
    const worker = async () => {
      while (next < unique.length) {
        const i = next++;
        results[i] = await one(unique[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(64, unique.length) }, worker));
    return results;
  }

  /** Clears OTP and push lockouts, the push rejection count and the push rate-limit window. */
  async unlock(name: string): Promise<UserView> {
    const ok = await this.store.users.update(name, { otpFailures: 0, unset: ['otpLockedUntil', 'otpLocks', 'pushLockedUntil', 'pushLockReason'] });
    if (!ok) throw notFound('user', name);
    await this.pushThrottle?.clearThrottle(name);
    return this.get(name);
  }

  /** RFC 4226 §7.4: two consecutive codes far ahead bring a drifted HOTP token back. */
  async resyncHotp(name: string, code1: string, code2: string, window = 1000): Promise<UserView> {
    const u = await this.require(name);
    if (u.otpType !== 'hotp' || !u.otpSecret) throw badRequest('not_hotp', `user '${name}' has no HOTP token`);
    const secret = this.box.open(u.otpSecret, otpContext(name));
    const from = (u.otpLast ?? -1) + 1;
    const c = findOtpMatch(secret, code1, from, from + window, u.otpAlgorithm ?? 'SHA1', u.otpDigits ?? 6);
    if (c === null || findOtpMatch(secret, code2, c + 1, c + 1, u.otpAlgorithm ?? 'SHA1', u.otpDigits ?? 6) === null) {
      throw badRequest('resync_failed', 'the two codes are not consecutive codes of this token');
    }
    await this.store.users.advanceOtp(name, c + 1);
    return this.unlock(name);
  }
}
