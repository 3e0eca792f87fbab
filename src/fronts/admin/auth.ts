import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { CountersignError } from '../../core/errors.js';
import type { AppContext } from '../../context.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token check for the admin API. Hashing both sides first makes the
 * comparison constant-time whatever their lengths; repeated failures from one
 * address are slowed down with 429s.
 */
export function requireAdminToken(ctx: AppContext, token: string): RequestHandler {
  const expected = digest(token);
  return async (req, _res, next) => {
    const header = req.get('authorization') ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (m && timingSafeEqual(digest(m[1]!.trim()), expected)) return next();
    const failures = await ctx.store.guards.hit(`admin-auth:${req.ip}`, 60_000);
    if (failures > 20) throw new CountersignError(429, 'too_many_attempts', 'too many failed admin sign-ins; wait a minute');
    throw new CountersignError(401, 'unauthorized', 'a valid admin bearer token is required (Authorization: Bearer …)');
  };
}
