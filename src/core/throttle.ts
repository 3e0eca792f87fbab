import { CountersignError } from './errors.js';
import type { Store } from './store.js';

/** Where a sign-in comes from, as well as the front can tell (see FirstFactorSource in first-factor.ts). */
export interface ThrottleSource {
  /** The end user's address or place: client address, Calling-Station-Id, a trusted caller's `client`, a workstation. */
  address: string;
  /** The address is a caller that speaks for many users (a NAS without Calling-Station-Id, a relying party's server). */
  shared?: boolean;
}

export interface ThrottleRules {
  /** Failed passwords for one account from one source in the window before that source waits (or, known, is slowed). */
  perSource: number;
  /** Failed passwords for one account from all sources in the window before unknown sources wait. */
  perAccount: number;
  windowMs: number;
  /** How long a source that signed an account in stays known for it. */
  knownMs: number;
  /** Failed passwords from one address (all accounts) in a minute before it waits. */
  perAddressPerMinute: number;
  /** The same for an address that speaks for many users. */
  sharedPerMinute: number;
  /** A known source past `perSource` waits 1 s before each check, doubled per further failure, at most this. */
  maxDelayMs: number;
}

export const DEFAULT_THROTTLE: ThrottleRules = {
  perSource: 10,
  perAccount: 100,
  windowMs: 15 * 60_000,
  knownMs: 30 * 24 * 3600_000,
  perAddressPerMinute: 10,
  sharedPerMinute: 300,
  maxDelayMs: 8000,
};

/** What the throttle knows of one (account, source) before a check; read in one round trip. */
export interface ThrottleState {
  pairFailures: number;
  accountFailures: number;
  addressFailures: number;
  /** This source signed this account in within `knownMs`. */
  known: boolean;
}

/** What the throttle lets a check do: go ahead (after `delayMs`), or not at all. */
export type ThrottleVerdict = { go: true; delayMs: number; known: boolean } | { go: false; error: CountersignError };

const accountWaits = () => new CountersignError(429, 'too_many_attempts', 'too many failed sign-ins for this account; wait a few minutes');
const addressWaits = () => new CountersignError(429, 'too_many_attempts', 'too many failed sign-ins from this address; wait a minute');

/**
 * Slows password guessing without letting a stranger lock a user out. Failures count per
 * (account, source), per account across every front, and per source address. A source that
 * has signed the account in before (its "usual place") is never held, only slowed: past the
 * per-source limit each of its checks waits, growing to `maxDelayMs`, so the right password
 * still works there whatever strangers did. An unknown source waits out the window past the
 * per-source or per-account limit, and any address past its per-minute limit waits the minute.
 * The account is the resolved one (realm and case folded: `bob`, `BOB`, `CORP\bob` and
 * `bob@corp.example.org` share one budget), never the name as typed.
 */
export class FirstFactorThrottle {
  constructor(
    private store: Store,
    readonly rules: ThrottleRules = DEFAULT_THROTTLE,
  ) {}

  private keys(account: string, source: ThrottleSource) {
    return {
      pair: `ff:pair:${account}|${source.address}`,
      account: `ff:account:${account}`,
      address: `ff:address:${source.address}`,
      known: `ff-known:${account}|${source.address}`,
    };
  }

  /** Everything the verdict needs, issued together (one pipelined round trip on Redis). */
  async read(account: string, source: ThrottleSource): Promise<ThrottleState> {
    const k = this.keys(account, source);
    const [pair, all, address, known] = await Promise.all([
      this.store.guards.peek(k.pair),
      this.store.guards.peek(k.account),
      this.store.guards.peek(k.address),
      this.store.kv.get(k.known),
    ]);
    return { pairFailures: pair.count, accountFailures: all.count, addressFailures: address.count, known: known !== null };
  }

  verdict(s: ThrottleState, source: ThrottleSource): ThrottleVerdict {
    const { perSource, perAccount, perAddressPerMinute, sharedPerMinute, maxDelayMs } = this.rules;
    if (s.known) {
      const over = s.pairFailures - perSource;
      return { go: true, known: true, delayMs: over < 0 ? 0 : Math.min(maxDelayMs, 1000 * 2 ** Math.min(over, 20)) };
    }
    if (s.addressFailures >= (source.shared ? sharedPerMinute : perAddressPerMinute)) return { go: false, error: addressWaits() };
    if (s.pairFailures >= perSource || s.accountFailures >= perAccount) return { go: false, error: accountWaits() };
    return { go: true, known: false, delayMs: 0 };
  }

  /** A wrong password (however many readings of it were tried): one failure each way. */
  async failed(account: string, source: ThrottleSource): Promise<void> {
    const k = this.keys(account, source);
    await Promise.all([
      this.store.guards.hit(k.pair, this.rules.windowMs),
      this.store.guards.hit(k.account, this.rules.windowMs),
      this.store.guards.hit(k.address, 60_000),
    ]);
  }

  /** The password was right here: this source is the account's usual place, and its own slate is clean. */
  async succeeded(account: string, source: ThrottleSource): Promise<void> {
    const k = this.keys(account, source);
    await Promise.all([this.store.kv.set(k.known, '1', this.rules.knownMs), this.store.guards.reset(k.pair)]);
  }
}
