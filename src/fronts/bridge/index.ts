import express, { type Express, type Request } from 'express';
import { z } from 'zod';
import type { Challenge } from '../../core/challenge.js';
import { notFound } from '../../core/errors.js';
import { OfflineOtp } from '../../core/offline.js';
import { ApiBuilder } from '../../http/openapi.js';
import { userName } from '../../http/validate.js';
import { waitUpTo } from '../../http/long-poll.js';
import type { AppContext } from '../../context.js';
import type { BridgeCredential, BridgeCredentials } from './credentials.js';
import { mountPrivacyIdeaApi } from './privacyidea.js';

export const BRIDGE_BASE = '/bridge/v1';

const workstation = z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/, 'a workstation name is letters, digits, . _ -');

/**
 * The Windows logon bridge: what a credential provider calls at logon,
 * unlock or UAC. Every call carries a bridge credential; audit events name
 * the workstation. The privacyIDEA-compatible endpoints live beside it.
 */
export function mountBridgeApi(app: Express, ctx: AppContext, credentials: BridgeCredentials): void {
  const router = express.Router();
  const offline = new OfflineOtp(ctx.store, ctx.box);
  const api = new ApiBuilder(router, BRIDGE_BASE, {
    title: 'Countersign Windows logon bridge',
    version: '1',
    description:
      'For credential providers. Every call needs `Authorization: Bearer <bridge credential>` (countersign bridge-credential add). ' +
      'Start a login, then long-poll its status (approval arrives within milliseconds) or submit an OTP; ask for offline HOTP batches.',
  });
  app.get(`${BRIDGE_BASE}/openapi.json`, (_req, res) => {
    res.json(api.openapi());
  });
  const who = new WeakMap<Request, BridgeCredential>();
  router.use(async (req, _res, next) => {
    who.set(req, await credentials.authenticate(req.get('authorization')));
    next();
  });
  router.use(express.json({ limit: '16kb' }));

  const view = (c: Challenge) => ({
    challengeId: c.id,
    user: c.user,
    displayCode: c.displayCode,
    number: c.number,
    factors: c.factors,
    status: c.state,
    deadline: c.deadline,
    secondsLeft: c.state === 'pending' ? Math.max(0, Math.ceil((c.deadline - ctx.clock.now()) / 1000)) : 0,
    ...(c.reason ? { reason: c.reason } : {}),
  });
  /** Logins are looked up by id and must have come through the bridge. */
  const find = async (id: string) => {
    const c = /^[A-Za-z0-9_-]{16,64}$/.test(id) ? await ctx.engine.get(id) : null;
    if (!c || c.origin.front !== 'bridge') throw notFound('login', id);
    return c;
  };

  api.route({
    method: 'post',
    path: '/logins',
    summary: 'Start a second factor for a Windows logon, unlock or UAC prompt',
    body: z
      .object({
        user: userName,
        domain: z.string().max(64).optional(),
        workstation,
        password: z.string().max(1024).optional().describe('checked against the directory when given'),
        scenario: z.enum(['logon', 'unlock', 'uac']).default('logon'),
        ip: z.string().max(64).optional(),
      })
      .strict(),
    errors: { 401: 'bad credential, or wrong user name or password', 404: 'unknown user', 422: 'no second factor', 423: 'locked' },
    handler: async ({ req, body, res }) => {
      const c = await ctx.login.begin(body.user, body.password ?? null, {
        front: 'bridge',
        client: body.workstation,
        ip: body.ip ?? req.ip,
        userAgent: `${body.scenario}${body.domain ? ` ${body.domain}` : ''} via ${who.get(req)!.name}`,
      });
      res.status(201);
      return view(c);
    },
  });

  api.route({
    method: 'get',
    path: '/logins/:id',
    summary: 'The status of a login; with wait=S, answers as soon as it is decided or after S seconds',
    query: z.object({ wait: z.coerce.number().min(0).max(60).default(0) }),
    errors: { 404: 'unknown login' },
    handler: async ({ req, query }) => {
      return view(await waitUpTo(ctx.engine, await find(String(req.params.id)), query.wait, req));
    },
  });

  api.route({
    method: 'post',
    path: '/logins/:id/otp',
    summary: 'Answer a login with a one-time password',
    body: z.object({ code: z.string().regex(/^\d{6,8}$/, 'a code is 6 to 8 digits') }).strict(),
    errors: { 401: 'wrong or reused code', 404: 'unknown login', 409: 'already decided', 423: 'locked' },
    handler: async ({ req, body }) => view(await ctx.login.answerOtp((await find(String(req.params.id))).id, body.code)),
  });

  api.route({
    method: 'post',
    path: '/logins/:id/cancel',
    summary: 'Cancel a login (the user pressed Cancel)',
    errors: { 404: 'unknown login' },
    handler: async ({ req }) => {
      const c = await find(String(req.params.id));
      return view((await ctx.engine.cancel(c.id, 'cancelled at the workstation')).challenge ?? c);
    },
  });

  api.route({
    method: 'post',
    path: '/offline',
    summary: 'Future HOTP values of a user as salted scrypt hashes, for logon without a network (default 20)',
    body: z.object({ user: userName, workstation, count: z.number().int().min(1).max(100).default(20) }).strict(),
    errors: { 404: 'unknown user', 409: 'the user has no HOTP token' },
    handler: async ({ req, body }) => {
      const batch = await offline.batch(body.user, body.count);
      void ctx.audit.record({
        at: ctx.clock.now(),
        type: 'offline',
        user: body.user,
        front: 'bridge',
        client: body.workstation,
        ip: req.ip,
        detail: { action: 'offline.batch', count: body.count, from: batch.values[0]?.counter, credential: who.get(req)!.name },
      });
      return batch;
    },
  });

  api.route({
    method: 'post',
    path: '/offline/used',
    summary: 'Report the HOTP counters used offline: they, and all before them, stop working',
    body: z.object({ user: userName, workstation, counters: z.array(z.number().int().min(0)).max(100) }).strict(),
    errors: { 404: 'unknown user' },
    handler: async ({ req, body }) => {
      await offline.used(body.user, body.counters);
      void ctx.audit.record({
        at: ctx.clock.now(),
        type: 'offline',
        user: body.user,
        front: 'bridge',
        client: body.workstation,
        ip: req.ip,
        method: 'otp',
        outcome: 'approved',
        detail: { action: 'offline.used', counters: body.counters },
      });
      return { ok: true };
    },
  });

  app.use(BRIDGE_BASE, router);
  mountPrivacyIdeaApi(app, ctx, credentials);
}

