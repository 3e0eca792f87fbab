import { EventEmitter } from 'node:events';
import type { OtpFailure } from './audit.js';
import type { Challenge, Factor, Origin } from './challenge.js';
import { firstFactorError, groupsOf, type Directories } from './directories.js';
import { FAILURE_WORDS } from './directory.js';
import { decide, mergePolicy, type AccessPolicy } from './policy.js';
import type { ChallengeEngine } from './engine.js';
import { CountersignError, notFound } from './errors.js';
import type { OtpChecker } from './otp-check.js';
import { passkeyAmr, type AuthenticationResponseJSON, type Passkeys } from './passkeys.js';
import type { UserRecord } from './store.js';
import type { PushService } from './push-service.js';
import type { UserService } from './users.js';
import type { FirstFactor, FirstFactorSource } from './first-factor.js';

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
  /** The front runs in a browser and can ask for a passkey (OIDC, the console); RADIUS and the bridge cannot. */
  webauthn?: boolean;
  /** Where the sign-in comes from, for the first-factor throttle when a password is given (default: the origin's address). */
  source?: FirstFactorSource;
}

/** The method an approved passkey login records: `passkey-` after a password, `passwordless-` alone; then hwk or swk. */
export const passkeyMethod = (kind: 'passkey' | 'passwordless', deviceType: 'singleDevice' | 'multiDevice') => `${kind}-${passkeyAmr(deviceType)}`;

/** Said where a login cannot carry WebAuthn (RADIUS, the bridge) to a user whose only factor is a passkey. */
export const PASSKEY_NEEDS_BROWSER =
  'This account signs in with a passkey, which works only in a web browser; this login (VPN, RADIUS or Windows logon) cannot use one. Ask an administrator to enable a one-time code or push.';

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
export class LoginService extends EventEmitter<{ otpFailure: [string, OtpFailure]; pushFailed: [unknown] }> {
  private passkeys?: Passkeys;

  constructor(
    private engine: ChallengeEngine,
    private users: UserService,
    private otp: OtpChecker,
    private directory: Directories,
    private firstFactor: FirstFactor,
    private push?: PushService,
    private defaultPolicy: AccessPolicy = {},
  ) {
    super();
    // The user view shows the push allowance and unlock clears it; only the push service
    // knows the limit, and this is where both services meet.
    if (push) users.readPushThrottleFrom(push);
  }

