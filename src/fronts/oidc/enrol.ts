import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import QRCode from 'qrcode';
import type { Challenge } from '../../core/challenge.js';
import { groupsOf } from '../../core/directories.js';
import { hasOwnFactor } from '../../core/enrolled.js';
import { mayEnrolAtSignIn, mergePolicy, type AccessPolicy } from '../../core/policy.js';
import type { AppContext } from '../../context.js';
import { idDigest } from './adapter.js';
import { layout } from './pages.js';

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** What the interaction steps (index.ts) lend this one. */
export interface EnrolStepDeps {
  ctx: AppContext;
  base: string;
  csrfFor(uid: string): string;
  checkCsrf(uid: string, given: unknown): void;
  /** The interaction's uid, from oidc-provider (throws when the interaction is gone). */
  uidOf(req: Request, res: Response): Promise<string>;
  /** Finishes the sign-in with an approved challenge (index.ts checks the client's acr). */
  approved(req: Request, res: Response, c: Challenge, user: string): Promise<unknown>;
  deny(req: Request, res: Response, description: string): Promise<unknown>;
}

interface Pending {
  user: string;
  client: string;
  ip?: string;
}

const GRACE_OVER = 'The time to set up a second factor while signing in has run out for this account. Ask your administrator for an invitation.';

/**
 * Enrolment at first sign-in: a user with no factor, whom the policy (default, relying party,
 * group) lets enrol here within the grace period, scans a fresh TOTP QR code during the sign-in;
 * the first code from it both switches OTP on and is the second factor of this sign-in. The
 * QR code and the code form are one page; nothing changes for the user until the code verifies.
 */
export function enrolAtSignIn(router: Router, deps: EnrolStepDeps) {
  const { ctx, base } = deps;
  const key = (uid: string) => `oidc-enrol:${idDigest(uid)}`;
  const headers = (res: Response) => {
    const n = randomBytes(16).toString('base64');
    res.set({
      // As the other sign-in pages, plus the QR code as a data: image.
      'content-security-policy': `default-src 'none'; style-src 'nonce-${n}'; img-src data:; form-action 'self' *; frame-ancestors 'none'; base-uri 'none'`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    });
    return n;
  };

  const page = async (res: Response, uid: string, user: string, error?: string, status = 200) => {
    const e = await ctx.otpEnrolments.current(user);
    const qr = await QRCode.toDataURL(e.uri, { margin: 2, scale: 5 });
    const n = headers(res);
    res.status(status).type('html').send(
      layout(
        'Set up your second factor',
        `<h1>Set up your second factor</h1>
<p>Your account needs a second factor. Scan this QR code with an authenticator app (FreeOTP, Google Authenticator, Microsoft Authenticator…), then type the code it shows.</p>
<p class="qr"><img src="${qr}" alt="QR code for your authenticator app" width="200" height="200"></p>
<p class="muted">On this phone? <a id="otpauth" href="${esc(e.uri)}">Open it in the app</a>. Key: <code>${esc(e.secret)}</code></p>
${error ? `<p class="err" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(`${base}/${uid}/enrol`)}"><input type="hidden" name="csrf" value="${esc(deps.csrfFor(uid))}">
<label for="code">Code from your authenticator app</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6,8}" maxlength="8" required autofocus>
<button type="submit">Verify and sign in</button></form>
<p class="muted">Later, manage your factors and make recovery codes at <a href="${esc(ctx.devices.publicUrl.replace(/\/+$/, ''))}/account/">your account</a>.</p>`,
        n,
      ),
    );
  };

  router.get('/:uid/enrol', async (req, res) => {
    const uid = await deps.uidOf(req, res);
    const raw = await ctx.store.kv.get(key(uid));
    if (!raw) return res.redirect(303, `${base}/${uid}`);
    // Each showing makes a new QR code: only the last one shown can be confirmed.
    return page(res, uid, (JSON.parse(raw) as Pending).user);
  });

  router.post('/:uid/enrol', express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 }), async (req, res) => {
    const uid = await deps.uidOf(req, res);
    deps.checkCsrf(uid, req.body?.csrf);
    const raw = await ctx.store.kv.get(key(uid));
    if (!raw) return res.redirect(303, `${base}/${uid}`);
    const p = JSON.parse(raw) as Pending;
    // Only a first factor: if the user has enrolled one meanwhile (elsewhere, or the real user
    // while someone else holds this sign-in with the password alone), this step replaces nothing.
    if (await hasOwnFactor(ctx, p.user)) {
      await ctx.store.kv.delete(key(uid));
      return deps.deny(req, res, 'Your account has a second factor now; sign in again with it.');
    }
    const code = typeof req.body?.code === 'string' ? req.body.code.trim() : '';
    const ok = /^\d{6,8}$/.test(code) && (await ctx.otpEnrolments.confirm(p.user, code).catch(() => false));
    if (!ok) return page(res, uid, p.user, 'That code did not match; scan this new QR code and try again.', 401);
    await ctx.store.kv.delete(key(uid));
    // The code just verified is this sign-in's second factor: the login is opened and approved
    // as an OTP login, so the audit and the ID token's acr/amr say what happened.
    const c = await ctx.engine.open(p.user, ['otp'], { front: 'oidc', client: p.client, ip: p.ip, userAgent: req.get('user-agent') });
    const r = await ctx.engine.approve(c.id, 'otp');
    if (r.challenge?.state !== 'approved') return deps.deny(req, res, 'The sign-in expired; start again.');
    void ctx.audit.record({ at: ctx.clock.now(), type: 'account', actor: p.user, user: p.user, ip: p.ip, detail: { action: 'account.otp-enrol', at: 'oidc-sign-in', client: p.client } });
    return deps.approved(req, res, r.challenge, p.user);
  });

  return {
    /**
     * Called when a user who passed the password has no factor: null when enrolment here is
     * not for them (the caller refuses as before), else where to send the browser or why not.
     */
    async offer(uid: string, user: string, client: string, clientPolicy: AccessPolicy, ip?: string): Promise<{ redirect: string } | { refuse: string } | null> {
      const policy = mergePolicy(ctx.config.policy, clientPolicy);
      const record = await ctx.store.users.get(user);
      // Never for a console user: whoever knows a new administrator's initial password would
      // enrol their own factor and then open the console with it.
      if (!record || record.role || policy.enrolAtSignIn !== 'on') return null;
      const groups = groupsOf(record);
      // Not in an enrolment group: as if enrolment were off for them.
      if (!mayEnrolAtSignIn(groups, { ...policy, enrolGraceDays: undefined, enrolGraceSignIns: undefined }, 0, 0)) return null;
      const graceMs = (policy.enrolGraceDays ?? 14) * 86_400_000;
      // Counted per user over the grace period: each sign-in that reaches this step is one.
      const signIns = await ctx.store.guards.hit(`enrol-sign-ins:${user}`, Math.max(graceMs, 60_000));
      if (!mayEnrolAtSignIn(groups, policy, ctx.clock.now() - record.createdAt, signIns)) return { refuse: GRACE_OVER };
      await ctx.store.kv.set(key(uid), JSON.stringify({ user, client, ip } satisfies Pending), 10 * 60_000);
      return { redirect: `${base}/${uid}/enrol` };
    },
  };
}
