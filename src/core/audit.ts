import type { Logger } from 'pino';
import type { Challenge, Origin } from './challenge.js';
import type { Clock } from './clock.js';
import type { CountersignError } from './errors.js';
import type { AuditEvent, Store } from './store.js';

/** A code typed for a login and refused: whose, from where, for which login, and why. */
export interface OtpFailure {
  user: string;
  origin: Origin;
  /** The login it was typed for, when one was opened. */
  challengeId?: string;
  error: CountersignError;
  /** Which kind of code: a one-time password (default) or a recovery code. */
  method?: 'otp' | 'recovery';
}

/**
 * Audit events go to the log (always) and to the store (for the console and
 * the admin API). A store that cannot take the event must not change the
 * outcome of a login, so failures here are logged, not thrown.
 */
export class Audit {
  constructor(
    private store: Store,
    private log: Logger,
    private clock: Clock,
  ) {}

  async record(event: AuditEvent): Promise<void> {
    this.log.info({ audit: event }, `audit ${event.type}${event.outcome ? ` ${event.outcome}` : ''}`);
    try {
      await this.store.audit.append(event);
    } catch (err) {
      this.log.error({ err, audit: event }, 'could not store audit event');
    }
  }

  /** The one event every login produces, written when its challenge resolves. */
  login(c: Challenge): Promise<void> {
    return this.record({
      at: c.resolvedAt ?? c.createdAt,
      type: 'login',
      user: c.user,
      front: c.origin.front,
      client: c.origin.client,
      ip: c.origin.ip,
      method: c.method,
      outcome: c.state,
      durationMs: (c.resolvedAt ?? c.createdAt) - c.createdAt,
      challengeId: c.id,
      // The ID the login screen showed: the user's own history (device API) lists it.
      detail: { displayCode: c.displayCode, ...(c.reason ? { reason: c.reason } : {}) },
    });
  }

  /**
   * A wrong, reused or locked-out code typed at a login: an event of the user, so that
   * `audit --user` shows someone guessing at their codes. The code itself is never kept.
   * A store that could not be asked (5xx) is no refusal of the code and leaves no event.
   */
  async otpFailure(f: OtpFailure): Promise<void> {
    if (f.error.status >= 500) return;
    const { attemptsLeft, lockedUntil } = f.error.details ?? {};
    await this.record({
      at: this.clock.now(),
      type: 'otp',
      user: f.user,
      front: f.origin.front,
      ...(f.origin.client !== undefined ? { client: f.origin.client } : {}),
      ...(f.origin.ip !== undefined ? { ip: f.origin.ip } : {}),
      method: f.method ?? 'otp',
      outcome: f.error.code,
      ...(f.challengeId ? { challengeId: f.challengeId } : {}),
      detail: {
        ...(f.origin.via ? { via: f.origin.via } : {}),
        ...(attemptsLeft !== undefined ? { attemptsLeft } : {}),
        ...(lockedUntil !== undefined ? { lockedUntil } : {}),
      },
    });
  }
}
