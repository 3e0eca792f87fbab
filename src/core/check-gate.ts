import { CountersignError } from './errors.js';

export interface CheckGateLimits {
  /** Password checks running at once in this process (scrypt runs on libuv's four threads). */
  concurrent: number;
  /** Checks waiting for a slot before more are refused at once. */
  queued: number;
  /** Checks one source may have running or waiting; a source that speaks for many users gets `sharedPerSource`. */
  perSource: number;
  sharedPerSource: number;
}

export const DEFAULT_CHECK_GATE: CheckGateLimits = { concurrent: 4, queued: 256, perSource: 2, sharedPerSource: 128 };

const busy = () => new CountersignError(503, 'busy', 'the sign-in service is busy; try again in a moment');
const sourceBusy = () => new CountersignError(429, 'too_many_attempts', 'too many sign-ins from this address at once; wait a moment');

interface Waiter {
  start: () => void;
  source: string;
}

/**
 * Bounds the password checks one process runs: a few at once, a short line behind them, and a
 * couple per source address. A password check costs a full scrypt (hundreds of milliseconds of
 * CPU) or a directory bind, and an unknown user costs the same as a known one, so without a
 * bound one address sending many sign-ins at once stalls every login. Over the bound the answer
 * is immediate (429 for the source, 503 when the line is full), never a wait behind a flood.
 * A user signing in from a source that signed them in before goes to the front of the line and
 * is not held by the per-source bound or a full line: an anonymous flood cannot delay them by
 * more than the checks already running.
 */
export class CheckGate {
  private running = 0;
  private line: Waiter[] = [];
  private priority: Waiter[] = [];
  /** Checks running or waiting, per source. */
  private perSource = new Map<string, number>();

  constructor(private limits: CheckGateLimits = DEFAULT_CHECK_GATE) {}

  /** How many checks run and wait now (metrics, tests). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.line.length + this.priority.length };
  }

  async run<T>(source: string, opts: { known: boolean; shared?: boolean }, check: () => Promise<T>): Promise<T> {
    const held = this.perSource.get(source) ?? 0;
    if (!opts.known && held >= (opts.shared ? this.limits.sharedPerSource : this.limits.perSource)) throw sourceBusy();
    if (!opts.known && this.running >= this.limits.concurrent && this.line.length >= this.limits.queued) throw busy();
    this.perSource.set(source, held + 1);
    try {
      if (this.running >= this.limits.concurrent) {
        // A slot is handed over by the check that ends (release), so nobody overtakes the line.
        await new Promise<void>((start) => (opts.known ? this.priority : this.line).push({ start, source }));
      } else this.running++;
      try {
        return await check();
      } finally {
        this.release();
      }
    } finally {
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left <= 0) this.perSource.delete(source);
      else this.perSource.set(source, left);
    }
  }

  private release(): void {
    const next = this.priority.shift() ?? this.line.shift();
    // The slot passes straight to the next check: `running` stays as it is.
    if (next) next.start();
    else this.running--;
  }
}
