import type { Clock } from './clock.js';
import { CountersignError } from './errors.js';
import { findOtpMatch, newOtpSecret, otpauthUri, totpStep, type OtpParams } from './otp.js';
import type { SecretBox } from './secretbox.js';
import type { Store } from './store.js';
import { otpContext, type OtpEnrolment } from './users.js';

/** How long a shown QR code waits for its first code. */
const PENDING_MS = 10 * 60_000;
/** Wrong codes before the pending seed is thrown away (the user scans a new one). */
const MAX_TRIES = 5;

interface Pending {
  sealed: string;
  params: OtpParams;
  tries: number;
}

/**
 * TOTP enrolled by the user themselves (the portal, enrolment at sign-in): the new seed waits,
 * sealed, until a code from it verifies, and only then replaces the user's OTP. So a QR code
 * that was never scanned (or scanned wrong) never turns on a factor the user cannot use, and a
 * user who already has OTP keeps it until the new one works.
 */
export class OtpEnrolments {
  constructor(
    private store: Store,
    private box: SecretBox,
    private clock: Clock,
    private policy: { issuer: string; totpWindow: number; defaults: OtpParams },
  ) {}

  private key = (user: string) => `otp-pending:${user}`;
  private context = (user: string) => `otp-pending:${user}`;

  /** A fresh TOTP seed for `user`, shown once; nothing changes until `confirm`. */
  async start(user: string): Promise<OtpEnrolment> {
    // Always TOTP: an app scanned from a screen; HOTP tokens are an administrator's business.
    const params: OtpParams = { ...this.policy.defaults, type: 'totp' };
    const secret = newOtpSecret(params.algorithm);
    const pending: Pending = { sealed: this.box.seal(secret, this.context(user)), params, tries: 0 };
    await this.store.kv.set(this.key(user), JSON.stringify(pending), PENDING_MS);
    return this.shown(user, secret, params);
  }

  /**
   * The seed already shown to `user` and waiting for its code, else a fresh one: a page shown
   * again (after a wrong code) keeps the QR code the user has scanned.
   */
  async current(user: string): Promise<OtpEnrolment> {
    const raw = await this.store.kv.get(this.key(user));
    if (!raw) return this.start(user);
    const pending = JSON.parse(raw) as Pending;
    return this.shown(user, this.box.open(pending.sealed, this.context(user)), pending.params);
  }

  private shown(user: string, secret: Buffer, params: OtpParams): OtpEnrolment {
    const uri = otpauthUri({ issuer: this.policy.issuer, account: user, secret, params });
    return { uri, secret: new URL(uri).searchParams.get('secret')!, params };
  }

  /**
   * Checks a code from the pending seed. Right: the seed becomes the user's OTP, with that
   * code's time step already spent (it cannot be typed again anywhere), and true is
   * returned. Wrong: false, and after MAX_TRIES the pending seed is gone.
   */
  async confirm(user: string, code: string): Promise<boolean> {
    const raw = await this.store.kv.get(this.key(user));
    if (!raw) throw new CountersignError(410, 'otp_enrolment_expired', 'this QR code has expired; start again to get a new one');
    const pending = JSON.parse(raw) as Pending;
    const secret = this.box.open(pending.sealed, this.context(user));
    const step = totpStep(this.clock.now(), pending.params.period);
    const match = /^\d{6,8}$/.test(code.trim())
      ? findOtpMatch(secret, code.trim(), step - this.policy.totpWindow, step + this.policy.totpWindow, pending.params.algorithm, pending.params.digits)
      : null;
    if (match === null) {
      pending.tries++;
      if (pending.tries >= MAX_TRIES) await this.store.kv.delete(this.key(user));
      else await this.store.kv.set(this.key(user), JSON.stringify(pending), PENDING_MS);
      return false;
    }
    await this.store.kv.delete(this.key(user));
    const ok = await this.store.users.update(user, {
      otpEnabled: true,
      otpSecret: this.box.seal(secret, otpContext(user)),
      otpType: 'totp',
      otpAlgorithm: pending.params.algorithm,
      otpDigits: pending.params.digits,
      otpPeriod: pending.params.period,
      otpLast: match,
      otpFailures: 0,
      unset: ['otpLockedUntil', 'otpLocks', 'offlineIssued'],
    });
    if (!ok) throw new CountersignError(404, 'user_not_found', `user '${user}' does not exist`);
    return true;
  }
}
