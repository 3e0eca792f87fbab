import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { CheckGate } from './check-gate.js';
import type { Directories, FirstFactorResult } from './directories.js';
import { CountersignError } from './errors.js';
import { FirstFactorThrottle, type ThrottleSource, type ThrottleState } from './throttle.js';

/**
 * Where a sign-in comes from. Each front says it once, the same way everywhere:
 * - HTTP (OpenID Connect, console, portal): the client address (behind `http.trustProxy`, the
 *   address the proxy reports);
 * - RADIUS: Calling-Station-Id (the user's address on VPN gear, a station on Wi-Fi), else the
 *   NAS itself, which then speaks for many users (`shared`);
 * - the bridge: the workstation, under the credential that vouches for it;
 * - privacyIDEA's endpoints: the `client` address a trusted caller passes, else the caller (a
 *   trusted caller without `client` speaks for many users).
 */
export interface FirstFactorSource extends ThrottleSource {
  /** The front asking, for logs: oidc, console, account, radius, bridge, privacyidea, api. */
  front: string;
}

/** One sign-in's password step. */
export interface FirstFactorAttempt {
  /** The login as typed (realm and case as the user gave them). */
  login: string;
  /**
   * The readings of what was typed, tried in order until the directory accepts one (RADIUS
   * append: "password,code", trailing digits, the whole; privacyIDEA: password then code, or
   * the whole): however many are tried, a wrong password counts as one failure.
   */
  passwords: string[];
  source: FirstFactorSource;
  /** The throttle's state, read early by a front that can fold the read into one of its own round trips (RADIUS). */
  early?: Promise<ThrottleState>;
}

/** The password step's answer: which reading the directory accepted, or why none. */
export type FirstFactorOutcome = (FirstFactorResult & { ok: true; reading: number }) | (FirstFactorResult & { ok: false });

/** A check the front makes itself (an upstream RADIUS server), under the same throttle. */
export type OwnCheck<T> = () => Promise<{ result: T; outcome: CheckOutcome }>;
export type CheckOutcome = 'accepted' | 'invalid' | 'other';

/**
 * The first factor, as one step every front calls: resolve the account (realm and case
 * folded), ask the throttle (one budget per account across fronts, one per account and
 * source, one per source address; a source that signed the account in before is slowed,
 * never held), then check the password through a bounded gate (a few checks at once, a
 * couple per address, the usual place first), and count the outcome once.
 */
export class FirstFactor extends EventEmitter<{ outcome: [front: string, outcome: CheckOutcome | 'throttled' | 'busy'] }> {
  /** Checks for one (account, source) that the throttle slows, chained in this process so the delay is a rate. */
  private lanes = new Map<string, { tail: Promise<void>; waiting: number }>();

  constructor(
    private directories: Directories,
    readonly throttle: FirstFactorThrottle,
    readonly gate: CheckGate,
    private log: Logger,
  ) {
    super();
  }

  /** The throttle's state for a login and source, started early (RADIUS issues it with its dedupe lease). */
  prefetch(login: string, source: ThrottleSource): Promise<ThrottleState> | undefined {
    const account = this.directories.accountKey(login);
    // Only when the account is known without asking a directory: the read must leave now.
    if (typeof account !== 'string') return undefined;
    return this.throttle.read(account, source);
  }

