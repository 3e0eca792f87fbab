import { createHash } from 'node:crypto';
import type { Request } from 'express';
import { z } from 'zod';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError, notFound } from '../../core/errors.js';
import type { ApiBuilder } from '../../http/openapi.js';
import { userName } from '../../http/validate.js';
import { waitUpTo } from '../../http/long-poll.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from './audit.js';
import { mayDecide } from './auth.js';

const idParam = (id: unknown) => z.string().regex(/^[A-Za-z0-9_-]{16,64}$/).safeParse(id).data;

/**
 * Challenges over the admin API: a generic way in for integrations that have
 * no front of their own yet, and the help desk's override.
 */
export function challengeRoutes(api: ApiBuilder, ctx: AppContext): void {
  /**
   * A challenge as this caller may see it. Its id is a privacyIDEA transaction
   * id (/validate/check answers it with an OTP) and its number is what the
   * phone asks for, so the helpdesk, who may only look, gets neither.
   */
  const view = (req: Request, c: Challenge | Omit<Challenge, 'number'>) => {
    const v = { ...c, secondsLeft: c.state === 'pending' ? Math.max(0, Math.ceil((c.deadline - ctx.clock.now()) / 1000)) : 0 };
    if (mayDecide(req)) return v;
    const { id: _id, number: _number, ...rest } = v as typeof v & { number?: string };
    return rest;
  };
  /** Keys a row of the live view across polls without giving away the id. */
  const ref = (id: string) => createHash('sha256').update(`challenge-ref:${id}`).digest('base64url').slice(0, 16);
  const find = async (raw: unknown) => {
    const id = idParam(raw);
    const c = id ? await ctx.engine.get(id) : null;
    if (!c) throw notFound('challenge', String(raw));
    return c;
  };

  api.route({
    method: 'post',
    path: '/challenges',
    summary: 'Open a challenge for a user (checking the password first when one is given)',
    body: z
      .object({
        user: userName,
        password: z.string().max(1024).optional(),
        origin: z
          .object({ client: z.string().max(200).optional(), ip: z.string().max(64).optional(), userAgent: z.string().max(500).optional() })
          .strict()
          .optional(),
        deadlineSeconds: z.number().int().min(5).max(3600).optional(),
      })
      .strict(),
    errors: { 401: 'wrong user name or password', 404: 'no such user', 422: 'the user has no second factor' },
    handler: async ({ body, req, res }) => {
      const c = await ctx.login.begin(
        body.user,
        body.password ?? null,
        { front: 'api', ip: req.ip, ...body.origin },
        { deadlineMs: body.deadlineSeconds ? body.deadlineSeconds * 1000 : undefined },
      );
      adminAudit(ctx, req, 'challenge.open', {
        user: c.user,
        detail: { challenge: c.id, displayCode: c.displayCode, factors: c.factors, client: body.origin?.client, passwordChecked: body.password !== undefined },
      });
      res.status(201);
      return view(req, c);
    },
  });

  api.route({
    method: 'get',
    path: '/challenges',
    summary: 'Pending logins, soonest deadline first (for the console’s live view)',
    query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }),
    handler: async ({ req, query }) => {
      const ids = await ctx.store.challenges.due(Number.MAX_SAFE_INTEGER, query.limit);
      const all = await Promise.all(ids.map((id) => ctx.store.challenges.get(id)));
      const now = ctx.clock.now();
      const pending = all.filter((c): c is Challenge => c !== null && c.state === 'pending' && c.deadline > now);
      return { challenges: pending.map(({ number: _n, ...c }) => ({ ref: ref(c.id), ...view(req, c) })) };
    },
  });

  api.route({
    method: 'get',
    path: '/challenges/:id',
    summary: 'The state of a challenge',
    errors: { 404: 'unknown or forgotten challenge' },
    handler: async ({ req }) => view(req, await find(req.params.id)),
  });

  api.route({
    method: 'get',
    path: '/challenges/:id/wait',
    summary: 'Long-poll: answers as soon as the challenge is decided, or after `timeout` seconds with its current state',
    query: z.object({ timeout: z.coerce.number().min(0).max(60).default(25) }),
    errors: { 404: 'unknown or forgotten challenge' },
    handler: async ({ req, query }) => {
      return view(req, await waitUpTo(ctx.engine, await find(req.params.id), query.timeout, req));
    },
  });

  api.route({
    method: 'post',
    path: '/challenges/:id/otp',
    summary: 'Answer a pending challenge with a one-time password',
    body: z.object({ code: z.string().min(1).max(16) }).strict(),
    errors: {
      401: 'wrong or reused code (the challenge stays pending)',
      404: 'unknown challenge',
      409: 'the challenge is no longer pending',
      423: 'OTP locked (the challenge is rejected)',
    },
    handler: async ({ req, body }) => {
      const c = await find(req.params.id);
      return view(req, await ctx.login.answerOtp(c.id, body.code));
    },
  });

  for (const action of ['approve', 'reject', 'cancel'] as const) {
    api.route({
      method: 'post',
      path: `/challenges/:id/${action}`,
      summary: `${action[0]!.toUpperCase()}${action.slice(1)} a pending challenge by administrator decision`,
      body: z.object({ reason: z.string().max(200).optional() }).strict(),
      errors: { 404: 'unknown challenge', 409: 'the challenge is no longer pending' },
      handler: async ({ req, body }) => {
        const c = await ctx.login.requirePending(String(idParam(req.params.id) ?? ''));
        const reason = body.reason ?? `by administrator`;
        const r =
          action === 'approve'
            ? await ctx.engine.approve(c.id, 'admin')
            : action === 'reject'
              ? await ctx.engine.reject(c.id, 'admin', reason)
              : await ctx.engine.cancel(c.id, reason);
        // Decided elsewhere between the read above and the transition (another instance, the
        // phone, the deadline): this call changed nothing, and says so as a late one would.
        if (!r.changed) {
          const state = r.challenge?.state ?? 'unknown';
          throw new CountersignError(409, `challenge_${state}`, `this login is already ${state}`, { state });
        }
        adminAudit(ctx, req, `challenge.${action}`, { user: c.user, challengeId: c.id, detail: body.reason ? { reason: body.reason } : undefined });
        return view(req, r.challenge!);
      },
    });
  }
}
