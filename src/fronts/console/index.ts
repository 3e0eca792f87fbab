import express, { type Express, type Request, type Response } from 'express';
import { z } from 'zod';
import { CountersignError } from '../../core/errors.js';
import { firstFactorError } from '../../core/directories.js';
import { mountStaticPages } from '../web/static.js';
import { stateAfterWait } from '../../http/long-poll.js';
import { parse, userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from '../admin/audit.js';
import { consolePasskeyRoutes } from './passkeys.js';
import { PendingSignIns } from '../web/sign-in.js';
import { BrowserSessions, LOGIN_COOKIE, type BrowserSession } from '../web/sessions.js';

/**
 * The admin web console at /console (static pages on the admin API, no second
 * back end) and its sign-in at /console/api: an administrator's
 * password and then their own second factor, as for any other login; the
 * session it opens works the admin API.
 */
export function mountConsole(app: Express, ctx: AppContext, sessions: BrowserSessions): void {
  const api = express.Router();
  api.use(express.json({ limit: '16kb' }));
  ctx.sessions.register({ name: 'console', endAll: (user, now) => sessions.endAll(user, now) });

  /** The sign-in in progress, bound to this browser by a cookie. */
  const signIns = new PendingSignIns(ctx, 'console-login', LOGIN_COOKIE);
  const pendingLogin = (req: Request) => signIns.get(req);

  // Caller: anonymous. The password through the first-factor step every front shares (throttle,
  // bounded checks), then the administrator's own second factor.
  api.post('/login', async (req, res) => {
    const body = parse(z.object({ user: userName, password: z.string().min(1).max(1024) }).strict(), req.body);
    const verified = await ctx.firstFactor.check({ login: body.user, passwords: [body.password], source: { front: 'console', address: req.ip ?? '' } });
    if (!verified.ok && verified.reason !== 'invalid' && verified.reason !== 'account_locked') throw firstFactorError(verified);
    const u = verified.ok ? await ctx.store.users.get(verified.name) : null;
    if (!u || !u.role) throw new CountersignError(401, 'first_factor_failed', 'wrong user name or password, or no console access');
    let c;
    try {
      // The console is gated by role, not group policy, and always takes the administrator's own second factor.
      c = await ctx.login.begin(
        u.name,
        null,
        { front: 'console', client: 'console', ip: req.ip, userAgent: req.get('user-agent') },
        { policy: null, requireSecondFactor: true, webauthn: true },
      );
    } catch (err) {
      if (err instanceof CountersignError && err.code === 'no_second_factor') {
        throw new CountersignError(403, 'console_needs_second_factor', 'Countersign protects its own console: enrol OTP, push or a passkey for this administrator first');
      }
      throw err;
    }
    await signIns.start(req, res, u.name, c);
    res.json({ displayCode: c.displayCode, number: c.number, factors: c.factors, deadline: c.deadline });
  });

  api.get('/login/wait', async (req, res) => {
    const l = await pendingLogin(req);
    res.json({ state: await stateAfterWait(ctx.engine, l.cid, 25, req) });
  });

  api.post('/login/otp', async (req, res) => {
    const l = await pendingLogin(req);
    const { code } = parse(z.object({ code: z.string().regex(/^\d{6,8}$/, 'a code is 6 to 8 digits') }).strict(), req.body);
    const c = await ctx.login.answerOtp(l.cid, code);
    res.json({ state: c.state });
  });

  api.post('/login/finish', async (req, res) => {
    const { pending: l } = await signIns.finish(req, res);
    // The role as it is now, and no session for a password or role that changed (or was ended) mid sign-in.
    const u = await ctx.store.users.get(l.user);
    if (!u?.role || (await sessions.endedSince(l.user, l.at))) {
      throw new CountersignError(401, 'sign_in_revoked', 'this administrator’s access changed during the sign-in; start again');
    }
    const s = await sessions.create(req, res, u.name, u.role, ctx.clock.now());
    adminAudit(ctx, req, 'console.sign-in', { user: s.user, detail: { role: s.role } }, { kind: 'console', session: s });
    res.json({ user: s.user, role: s.role, csrf: s.csrf });
  });

  const requireSession = async (req: Request, res: Response): Promise<BrowserSession> => {
    const s = await sessions.get(req, res, ctx.clock.now());
    if (!s) throw new CountersignError(401, 'session_expired', 'not signed in');
    return s;
  };

  consolePasskeyRoutes(api, { ctx, sessions, pendingLogin, requireSession });

  // Caller: a console session (admin or helpdesk).
  api.get('/session', async (req, res) => {
    const s = await requireSession(req, res);
    res.json({ user: s.user, role: s.role, csrf: s.csrf });
  });

  // Caller: a console session (admin or helpdesk), or a browser whose session is already gone.
  api.post('/logout', async (req, res) => {
    const s = await sessions.get(req, res, ctx.clock.now());
    // A forged cross-site sign-out is only a nuisance, but the token is at hand: a live session must show it.
    if (s) sessions.checkCsrf(req, s);
    await sessions.destroy(req, res);
    res.json({ ok: true });
  });

  // Caller: a console session (admin or helpdesk), for their own sessions; CSRF-checked.
  api.post('/logout-everywhere', async (req, res) => {
    const s = await requireSession(req, res);
    sessions.checkCsrf(req, s);
    const sessionsEnded = await sessions.endAll(s.user, ctx.clock.now());
    await sessions.destroy(req, res);
    adminAudit(ctx, req, 'console.sign-out-everywhere', { user: s.user, detail: { sessionsEnded } }, { kind: 'console', session: s });
    res.json({ ok: true, sessionsEnded });
  });

  app.use('/console/api', api);
  mountStaticPages(app, '/console', 'console');
}