  /** Checks a password (or the readings of one) with the directories. */
  async check(attempt: FirstFactorAttempt): Promise<FirstFactorOutcome> {
    const { login, passwords, source } = attempt;
    // One slot of the gate for all the readings of one attempt: it is let in, checked and
    // counted whole, never refused halfway with a wrong reading already tried and not counted.
    return this.guarded<FirstFactorOutcome>(login, source, attempt.early, (known) =>
      this.gate.run(source.address, { known, shared: source.shared }, async () => {
        let last: FirstFactorOutcome | undefined;
        for (const [reading, password] of passwords.entries()) {
          const r = await this.directories.verify(login, password);
          if (r.ok) return { result: { ...r, reading }, outcome: 'accepted' as const };
          last = r;
          if (r.reason === 'invalid') continue;
          // The directory's word ends the search. A lock is said whatever the password (a failure
          // like any other); unreachable proves nothing either way; expired, disabled and the like
          // come only after the right password.
          return { result: r, outcome: r.reason === 'account_locked' ? ('invalid' as const) : r.reason === 'unavailable' ? ('other' as const) : ('accepted' as const) };
        }
        return { result: last ?? { ok: false, reason: 'invalid', message: 'Wrong user name or password' }, outcome: 'invalid' as const };
      }),
    );
  }

  /**
   * The throttle around a check the front makes itself (an upstream RADIUS server checks the
   * password): `accepted` and `invalid` count as for the directories, `other` (the upstream did
   * not answer) counts neither way. Throws 429 when this source must wait.
   */
  async guarded<T>(login: string, source: FirstFactorSource, early: Promise<ThrottleState> | undefined, check: (known: boolean) => ReturnType<OwnCheck<T>>): Promise<T> {
    const account = await this.directories.accountKey(login);
    const state = await (early ?? this.throttle.read(account, source));
    const verdict = this.throttle.verdict(state, source);
    if (!verdict.go) {
      this.emit('outcome', source.front, 'throttled');
      throw verdict.error;
    }
    const run = async () => {
      const { result, outcome } = await check(verdict.known);
      this.emit('outcome', source.front, outcome);
      // The answer does not wait for the bookkeeping's round trip; a lost write only makes the throttle milder.
      const book = outcome === 'invalid' ? this.throttle.failed(account, source) : outcome === 'accepted' ? this.throttle.succeeded(account, source) : null;
      book?.catch((err: unknown) => this.log.warn({ err, front: source.front }, 'first factor: the throttle could not record an outcome'));
      return result;
    };
    try {
      return await (verdict.delayMs > 0 ? this.slowed(`${account}|${source.address}`, verdict.delayMs, run) : run());
    } catch (err) {
      // The gate or the slowed line said no: nothing was checked.
      const refused = doorRefusal(err);
      if (refused) this.emit('outcome', source.front, refused);
      throw err;
    }
  }

  /**
   * A known source past its failures: its checks go one after another, each `delayMs` after
   * the last, so the delay limits the rate whatever the concurrency; a short line, then 429.
   */
  private async slowed<T>(pair: string, delayMs: number, run: () => Promise<T>): Promise<T> {
    let lane = this.lanes.get(pair);
    if (!lane) this.lanes.set(pair, (lane = { tail: Promise.resolve(), waiting: 0 }));
    if (lane.waiting >= 8) throw new CountersignError(429, 'too_many_attempts', 'too many sign-ins for this account from here at once; wait a moment');
    lane.waiting++;
    const turn = lane.tail.then(() => new Promise<void>((r) => setTimeout(r, delayMs)));
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    lane.tail = turn.then(() => finished);
    try {
      await turn;
      return await run();
    } finally {
      done();
      if (--lane.waiting === 0 && this.lanes.get(pair) === lane) this.lanes.delete(pair);
    }
  }
}

/**
 * The step's own refusals, as a front tells them apart from other errors: a source that must
 * wait (429: the throttle, a source's share of the gate, a slowed line that is full), or a gate
 * whose line is full (503 busy). Null for anything else.
 */
export function doorRefusal(err: unknown): 'throttled' | 'busy' | null {
  if (!(err instanceof CountersignError)) return null;
  return err.status === 429 ? 'throttled' : err.code === 'busy' ? 'busy' : null;
}

/** Such a refusal as a sentence a person reads (a sign-in page, a Reply-Message). */
export const refusalSentence = (err: CountersignError) => `${err.message[0]!.toUpperCase()}${err.message.slice(1)}`;
