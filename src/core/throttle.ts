import { CountersignError } from './errors.js';
import type { Store } from './store.js';

export interface ThrottleRules {
  /** Failed first-factor guesses for one user from one source before that pair waits. */
  perSource: number;
  /** Failed guesses for one user from all sources before unknown sources wait. */
  perUser: number;
  windowMs: number;
  /** How long a source that once got this user in stays known for them. */
  knownMs: number;
}

export const DEFAULT_THROTTLE: ThrottleRules = { perSource: 10, perUser: 100, windowMs: 15 * 60_000, knownMs: 30 * 24 * 3600_000 };

const tooMany = () => new CountersignError(429, 'too_many_attempts', 'too many failed sign-ins for this account; wait a few minutes');

/**
 * Slows down password guessing against one user without letting a stranger lock that
 * user out. Failures count per (user, source) and per user; past the per-user limit only
 * sources the user has signed in from before may still try. A real user at their usual
 * workstation is never held up by someone else's guesses, and a guesser spread over many
 * addresses gets `perUser` tries per window, not one per address.
 */
export class FirstFactorThrottle {
  constructor(
    private store: Store,
    private scope: string,
    private rules: ThrottleRules = DEFAULT_THROTTLE,
  ) {}

  private keys(user: string, source: string) {
    return {
      pair: `ff-hold:${this.scope}:${user}|${source}`,
      user: `ff-hold:${this.scope}:${user}`,
      known: `ff-known:${this.scope}:${user}|${source}`,
    };
  }

  /** Throws 429 when this source must wait before trying this user again. */
  async check(user: string, source: string): Promise<void> {
    const k = this.keys(user, source);
    const [pair, all, known] = await Promise.all([this.store.kv.get(k.pair), this.store.kv.get(k.user), this.store.kv.get(k.known)]);
    if (pair || (all && !known)) throw tooMany();
  }

  async failed(user: string, source: string): Promise<void> {
    const k = this.keys(user, source);
    const { perSource, perUser, windowMs } = this.rules;
    const [pair, all] = await Promise.all([
      this.store.guards.hit(`ff-fail:${this.scope}:${user}|${source}`, windowMs),
      this.store.guards.hit(`ff-fail:${this.scope}:${user}`, windowMs),
    ]);
    await Promise.all([
      pair >= perSource ? this.store.kv.set(k.pair, '1', windowMs) : null,
      all >= perUser ? this.store.kv.set(k.user, '1', windowMs) : null,
    ]);
  }

  async succeeded(user: string, source: string): Promise<void> {
    await this.store.kv.set(this.keys(user, source).known, '1', this.rules.knownMs);
  }
}
