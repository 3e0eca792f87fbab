import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { CountersignError } from '../../core/errors.js';
import { parse } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from '../admin/audit.js';
import { authenticationResponse, registrationResponse } from '../web/webauthn/schema.js';
import { STEP_UP_MS, recentlyVerified, type BrowserSession, type BrowserSessions } from '../web/sessions.js';


export interface ConsolePasskeyDeps {
  ctx: AppContext;
  sessions: BrowserSessions;
  /** The password sign-in in progress in this browser (its cookie). */
  pendingLogin(req: Request): Promise<{ user: string; cid: string }>;
  requireSession(req: Request, res: Response): Promise<BrowserSession>;
}

const answer = z.object({ ticket: z.string().min(1).max(128), response: authenticationResponse }).strict();

/**
 * The console's passkeys: sign-in with a passkey alone (an administrator's or help desk
 * user's discoverable credential, user verification required: both factors), a passkey as
 * the second step after the password, and each console user registering and removing their
 * own passkeys.
 */
export function consolePasskeyRoutes(api: Router, deps: ConsolePasskeyDeps): void {
  const { ctx, sessions } = deps;
  const enabled = () => {
    if (!ctx.config.passkeys.enabled) throw new CountersignError(404, 'passkeys_off', 'passkeys are turned off on this server');
  };
  /** Anyone may try: limited per address, never per user, so strangers lock nobody out. */
  const limited = async (req: Request) => {
    if ((await ctx.store.guards.hit(`passkey-anon:${req.ip}`, 60_000)) > ctx.config.passkeys.perIpPerMinute) {
      throw new CountersignError(429, 'too_many_attempts', 'too many sign-in attempts; wait a minute');
    }
  };

  // Caller: anyone (the sign-in page, before any password). Per-address limit.
  api.post('/login/passkey/options', async (req, res) => {
    enabled();
    await limited(req);
    res.set('cache-control', 'no-store').json(await ctx.passkeys.authenticationOptions());
  });

  // Caller: anyone with a passkey answer. Opens a console session for a console user's passkey.
  api.post('/login/passkey', async (req, res) => {
    enabled();
    await limited(req);
    const body = parse(answer, req.body);
    const { user, passkey } = await ctx.passkeys.verifyAuthentication(body.ticket, body.response);
    const u = await ctx.store.users.get(user);
    // The same words as a wrong password: the answer does not tell which passkeys are console users'.
    if (!u?.role) throw new CountersignError(401, 'first_factor_failed', 'wrong user name or password, or no console access');
    // The console is gated by role, not group policy; the login is recorded like any other.
    const c = await ctx.login.passwordless(user, passkey.deviceType, { front: 'console', client: 'console', ip: req.ip, userAgent: req.get('user-agent') }, null);
    const s = await sessions.create(req, res, u.name, u.role, ctx.clock.now());
    adminAudit(ctx, req, 'console.sign-in', { user: s.user, detail: { role: s.role, method: c.method, passkey: passkey.name } }, { kind: 'console', session: s });
    res.json({ user: s.user, role: s.role, csrf: s.csrf });
  });

  // Caller: a browser mid sign-in (after the password; the sign-in cookie).
  api.post('/login/passkey/factor-options', async (req, res) => {
    const l = await deps.pendingLogin(req);
    const c = await ctx.engine.get(l.cid);
    if (c?.state !== 'pending' || !c.factors.includes('passkey')) {
      throw new CountersignError(409, 'passkey_not_offered', 'this sign-in does not take a passkey now; start again');
    }
    res.set('cache-control', 'no-store').json(await ctx.passkeys.authenticationOptions(l.user));
  });

  // Caller: a browser mid sign-in. The passkey answers the pending login; /login/finish opens the session.
  api.post('/login/passkey/factor', async (req, res) => {
    const l = await deps.pendingLogin(req);
    const body = parse(answer, req.body);
    const c = await ctx.login.answerPasskey(l.cid, body.ticket, body.response);
    res.json({ state: c.state });
  });

  // Caller: a console session (admin or helpdesk), for their own passkeys.
  api.get('/passkeys', async (req, res) => {
    const s = await deps.requireSession(req, res);
    res.json({ passkeys: await ctx.passkeys.list(s.user), addWithinMs: STEP_UP_MS, signedInAt: s.createdAt });
  });

  const recentSession = async (req: Request, res: Response) => {
    enabled();
    const s = await deps.requireSession(req, res);
    sessions.checkCsrf(req, s);
    if (!recentlyVerified(s, ctx.clock.now())) {
      throw new CountersignError(403, 'sign_in_again', 'to add a passkey, sign in again first (a passkey can only be added within 15 minutes of signing in)');
    }
    return s;
  };

  // Caller: a console session signed in within 15 minutes, for their own account; CSRF-checked.
  api.post('/passkeys/options', async (req, res) => {
    const s = await recentSession(req, res);
    res.set('cache-control', 'no-store').json(await ctx.passkeys.registrationOptions(s.user));
  });

  // Caller: as above. Registers the passkey the browser made with those options.
  api.post('/passkeys', async (req, res) => {
    const s = await recentSession(req, res);
    const body = parse(z.object({ name: z.string().min(1).max(64), response: registrationResponse }).strict(), req.body);
    const passkey = await ctx.passkeys.verifyRegistration(s.user, body.response, body.name);
    adminAudit(ctx, req, 'passkey.register', { user: s.user, detail: { passkey: passkey.id, name: passkey.name, deviceType: passkey.deviceType } }, { kind: 'console', session: s });
    res.status(201).json(passkey);
  });

  // Caller: a console session, for their own passkeys; CSRF-checked.
  api.delete('/passkeys/:id', async (req, res) => {
    const s = await deps.requireSession(req, res);
    sessions.checkCsrf(req, s);
    const id = String(req.params.id);
    if (!(await ctx.passkeys.remove(s.user, id))) throw new CountersignError(404, 'passkey_not_found', 'no such passkey');
    adminAudit(ctx, req, 'passkey.remove', { user: s.user, detail: { passkey: id } }, { kind: 'console', session: s });
    res.json({ ok: true });
  });
}
