import type { Request } from 'express';
import type { AppContext } from '../../context.js';
import type { AuditEvent } from '../../core/store.js';
import { callerOf, type Caller } from './auth.js';

/** The name the bearer token goes by in audit events (it has no user of its own). */
export const TOKEN_ACTOR = 'admin-token';

/**
 * Records an administrative change: who made it (the admin token, or the
 * console user and their role at the time), from where, and what — the
 * action, its target (`user`, `client`, `challengeId`) and details. The caller
 * is the one requireAdmin saw, unless given (console sign-in, which does not
 * pass through the admin API's gate).
 */
export function adminAudit(
  ctx: AppContext,
  req: Request,
  action: string,
  fields: Pick<AuditEvent, 'user' | 'client' | 'challengeId'> & { detail?: Record<string, unknown> } = {},
  caller: Caller | undefined = callerOf.get(req),
): void {
  const { detail, ...target } = fields;
  void ctx.audit.record({
    at: ctx.clock.now(),
    type: 'admin',
    actor: caller?.kind === 'console' ? caller.session.user : caller?.kind === 'token' ? TOKEN_ACTOR : 'unknown',
    ip: req.ip,
    ...target,
    detail: { action, ...(caller?.kind === 'console' ? { actorRole: caller.session.role } : {}), ...detail },
  });
}
