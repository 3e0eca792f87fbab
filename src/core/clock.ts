/**
 * The one clock the engine reads. Deadlines, OTP time steps and lockouts all
 * go through it, so tests can move time by hand instead of waiting 150 s.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Calls fn once when now() reaches `at` (milliseconds since the epoch). */
  at(at: number, fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  at(at, fn) {
    // setTimeout caps at 2^31-1 ms; deadlines are far below that.
    const handle = setTimeout(fn, Math.max(0, at - Date.now()));
    handle.unref?.();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** A clock that only moves when told to; timers fire during advance(). */
export class ManualClock implements Clock {
  private current: number;
  private timers = new Set<{ at: number; fn: () => void }>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  at(at: number, fn: () => void): Timer {
    const entry = { at, fn };
    this.timers.add(entry);
    return { cancel: () => this.timers.delete(entry) };
  }

  advance(ms: number): void {
    this.current += ms;
    const due = [...this.timers].filter((t) => t.at <= this.current).sort((a, b) => a.at - b.at);
    for (const t of due) {
      this.timers.delete(t);
      t.fn();
    }
  }
}
