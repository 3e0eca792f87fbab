import type { Request, RequestHandler, Response, Router } from 'express';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import type { AccessPolicy } from '../../core/policy.js';
import type { AppContext } from '../../context.js';
import { authenticationFromForm } from '../web/webauthn/schema.js';

interface Step {
  user: string;
  cid: string;
}

/** What the interaction steps of index.ts lend the passkey steps. */
export interface PasskeyStepDeps<D extends { uid: string; params: Record<string, unknown> }> {
  ctx: AppContext;
  form: RequestHandler;
  checkCsrf(uid: string, given: unknown): void;
  details(req: Request, res: Response): Promise<D>;
  stepOf(uid: string): Promise<Step | null>;
  approved(req: Request, res: Response, d: D, c: Challenge, user: string): Promise<unknown>;
  deny(req: Request, res: Response, description: string): Promise<unknown>;
  renderFactor(res: Response, uid: string, step: Step, c: Challenge, error?: string, status?: number): Promise<unknown>;
  renderLogin(req: Request, res: Response, d: D, error: string, status: number): Promise<unknown>;
  policyOf(d: D): Promise<AccessPolicy>;
}

/** Refusals that end the sign-in (the account or the client's policy), not a passkey to try again. */
const ENDS_SIGN_IN = new Set(['not_allowed', 'account_removed', 'account_disabled', 'directory_unavailable']);

/**
 * The passkey steps of the OpenID Connect interaction:
 *  - after the password, "Use a passkey" beside push and code (the user's own passkeys only);
 *  - passwordless, "Sign in with a passkey" on the first page: any registered passkey, with
 *    user verification, is both factors; the client's policy then applies as after a password.
 * Callers: a browser mid-interaction (the interaction cookie, the page's CSRF token). The
 * passwordless steps are open to anyone who starts an authorization, so they are limited per
 * address, never per user: strangers cannot lock anyone out.
 */
export function passkeyRoutes<D extends { uid: string; params: Record<string, unknown> }>(router: Router, deps: PasskeyStepDeps<D>): void {
  const { ctx } = deps;
  const json = (res: Response, err: unknown) => {
    if (err instanceof CountersignError && err.status < 500) return void res.status(err.status).json({ error: err.code, message: err.message });
    throw err;
  };
  const limited = async (req: Request) =>
    (await ctx.store.guards.hit(`passkey-anon:${req.ip}`, 60_000)) > ctx.config.passkeys.perIpPerMinute;
  const origin = (req: Request, d: D) => ({ front: 'oidc', client: String(d.params.client_id), ip: req.ip, userAgent: req.get('user-agent') });

  /** The pending login of this interaction, when it offers a passkey. */
  const pendingWithPasskey = async (uid: string) => {
    const step = await deps.stepOf(uid);
    const c = step ? await ctx.engine.get(step.cid) : null;
    return step && c ? { step, c } : null;
  };

  router.post('/:uid/passkey/options', deps.form, async (req, res) => {
    try {
      const d = await deps.details(req, res);
      deps.checkCsrf(d.uid, req.body?.csrf);
      const p = await pendingWithPasskey(d.uid);
      if (!p || p.c.state !== 'pending' || !p.c.factors.includes('passkey')) {
        throw new CountersignError(409, 'passkey_not_offered', 'This sign-in does not take a passkey now; reload the page.');
      }
      res.set('cache-control', 'no-store').json(await ctx.passkeys.authenticationOptions(p.step.user));
    } catch (err) {
      json(res, err);
    }
  });

  router.post('/:uid/passkey', deps.form, async (req, res) => {
    const d = await deps.details(req, res);
    deps.checkCsrf(d.uid, req.body?.csrf);
    const p = await pendingWithPasskey(d.uid);
    if (!p) return deps.deny(req, res, 'No answer arrived in time; the sign-in was denied.');
    // The phone approved meanwhile: the login is done either way.
    if (p.c.state === 'approved') return deps.approved(req, res, d, p.c, p.step.user);
    try {
      const answer = authenticationFromForm(req.body?.response);
      const done = await ctx.login.answerPasskey(p.c.id, String(req.body?.ticket ?? ''), answer);
      return await deps.approved(req, res, d, done, p.step.user);
    } catch (err) {
      if (!(err instanceof CountersignError) || err.status >= 500) throw err;
      if (err.code.startsWith('challenge_')) return deps.deny(req, res, err.message);
      const now = (await ctx.engine.get(p.c.id)) ?? p.c;
      return deps.renderFactor(res, d.uid, p.step, now, err.message, err.status);
    }
  });

  router.post('/:uid/passwordless/options', deps.form, async (req, res) => {
    try {
      const d = await deps.details(req, res);
      deps.checkCsrf(d.uid, req.body?.csrf);
      if (!ctx.config.passkeys.enabled || !ctx.config.passkeys.passwordless) throw new CountersignError(404, 'passwordless_off', 'Passwordless sign-in is off here.');
      if (await limited(req)) throw new CountersignError(429, 'too_many_attempts', 'Too many attempts; wait a minute.');
      res.set('cache-control', 'no-store').json(await ctx.passkeys.authenticationOptions());
    } catch (err) {
      json(res, err);
    }
  });

  router.post('/:uid/passwordless', deps.form, async (req, res) => {
    const d = await deps.details(req, res);
    deps.checkCsrf(d.uid, req.body?.csrf);
    if (!ctx.config.passkeys.enabled || !ctx.config.passkeys.passwordless) return deps.renderLogin(req, res, d, 'Passwordless sign-in is off here.', 404);
    if (await limited(req)) return deps.renderLogin(req, res, d, 'Too many attempts; wait a minute.', 429);
    let verified;
    try {
      verified = await ctx.passkeys.verifyAuthentication(String(req.body?.ticket ?? ''), authenticationFromForm(req.body?.response));
    } catch (err) {
      if (!(err instanceof CountersignError) || err.status >= 500) throw err;
      return deps.renderLogin(req, res, d, err.message, err.status);
    }
    let c: Challenge;
    try {
      c = await ctx.login.passwordless(verified.user, verified.passkey.deviceType, origin(req, d), await deps.policyOf(d));
    } catch (err) {
      if (err instanceof CountersignError && (ENDS_SIGN_IN.has(err.code) || err.status < 500)) return deps.deny(req, res, err.message);
      throw err;
    }
    return deps.approved(req, res, d, c, verified.user);
  });
}
