import express, { type Request, type Response, type Router } from 'express';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import type { AppContext } from '../../context.js';
import { layout } from './pages.js';

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** What the interaction steps (index.ts) lend this one. */
export interface RecoveryStepDeps {
  ctx: AppContext;
  base: string;
  csrfFor(uid: string): string;
  checkCsrf(uid: string, given: unknown): void;
  /** Sets the page headers (CSP with a nonce) and returns the nonce. */
  nonce(res: Response): string;
  uidOf(req: Request, res: Response): Promise<string>;
  /** The sign-in waiting for its second factor in this interaction, if any. */
  stepOf(uid: string): Promise<{ user: string; cid: string } | null>;
  approved(req: Request, res: Response, c: Challenge, user: string): Promise<unknown>;
  deny(req: Request, res: Response, description: string): Promise<unknown>;
}

/**
 * "Lost your phone? Use a recovery code" on the second step of an OpenID Connect sign-in: a
 * one-time recovery code (src/core/recovery.ts) approves the waiting login as method
 * `recovery` (amr otp, mfa). Only after the password; RADIUS never takes one.
 */
export function recoveryStep(router: Router, deps: RecoveryStepDeps): void {
  const { ctx, base } = deps;
  const page = (res: Response, uid: string, error?: string, status = 200) => {
    const n = deps.nonce(res);
    res.status(status).type('html').send(
      layout(
        'Use a recovery code',
        `<h1>Use a recovery code</h1>
<p>Type one of the recovery codes you saved when you set up your account. Each code works once.</p>
${error ? `<p class="err" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(`${base}/${uid}/recovery`)}"><input type="hidden" name="csrf" value="${esc(deps.csrfFor(uid))}">
<label for="recovery-code">Recovery code</label>
<input id="recovery-code" name="code" autocomplete="off" maxlength="32" required autofocus>
<button type="submit">Use recovery code</button></form>
<p class="muted"><a href="${esc(`${base}/${uid}`)}">Back</a></p>`,
        n,
      ),
    );
  };

  router.get('/:uid/recovery', async (req, res) => {
    const uid = await deps.uidOf(req, res);
    if (!(await deps.stepOf(uid))) return res.redirect(303, `${base}/${uid}`);
    return page(res, uid);
  });

  router.post('/:uid/recovery', express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 }), async (req, res) => {
    const uid = await deps.uidOf(req, res);
    deps.checkCsrf(uid, req.body?.csrf);
    const step = await deps.stepOf(uid);
    if (!step) return res.redirect(303, `${base}/${uid}`);
    const code = typeof req.body?.code === 'string' ? req.body.code : '';
    const c = await ctx.engine.get(step.cid);
    if (c?.state !== 'pending') return res.redirect(303, `${base}/${uid}`);
    let ok: boolean;
    try {
      ok = code.length <= 64 && (await ctx.recovery.use(step.user, code));
    } catch (err) {
      if (err instanceof CountersignError && err.status < 500) return page(res, uid, err.message, err.status);
      throw err;
    }
    if (!ok) {
      const c = await ctx.engine.get(step.cid);
      const error = new CountersignError(401, 'recovery_invalid', 'This recovery code is wrong or was already used.');
      if (c) void ctx.audit.otpFailure({ user: step.user, origin: c.origin, challengeId: c.id, error, method: 'recovery' });
      return page(res, uid, error.message, 401);
    }
    const r = await ctx.engine.approve(step.cid, 'recovery');
    if (r.challenge?.state !== 'approved') return deps.deny(req, res, 'This sign-in is over; start again.');
    return deps.approved(req, res, r.challenge, step.user);
  });
}
