import express, { type Express, type Request } from 'express';
import { z } from 'zod';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError, notFound } from '../../core/errors.js';
import { OfflineOtp } from '../../core/offline.js';
import { ApiBuilder } from '../../http/openapi.js';
import { userName } from '../../http/validate.js';
import { waitUpTo } from '../../http/long-poll.js';
import type { AppContext } from '../../context.js';
import type { BridgeCredential, BridgeCredentials } from './credentials.js';
import { mountPrivacyIdeaApi } from './privacyidea.js';

export const BRIDGE_BASE = '/bridge/v1';
/** How long after an approved logon its workstation may fetch an offline batch. */
const OFFLINE_AFTER_LOGIN_MS = 5 * 60 * 1000;
const OFFLINE_BATCHES_PER_HOUR = 5;

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
      'A credential speaks only for the workstations it is bound to, and sees only the logins it opened. ' +
      'Start a login, then long-poll its status (approval arrives within milliseconds) or submit an OTP; after an approved logon, ask for an offline HOTP batch.',
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
  /** Logins are looked up by id; only the credential that opened one may see or touch it. */
  const find = async (req: Request) => {
    const id = String(req.params.id);
    const c = /^[A-Za-z0-9_-]{16,64}$/.test(id) ? await ctx.engine.get(id) : null;
    if (!c || c.origin.front !== 'bridge' || c.origin.via !== who.get(req)!.name) throw notFound('login', id);
    return c;
  };
  /** Administrative calls of a credential (offline batches) are audited as such, naming it. */
  const adminAudit = (req: Request, action: string, user: string, workstation: string, detail: Record<string, unknown>) =>
    void ctx.audit.record({
      at: ctx.clock.now(),
      type: 'admin',
      actor: `bridge-credential:${who.get(req)!.name}`,
      user,
      front: 'bridge',
      client: workstation,
      ip: req.ip,
      detail: { action, ...detail },
    });

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
    errors: {
      401: 'bad credential, or wrong user name or password',
      403: 'the credential is not bound to this workstation',
      404: 'unknown user',
      422: 'no second factor',
      423: 'locked',
    },
    handler: async ({ req, body, res }) => {
      const cred = who.get(req)!;
      credentials.requireWorkstation(cred, body.workstation);
      const c = await ctx.login.begin(body.user, body.password ?? null, {
        front: 'bridge',
        client: body.workstation,
        ip: body.ip ?? req.ip,
        userAgent: `${body.scenario}${body.domain ? ` ${body.domain}` : ''} via ${cred.name}`,
        via: cred.name,
        // The workstation is where the user sits: the first-factor throttle's source, under its credential.
      }, { policy: cred.policy, source: { front: 'bridge', address: `${cred.name}/${body.workstation.toLowerCase()}` } });
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
      return view(await waitUpTo(ctx.engine, await find(req), query.wait, req));
    },
  });

  api.route({
    method: 'post',
    path: '/logins/:id/otp',
    summary: 'Answer a login with a one-time password',
    body: z.object({ code: z.string().regex(/^\d{6,8}$/, 'a code is 6 to 8 digits') }).strict(),
    errors: { 401: 'wrong or reused code', 404: 'unknown login', 409: 'already decided', 423: 'locked' },
    handler: async ({ req, body }) => view(await ctx.login.answerOtp((await find(req)).id, body.code)),
  });

  api.route({
    method: 'post',
    path: '/logins/:id/cancel',
    summary: 'Cancel a login (the user pressed Cancel)',
    errors: { 404: 'unknown login' },
    handler: async ({ req }) => {
      const c = await find(req);
      return view((await ctx.engine.cancel(c.id, 'cancelled at the workstation')).challenge ?? c);
    },
  });

  api.route({
    method: 'post',
    path: '/offline',
    summary:
      'After an approved online logon: future HOTP values of that user as salted scrypt hashes, for logon without a network (default 20)',
    body: z
      .object({
        user: userName,
        workstation,
        loginId: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/).describe('the approved bridge login of this user at this workstation'),
        count: z.number().int().min(1).max(100).default(20),
      })
      .strict(),
    errors: {
      403: 'not bound to this workstation, or no approved logon of this user here',
      404: 'unknown user',
      409: 'the user has no HOTP token',
      429: 'too many batches for this user',
    },
    handler: async ({ req, body }) => {
      const cred = who.get(req)!;
      credentials.requireWorkstation(cred, body.workstation);
      // Offline values are the user's future codes: only a workstation the user has just
      // logged on to, online and with a second factor, gets them, once per logon.
      const login = await ctx.engine.get(body.loginId);
      const fresh = login && login.resolvedAt !== undefined && ctx.clock.now() - login.resolvedAt < OFFLINE_AFTER_LOGIN_MS;
      if (
        !login ||
        login.state !== 'approved' ||
        !fresh ||
        login.user !== body.user ||
        login.origin.front !== 'bridge' ||
        login.origin.via !== cred.name ||
        login.origin.client?.toLowerCase() !== body.workstation.toLowerCase() ||
        !(await ctx.store.guards.claimOnce(`offline-login:${login.id}`, OFFLINE_AFTER_LOGIN_MS * 2))
      ) {
        throw new CountersignError(403, 'no_approved_logon', 'offline values are handed out once, right after an approved logon of this user at this workstation');
      }
      if ((await ctx.store.guards.hit(`offline-batches:${body.user}`, 3600_000)) > OFFLINE_BATCHES_PER_HOUR) {
        throw new CountersignError(429, 'too_many_batches', `at most ${OFFLINE_BATCHES_PER_HOUR} offline batches per user and hour`);
      }
      const batch = await offline.batch(body.user, body.count, { workstation: body.workstation, credential: cred.name, at: ctx.clock.now() });
      adminAudit(req, 'offline.batch', body.user, body.workstation, { count: body.count, from: batch.values[0]?.counter, loginId: login.id });
      return batch;
    },
  });

  api.route({
    method: 'post',
    path: '/offline/used',
    summary: 'Report the HOTP counters used offline: they, and all before them, stop working',
    body: z.object({ user: userName, workstation, counters: z.array(z.number().int().min(0)).max(100) }).strict(),
    errors: { 403: 'not bound to this workstation', 404: 'unknown user', 409: 'a counter was not handed out to this workstation, or no HOTP token' },
    handler: async ({ req, body }) => {
      const cred = who.get(req)!;
      credentials.requireWorkstation(cred, body.workstation);
      await offline.used(body.user, body.counters, { workstation: body.workstation, credential: cred.name });
      adminAudit(req, 'offline.used', body.user, body.workstation, { counters: body.counters });
      return { ok: true };
    },
  });

  app.use(BRIDGE_BASE, router);
  mountPrivacyIdeaApi(app, ctx, credentials);
}

