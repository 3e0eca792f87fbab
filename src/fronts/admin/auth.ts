import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { CountersignError } from '../../core/errors.js';
import type { AppContext } from '../../context.js';
import { readCookie, SESSION_COOKIE, type BrowserSession, type BrowserSessions } from '../web/sessions.js';

const digest = (s: string) => createHash('sha256').update(s).digest();
const READS = new Set(['GET', 'HEAD']);

export type Caller = { kind: 'token' } | { kind: 'console'; session: BrowserSession };

/** Who is calling the admin API: the bearer token (full rights) or a console session. */
export const callerOf = new WeakMap<Request, Caller>();

/**
 * Whether the caller may act on a pending login (approve, reject, answer it,
 * or hand its id to /validate/check): the token and console admins, not the
 * helpdesk, who may only look.
 */
export const mayDecide = (req: Request): boolean => {
  const c = callerOf.get(req);
  return c?.kind === 'token' || (c?.kind === 'console' && c.session.role === 'admin');
};

/**
 * The admin API's gate. A bearer token is compared in constant time (both
 * sides hashed first, whatever their lengths); a console session must send
 * its CSRF token on every change, and the helpdesk role may only look.
 * Repeated failures from one address are slowed down with 429s.
 */
export function requireAdmin(ctx: AppContext, token: string, sessions: BrowserSessions): RequestHandler {
  const expected = digest(token);
  return async (req, res, next) => {
    const m = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
    if (m && timingSafeEqual(digest(m[1]!.trim()), expected)) {
      callerOf.set(req, { kind: 'token' });
      return next();
    }
    if (!m && readCookie(req, SESSION_COOKIE)) {
      const session = await sessions.get(req, res, ctx.clock.now());
      if (!session) throw new CountersignError(401, 'session_expired', 'your console session has expired; sign in again');
      if (!READS.has(req.method)) {
        sessions.checkCsrf(req, session);
        if (session.role !== 'admin') {
          throw new CountersignError(403, 'read_only', 'the helpdesk role can look but not change anything; ask an administrator');
        }
      }
      callerOf.set(req, { kind: 'console', session });
      return next();
    }
    const failures = await ctx.store.guards.hit(`admin-auth:${req.ip}`, 60_000);
    if (failures > 20) throw new CountersignError(429, 'too_many_attempts', 'too many failed admin sign-ins; wait a minute');
    throw new CountersignError(401, 'unauthorized', 'a valid admin bearer token is required (Authorization: Bearer …)');
  };
}