  /** Passkeys as a factor: offered where the front can run WebAuthn. */
  usePasskeys(passkeys: Passkeys): void {
    this.passkeys = passkeys;
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
    const { name, record, secondFactor, noFactor } = await this.admit(user, password, { source: { front: origin.front, address: origin.ip ?? '' }, ...opts });
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
    // Asked only where a passkey can be offered, or where it explains why nothing else can be (one read).
    const otherEnrolled = Boolean((record.otpEnabled && record.otpSecret) || record.pushEnabled);
    const offerPasskey = Boolean(opts.webauthn && !opts.only);
    const passkey = Boolean(this.passkeys && (offerPasskey || (factors.length === 0 && !otherEnrolled)) && (await this.passkeys.has(name)));
    if (passkey && offerPasskey) factors.push('passkey');
    if (factors.length === 0) {
      const enrolled = otherEnrolled || passkey;
      if (noFactor === 'allow' && !enrolled) return { challenge: await this.firstFactorOnly(name, origin, opts) };
      throw (
        pushRefusal ??
        (passkey
          ? new CountersignError(403, 'passkey_needs_browser', PASSKEY_NEEDS_BROWSER)
          : new CountersignError(422, 'no_second_factor', `'${name}' has no second factor enabled; ask an administrator to enable OTP or push`))
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
   * The first steps of every login: the first factor (when a password is given), the user's
   * record, whether the account may sign in, and what the group policy asks of it.
   */
  private async admit(user: string, password: string | null, opts: BeginOptions, known?: UserRecord | null) {
    let name = user;
    if (password !== null) {
      const verified = await this.firstFactor.check({ login: user, passwords: [password], source: opts.source ?? { front: 'api', address: '' } });
      if (!verified.ok) throw firstFactorError(verified);
      name = verified.name;
    }
    // A directory user the front vouches for (a NAS that checked the password) may not have
    // signed in here yet: the directory knows them, and their record is made now.
    // `known`: this user's record as the caller read it moments ago (RADIUS reads it with its
    // dedupe lease), used instead of reading it again when it is the record this login names.
    const given = known && known.name === name ? known : undefined;
    if (password === null && !given && !(await this.users.exists(name))) name = (await this.directory.lookup(name))?.name ?? name;
    const record = given ?? (await this.users.require(name));
    // A directory user the directory (or the last sync) says is gone or disabled logs in nowhere,
    // also where the front vouches for the first factor.
    refuseInactive(record);
    let secondFactor: 'required' | 'not-required' = 'required';
    let noFactor: 'deny' | 'allow' = 'deny';
    if (opts.policy !== null) {
      const decision = decide(groupsOf(record), mergePolicy(this.defaultPolicy, opts.policy));
      if (!decision.allowed) throw new CountersignError(403, 'not_allowed', FAILURE_WORDS.not_allowed);
      ({ secondFactor, noFactor } = decision);
    }
    if (opts.requireSecondFactor) [secondFactor, noFactor] = ['required', 'deny'];
    return { name, record, secondFactor, noFactor };
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
  async otpOnce(user: string, code: string, origin: Origin, policy?: AccessPolicy | null, known?: UserRecord | null): Promise<Challenge> {
    const opts: BeginOptions = { only: 'otp', policy };
    const { name, record, secondFactor } = await this.admit(user, null, opts, known);
    if (secondFactor === 'required' && record.otpEnabled && record.otpSecret) {
      // The common case in one step: the code is checked and spent in the store (one atomic
      // round trip), then the login is kept already decided, never pending (engine.decided).
      try {
        await this.otp.check(name, code, record);
      } catch (err) {
        const reason = err instanceof CountersignError ? err.code : 'error';
        let ended: Challenge | undefined;
        try {
          ended = this.engine.decided(name, ['otp'], origin, 'rejected', { method: 'otp', reason });
        } catch {
          // Stopping: the refusal stands without its record.
        }
        // Its audit event leaves in the same write as the login's record (a failure only).
        if (err instanceof CountersignError) this.emit('otpFailure', reason, { user: name, origin, challengeId: ended?.id, error: err });
        throw err;
      }
      return this.engine.decided(name, ['otp'], origin, 'approved', { method: 'otp' });
    }
    // Anything else (first factor only, no code enrolled: why not) as every login goes.
    const c = await this.begin(user, null, origin, opts);
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

  /**
   * A passkey answered for a pending login (after the password): it must be one of this
   * user's passkeys, verified with user verification. A refused passkey leaves the login
   * pending for another factor or another try.
   */
  async answerPasskey(id: string, ticket: string, response: AuthenticationResponseJSON): Promise<Challenge> {
    const c = await this.requirePending(id);
    if (!c.factors.includes('passkey') || !this.passkeys) {
      throw new CountersignError(403, 'passkey_not_offered', 'this login does not accept a passkey');
    }
    const { passkey } = await this.passkeys.verifyAuthentication(ticket, response, c.user);
    const r = await this.engine.approve(id, passkeyMethod('passkey', passkey.deviceType));
    if (r.challenge?.state !== 'approved') {
      const state = r.challenge?.state ?? 'expired';
      throw new CountersignError(409, `challenge_${state}`, `this login is already ${state}`, { state });
    }
    return r.challenge;
  }

  /**
   * A passwordless login: the passkey (verified by the caller, with user verification) is
   * both factors. The account must still be usable and, unless the front is gated
   * otherwise (policy null: the console), the client's group policy must let the user in.
   * A directory's user is looked up again first: no password was checked there, so the
   * directory's word on the account is asked now, not taken from the last sign-in.
   */
  async passwordless(user: string, deviceType: 'singleDevice' | 'multiDevice', origin: Origin, policy?: AccessPolicy | null): Promise<Challenge> {
    let record = await this.users.require(user);
    if (record.directory && record.directoryLogin) {
      const found = await this.directory.lookup(record.directoryLogin);
      if (found?.name !== user) throw new CountersignError(403, 'account_removed', 'This account no longer exists in the directory; contact your help desk');
      record = await this.users.require(user);
    }
    refuseInactive(record);
    if (policy !== null && !decide(groupsOf(record), mergePolicy(this.defaultPolicy, policy)).allowed) {
      throw new CountersignError(403, 'not_allowed', FAILURE_WORDS.not_allowed);
    }
    const c = await this.engine.open(user, ['passkey'], origin, {});
    const r = await this.engine.approve(c.id, passkeyMethod('passwordless', deviceType));
    if (r.challenge?.state !== 'approved') throw new CountersignError(409, 'challenge_expired', 'this login is already expired');
    return r.challenge;
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
        this.emit('otpFailure', err.code, { user: c.user, origin: c.origin, challengeId: c.id, error: err });
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

/** A directory user the directory (or the last sync) says is gone or disabled logs in nowhere. */
function refuseInactive(record: UserRecord): void {
  if (record.directoryState && record.directoryState !== 'active') {
    throw record.directoryState === 'removed'
      ? new CountersignError(403, 'account_removed', 'This account no longer exists in the directory; contact your help desk')
      : new CountersignError(403, 'account_disabled', FAILURE_WORDS.account_disabled);
  }
}
