import express, { type Express, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import { userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import type { BridgeCredentials } from './credentials.js';

/**
 * The subset of privacyIDEA's HTTP API that its Credential Provider for
 * Windows (and its Keycloak, ADFS and FreeRADIUS plugins) speak, so they work
 * against Countersign unchanged: /validate/check, /validate/polltransaction,
 * /validate/triggerchallenge and /auth. Transaction ids are challenge ids,
 * bound to their user; a push login ends with a single-use finalising check.
 */

type Authentication = 'ACCEPT' | 'REJECT' | 'CHALLENGE' | 'DECLINED';

const envelope = (result: Record<string, unknown>, detail: Record<string, unknown> = {}) => ({
  id: 1,
  jsonrpc: '2.0',
  result,
  detail,
  time: Date.now() / 1000,
  version: 'privacyIDEA 3.9 (Countersign compatibility)',
});

const answer = (res: Response, auth: Authentication, detail: Record<string, unknown> = {}) =>
  res.json(envelope({ status: true, value: auth === 'ACCEPT', authentication: auth }, detail));

/** privacyIDEA's error shape: result.status false with a code and message. */
const fail = (res: Response, http: number, code: number, message: string) =>
  res.status(http).json(envelope({ status: false, error: { code, message: `ERR${code}: ${message}` } }));

const serial = (type: 'otp' | 'push', user: string) => `${type === 'otp' ? 'CSOTP' : 'CSPUSH'}-${user}`;

export function mountPrivacyIdeaApi(app: Express, ctx: AppContext, credentials: BridgeCredentials): void {
  // Mounted on its own paths only: the body parsers must not touch other fronts' requests.
  const router = express.Router();
  const bodies = [express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }), express.json({ limit: '16kb' })];
  router.use(bodies);

  const params = (req: Request) => ({ ...(req.query as Record<string, unknown>), ...(req.body as Record<string, unknown>) });
  const input = z.object({
    user: userName,
    realm: z.string().max(64).optional(),
    pass: z.string().max(1024).default(''),
    transaction_id: z.string().max(64).optional(),
  });

  const challengeDetail = (c: Challenge) => {
    const multi = [];
    if (c.factors.includes('otp')) {
      multi.push({ transaction_id: c.id, serial: serial('otp', c.user), type: 'totp', client_mode: 'interactive', message: 'please enter otp: ', attributes: null, image: null });
    }
    if (c.factors.includes('push')) {
      const message = `Please confirm the authentication on your mobile device! (ID ${c.displayCode}${c.number ? `, number ${c.number}` : ''})`;
      multi.push({ transaction_id: c.id, serial: serial('push', c.user), type: 'push', client_mode: 'poll', message, attributes: { hideResponseInput: true }, image: null });
    }
    return {
      transaction_id: c.id,
      transaction_ids: multi.map(() => c.id),
      multi_challenge: multi,
      message: multi.map((m) => m.message).join(', '),
      messages: multi.map((m) => m.message),
      preferred_client_mode: c.factors.includes('push') ? 'poll' : 'interactive',
      client_mode: c.factors.includes('push') ? 'poll' : 'interactive',
      serial: multi[0]?.serial,
      type: multi[0]?.type,
      display_code: c.displayCode,
    };
  };

  const limited = async (req: Request) => (await ctx.store.guards.hit(`pi:${req.ip}`, 60_000)) > 300;

  const trigger = async (req: Request, res: Response, user: string, password: string | null) => {
    const c = await ctx.login.begin(user, password, {
      front: 'bridge',
      client: String(req.get('x-countersign-workstation') ?? req.get('user-agent') ?? 'privacyidea-client').slice(0, 64),
      ip: req.ip,
      userAgent: req.get('user-agent'),
    });
    return answer(res, 'CHALLENGE', challengeDetail(c));
  };

  /** Answers every failure in privacyIDEA's words; nothing here approves. */
  const guarded = (handler: (req: Request, res: Response) => Promise<unknown>) => async (req: Request, res: Response) => {
    try {
      if (await limited(req)) return fail(res, 429, 429, 'too many requests');
      await handler(req, res);
    } catch (err) {
      if (err instanceof CountersignError && err.status === 400) return fail(res, 400, 905, err.message);
      if (err instanceof CountersignError && err.status < 500) {
        return answer(res, 'REJECT', { message: err.code === 'first_factor_failed' || err.code === 'user_not_found' ? 'wrong otp pin' : err.message });
      }
      ctx.log.error({ err }, 'privacyidea compatibility: request failed');
      return fail(res, err instanceof CountersignError ? err.status : 500, 903, 'the service is unavailable; nothing was approved');
    }
  };

  router.post(
    '/check',
    guarded(async (req, res) => {
      const p = input.safeParse(params(req));
      if (!p.success) return fail(res, 400, 905, `Missing or invalid parameter: ${p.error.issues.map((i) => i.path.join('.')).join(', ')}`);
      const { user, pass, transaction_id: tid } = p.data;
      if (!tid) {
        // Step one: an empty pass (or the Windows password) opens the challenge;
        // a code alone is checked directly.
        if (pass === '') return trigger(req, res, user, null);
        if (/^\d{6,8}$/.test(pass)) {
          const c = await ctx.login.begin(user, null, { front: 'bridge', client: 'privacyidea-client', ip: req.ip }, { only: 'otp' });
          await ctx.login.answerOtp(c.id, pass);
          return answer(res, 'ACCEPT', { message: 'matching 1 tokens', serial: serial('otp', user), type: 'totp' });
        }
        return trigger(req, res, user, pass);
      }
      const c = await ctx.engine.get(tid);
      if (!c || c.user !== user || c.origin.front !== 'bridge') return answer(res, 'REJECT', { message: 'no matching challenge for this user' });
      if (pass !== '') {
        await ctx.login.answerOtp(c.id, pass);
        return answer(res, 'ACCEPT', { message: 'Found matching challenge', serial: serial('otp', user), type: 'totp' });
      }
      // The finalising check after an approved push: once per transaction.
      if (c.state === 'rejected') return answer(res, 'DECLINED', { message: 'the authentication was declined on the phone', transaction_id: tid });
      if (c.state !== 'approved') return answer(res, 'REJECT', { message: c.state === 'pending' ? 'the challenge has not been answered yet' : `the challenge is ${c.state}` });
      if (!(await ctx.store.guards.claimOnce(`pi-final:${tid}`, 3600_000))) {
        return answer(res, 'REJECT', { message: 'this transaction was already used' });
      }
      return answer(res, 'ACCEPT', { message: 'Found matching challenge', serial: serial(c.method === 'otp' ? 'otp' : 'push', user), type: c.method === 'otp' ? 'totp' : 'push' });
    }),
  );

  router.get(
    '/polltransaction',
    guarded(async (req, res) => {
      const tid = typeof req.query.transaction_id === 'string' ? req.query.transaction_id : '';
      if (!tid) return fail(res, 400, 905, "Missing parameter: 'transaction_id'");
      const c = /^[A-Za-z0-9_-]{16,64}$/.test(tid) ? await ctx.engine.get(tid) : null;
      const status = !c || c.origin.front !== 'bridge' ? 'none' : c.state === 'approved' ? 'accept' : c.state === 'rejected' ? 'declined' : c.state === 'pending' ? 'pending' : c.state;
      res.json(envelope({ status: true, value: status === 'accept' }, { challenge_status: status }));
    }),
  );

  router.post(
    '/triggerchallenge',
    guarded(async (req, res) => {
      try {
        await credentials.authenticate(req.get('authorization')?.replace(/^(?!Bearer )/i, 'Bearer '));
      } catch {
        return fail(res, 401, 4033, 'Authentication failure. Missing or invalid Authorization header.');
      }
      const p = input.safeParse(params(req));
      if (!p.success) return fail(res, 400, 905, "Missing parameter: 'user'");
      return trigger(req, res, p.data.user, null);
    }),
  );

  /** privacyIDEA's service-account login: the bridge credential's token is the "password". */
  app.post(
    '/auth',
    ...bodies,
    guarded(async (req, res) => {
      const token = String(params(req).password ?? '');
      try {
        await credentials.authenticate(`Bearer ${token}`);
      } catch {
        return fail(res, 401, 4031, 'Authentication failure. Wrong credentials');
      }
      res.json(envelope({ status: true, value: { token, role: 'admin', username: String(params(req).username ?? '') } }));
    }),
  );

  app.use('/validate', router);
}
