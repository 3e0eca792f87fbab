import type { Logger } from 'pino';
import type { Challenge } from './challenge.js';
import type { AuditEvent, Store } from './store.js';

/**
 * Audit events go to the log (always) and to the store (for the console and
 * the admin API). A store that cannot take the event must not change the
 * outcome of a login, so failures here are logged, not thrown.
 */
export class Audit {
  constructor(
    private store: Store,
    private log: Logger,
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
}
