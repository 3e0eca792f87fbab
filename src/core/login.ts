import { EventEmitter } from 'node:events';
import type { Challenge, Factor, Origin } from './challenge.js';
import { firstFactorError, groupsOf, type Directories } from './directories.js';
import { FAILURE_WORDS } from './directory.js';
import { decide, mergePolicy, type AccessPolicy } from './policy.js';
import type { ChallengeEngine } from './engine.js';
import { CountersignError, notFound } from './errors.js';
import type { OtpChecker } from './otp-check.js';
import type { PushService } from './push-service.js';
import type { UserService } from './users.js';

export interface BeginOptions {
  deadlineMs?: number;
  bindingMessage?: string;
  only?: Factor;
  /** The front cannot show a number (RADIUS push-wait): number matching cannot be honoured. */
  noScreen?: boolean;
  /** The client's policy over the default one; null: no group policy here (the console, gated by role). */
  policy?: AccessPolicy | null;
  /** Never pass on the first factor alone, whatever the policy (the console, CIBA). */
  requireSecondFactor?: boolean;
}

/** How a login approved on its first factor alone is recorded (amr pwd). */
export const FIRST_FACTOR_ONLY = 'first-factor';

/** A login just opened, and, when push was wanted but not sent, why. */
export interface Opened {
  challenge: Challenge;
  /**
   * Why the user's push was not sent for this login (rate limit, lock, no device). Only
   * ever set after the first factor passed, so it tells a stranger nothing; fronts put it
   * into words with `whyNoPush` (push-service.ts).
   */
  pushNotSent?: CountersignError;
}

/**
 * The flow every front shares: first factor, open a challenge, then an OTP
 * typed into the front or an outcome to wait for. Fronts translate their
 * protocol into these calls and the errors back into their own answers.
 */
export class LoginService extends EventEmitter<{ otpFailure: [string]; pushFailed: [unknown] }> {
  constructor(
    private engine: ChallengeEngine,
    private users: UserService,
    private otp: OtpChecker,
    private directory: Directories,
    private push?: PushService,
    private defaultPolicy: AccessPolicy = {},
  ) {
    super();
    // The user view shows the push allowance and unlock clears it; only the push service
    // knows the limit, and this is where both services meet.
    if (push) users.readPushThrottleFrom(push);
  }

  /**
   * Opens a challenge for `user`. With a password the directory checks it
   * first; without one the front vouches that the first factor was done.
   */
  async begin(user: string, password: string | null, origin: Origin, opts: BeginOptions = {}): Promise<Challenge> {
    return (await this.open(user, password, origin, opts)).challenge;
  }

  /** `begin`, telling a front that shows the second step why a wanted push was not sent. */
  async open(user: string, password: string | null, origin: Origin, opts: BeginOptions = {}): Promise<Opened> {
    let name = user;
    if (password !== null) {
      const verified = await this.directory.verify(user, password);
      if (!verified.ok) throw firstFactorError(verified);
      name = verified.name;
    }
    // A directory user the front vouches for (a NAS that checked the password) may not have
    // signed in here yet: the directory knows them, and their record is made now.
    if (password === null && !(await this.users.exists(name))) name = (await this.directory.lookup(name))?.name ?? name;
    const record = await this.users.require(name);
    // A directory user the directory (or the last sync) says is gone or disabled logs in nowhere,
    // also where the front vouches for the first factor.
    if (record.directoryState && record.directoryState !== 'active') {
      throw record.directoryState === 'removed'
        ? new CountersignError(403, 'account_removed', 'This account no longer exists in the directory; contact your help desk')
        : new CountersignError(403, 'account_disabled', FAILURE_WORDS.account_disabled);
    }
    let secondFactor: 'required' | 'not-required' = 'required';
    let noFactor: 'deny' | 'allow' = 'deny';
    if (opts.policy !== null) {
      const decision = decide(groupsOf(record), mergePolicy(this.defaultPolicy, opts.policy));
      if (!decision.allowed) throw new CountersignError(403, 'not_allowed', FAILURE_WORDS.not_allowed);
      ({ secondFactor, noFactor } = decision);
    }
    if (opts.requireSecondFactor) [secondFactor, noFactor] = ['required', 'deny'];
    if (secondFactor === 'not-required') return { challenge: await this.firstFactorOnly(name, origin, opts) };
    const factors: Factor[] = record.otpEnabled && record.otpSecret && opts.only !== 'push' ? ['otp'] : [];
    // Every refusal that sends nothing comes before the push is counted: only a push that
    // goes out uses up the user's allowance.
    let pushRefusal: CountersignError | null = null;
    if (record.pushEnabled && this.push && opts.only !== 'otp') {
      pushRefusal = await this.push.blocked(record);
      if (!pushRefusal && opts.noScreen && this.push.numberFor(record)) {
        // Never drop number matching silently: such a login has to go where a number can be shown.
        pushRefusal = new CountersignError(
          403,
          'number_matching_needs_screen',
          'number matching is on for this account, and this login cannot show the number; use a one-time code or a client in challenge mode',
        );
      }
      // A read first, so logins refused at the limit leave the count alone; the hit then
      // decides (atomically in the store) when logins race for the last push. It is taken
      // just before the login opens: only a store failure in between loses a push counted.
      pushRefusal ??= (await this.push.rateLimited(name)) ?? (await this.push.reserveSend(name));
      if (!pushRefusal) factors.push('push');
    }
    if (factors.length === 0) {
      const enrolled = (record.otpEnabled && record.otpSecret) || record.pushEnabled;
      if (noFactor === 'allow' && !enrolled) return { challenge: await this.firstFactorOnly(name, origin, opts) };
      throw (
        pushRefusal ??
        new CountersignError(422, 'no_second_factor', `'${name}' has no second factor enabled; ask an administrator to enable OTP or push`)
      );
    }
    const number = factors.includes('push') ? this.push!.numberFor(record) : undefined;
    const c = await this.engine.open(name, factors, origin, { deadlineMs: opts.deadlineMs, bindingMessage: opts.bindingMessage, number });
    if (factors.includes('push')) {
      await this.push!.supersede(c);
      // The login waits for the answer, not for the push service.
      this.push!.dispatch(c).catch((err) => this.emit('pushFailed', err));
    }
    return pushRefusal ? { challenge: c, pushNotSent: pushRefusal } : { challenge: c };
  }

