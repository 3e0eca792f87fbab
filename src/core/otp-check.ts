import type { Clock } from './clock.js';
import { CountersignError, notFound } from './errors.js';
import { findOtpMatch, totpStep } from './otp.js';
import type { SecretBox } from './secretbox.js';
import { otpContext } from './users.js';
import type { Store, UserRecord } from './store.js';

export interface OtpRules {
  /** TOTP steps accepted either side of now (clock drift). */
  totpWindow: number;
  /** HOTP counters accepted ahead of the last used one (presses not used). */
  hotpLookahead: number;
  maxFailures: number;
  /** The first lock; each further lock before a good code doubles it, up to maxLockMs. */
  lockMs: number;
  maxLockMs: number;
}

const locked = (until: number) =>
  new CountersignError(423, 'otp_locked', `too many wrong codes; one-time passwords are locked until ${new Date(until).toISOString()}`, {
    lockedUntil: until,
  });

/**
 * Checks a typed one-time password. A code counts once: the accepted step or
 * counter is recorded atomically in the store, so the same code typed twice,
 * on one instance or two, is refused the second time.
 */
export class OtpChecker {
  constructor(
    private store: Store,
    private box: SecretBox,
    private clock: Clock,
    private rules: OtpRules,
  ) {}

  /**
   * `record`: the user as the caller just read it (one read less); the decision does not rest
   * on it, the store decides the code's use and the lock in one atomic step.
   */
  async check(name: string, code: string, record?: UserRecord): Promise<void> {
    const u = record ?? (await this.store.users.get(name));
    if (!u) throw notFound('user', name);
    if (!u.otpEnabled || !u.otpSecret) {
      throw new CountersignError(403, 'otp_not_enabled', `one-time passwords are not enabled for '${name}'`);
    }
    const now = this.clock.now();
    if ((u.otpLockedUntil ?? 0) > now) throw locked(u.otpLockedUntil!);

    const secret = this.box.open(u.otpSecret, otpContext(name));
    const algorithm = u.otpAlgorithm ?? 'SHA1';
    const digits = u.otpDigits ?? 6;
    const last = u.otpLast ?? -1;
    let from: number;
    let to: number;
    if (u.otpType === 'hotp') {
      // Looking a little behind too tells a reused code from a wrong one.
      from = Math.max(0, last + 1 - this.rules.hotpLookahead);
      to = last + this.rules.hotpLookahead;
    } else {
      const step = totpStep(now, u.otpPeriod ?? 30);
      from = step - this.rules.totpWindow;
      to = step + this.rules.totpWindow;
    }
    const match = findOtpMatch(secret, code.trim(), from, to, algorithm, digits);
    // One round trip: accepted once, or counted as a failure (a lock set meanwhile refuses it).
    const f = await this.store.users.spendOtp(name, match, now, this.rules);
    if (f.ok) return;
    if (f.missing) throw notFound('user', name);
    const replay = Boolean(f.replay);
    if (f.lockedUntil > now) throw locked(f.lockedUntil);
    throw new CountersignError(
      401,
      replay ? 'otp_replayed' : 'otp_invalid',
      replay ? 'this one-time password was already used' : 'the one-time password is wrong',
      { attemptsLeft: Math.max(0, this.rules.maxFailures - f.failures) },
    );
  }
}