  /**
   * The policy lets this user in on the first factor: the login is opened and approved at
   * once, so every front answers it as an approved login and the audit records it as one.
   */
  private async firstFactorOnly(name: string, origin: Origin, opts: BeginOptions): Promise<Challenge> {
    const c = await this.engine.open(name, [], origin, { deadlineMs: opts.deadlineMs, bindingMessage: opts.bindingMessage });
    const r = await this.engine.approve(c.id, FIRST_FACTOR_ONLY);
    if (r.challenge?.state !== 'approved') throw new CountersignError(409, 'challenge_expired', 'this login is already expired');
    return r.challenge;
  }

  /**
   * A login that is answered in the same request that opens it (a code typed with the
   * password): a wrong or reused code ends it at once instead of leaving it pending.
   */
  async otpOnce(user: string, code: string, origin: Origin, policy?: AccessPolicy | null): Promise<Challenge> {
    const c = await this.begin(user, null, origin, { only: 'otp', policy });
    // The policy let the user in on the first factor: the code is not needed.
    if (c.state === 'approved') return c;
    try {
      return await this.answerOtp(c.id, code);
    } catch (err) {
      const reason = err instanceof CountersignError ? err.code : 'error';
      await this.engine.reject(c.id, 'otp', reason).catch(() => {});
      throw err;
    }
  }

  async requirePending(id: string): Promise<Challenge> {
    const c = await this.engine.get(id);
    if (!c) throw notFound('challenge', id);
    if (c.state !== 'pending') {
      throw new CountersignError(409, `challenge_${c.state}`, `this login is already ${c.state}`, { state: c.state });
    }
    return c;
  }

  /**
   * Checks an OTP typed for a pending challenge and approves it. A wrong code
   * leaves the challenge pending for another try; a lockout rejects it.
   */
  async answerOtp(id: string, code: string): Promise<Challenge> {
    const c = await this.requirePending(id);
    if (!c.factors.includes('otp')) {
      throw new CountersignError(403, 'otp_not_offered', 'this login does not accept a one-time password');
    }
    try {
      await this.otp.check(c.user, code);
    } catch (err) {
      if (err instanceof CountersignError) {
        this.emit('otpFailure', err.code);
        if (err.code === 'otp_locked') await this.engine.reject(id, 'otp', 'otp_locked');
      }
      throw err;
    }
    const r = await this.engine.approve(id, 'otp');
    if (r.challenge?.state !== 'approved') {
      const state = r.challenge?.state ?? 'expired';
      throw new CountersignError(409, `challenge_${state}`, `this login is already ${state}`, { state });
    }
    return r.challenge;
  }
}
