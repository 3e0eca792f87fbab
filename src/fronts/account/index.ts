import express, { type Express, type Request, type Response } from 'express';
import QRCode from 'qrcode';
import { z } from 'zod';
import { CountersignError } from '../../core/errors.js';
import { firstFactorError, groupsOf } from '../../core/directories.js';
import { mayEnrolAtSignIn } from '../../core/policy.js';
import { mountStaticPages } from '../web/static.js';
import { stateAfterWait } from '../../http/long-poll.js';
import { parse, userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import type { UserRecord } from '../../core/store.js';
import { BrowserSessions, recentlyVerified, type BrowserSession } from '../web/sessions.js';
import { hasOwnFactor } from '../../core/enrolled.js';
import { passkeysOf } from './passkeys.js';
import { PendingSignIns } from '../web/sign-in.js';
import { authenticationResponse } from '../web/webauthn/schema.js';
import type { RegistrationResponseJSON } from '../../core/passkeys.js';

export const ACCOUNT_COOKIE = 'cs_account';
export const ACCOUNT_LOGIN_COOKIE = 'cs_account_login';
/** A portal-made enrolment link is outstanding: the device it enrols turns push on. */
const pushMark = (user: string) => `account-push:${user}`;

/** Portal sessions: the console's rules (sessions.ts), for any user the directory still has. */
export const accountSessions = (ctx: AppContext) =>
  new BrowserSessions(ctx.store, {
    name: 'account',
    cookie: ACCOUNT_COOKIE,
    admits: (u: UserRecord) => !u.directoryState || u.directoryState === 'active',
  });

const code = z.string().regex(/^\d{6,8}$/, 'a code is 6 to 8 digits');
/** Changes one user may make through the portal in an hour (each is an audit event and a store write). */
const PORTAL_CHANGES_PER_HOUR = 30;

/**
 * The self-service portal: /account/ (static pages, as the console) on /account/api. A user
 * signs in with their password and a factor they have (push, a one-time code, a passkey or a
 * recovery code) or an invitation link, then enrols TOTP, the web app or another phone, and
 * passkeys, removes devices, reads their recent sign-ins and makes recovery codes.
 * Callers: anonymous for the sign-in steps (rate limited, first-factor throttle), then the
 * session's own user only; every change needs the session's CSRF token.
 */
export function mountAccount(app: Express, ctx: AppContext): void {
  const sessions = accountSessions(ctx);
  ctx.sessions.register({ name: 'account', endAll: (user, now) => sessions.endAll(user, now) });
  const passkeys = passkeysOf(ctx);
  const api = express.Router();
  api.use(express.json({ limit: '64kb' }));
  const record = (action: string, req: Request, user: string, detail: Record<string, unknown> = {}) =>
    void ctx.audit.record({ at: ctx.clock.now(), type: 'account', actor: user, user, ip: req.ip, detail: { action, ...detail } });

  /** The sign-in in progress, bound to this browser by a cookie. */
  const signIns = new PendingSignIns(ctx, 'account-login', ACCOUNT_LOGIN_COOKIE);
  const pendingLogin = (req: Request) => signIns.get(req);

  const openSession = async (req: Request, res: Response, user: string, method: string) => {
    const grace = method === 'enrolment-grace';
    const s = await sessions.create(req, res, user, 'admin' /* unused for portal sessions */, ctx.clock.now(), { grace });
    record('account.sign-in', req, user, { method });
    return { user, csrf: s.csrf, ...(grace ? { grace: true } : {}) };
  };

  // Caller: anonymous. The first step: the password, then an invitation or the user's factor.
  api.post('/login', async (req, res) => {
    const body = parse(
      z.object({ user: userName, password: z.string().min(1).max(1024), invite: z.string().min(16).max(128).optional() }).strict(),
      req.body,
    );
    const verified = await ctx.firstFactor.check({ login: body.user, passwords: [body.password], source: { front: 'account', address: req.ip ?? '' } });
    if (!verified.ok) {
      if (verified.reason === 'invalid') throw new CountersignError(401, 'first_factor_failed', 'Wrong user name or password.');
      throw firstFactorError(verified);
    }
    const name = verified.name;
    if (body.invite) {
      await ctx.invitations.redeem(body.invite, name);
      return res.json({ signedIn: true, ...(await openSession(req, res, name, 'invitation')) });
    }
    let c;
    try {
      // The portal changes the user's own factors: always their second factor, whatever the group policy.
      c = await ctx.login.begin(name, null, { front: 'account', client: 'account', ip: req.ip, userAgent: req.get('user-agent') }, { policy: null, requireSecondFactor: true, webauthn: true });
    } catch (err) {
      if (err instanceof CountersignError && err.code === 'no_second_factor') {
        // Within the default policy's grace for enrolment at sign-in, the password lets a user
        // with no factor in to set up their first one (RADIUS points such users here).
        // Never for a console user: whoever knows a new administrator's initial password would
        // enrol their own factor and then open the console with it.
        const u = await ctx.store.users.get(name);
        if (u && !u.role && ctx.config.policy.enrolAtSignIn === 'on') {
          const signIns = await ctx.store.guards.hit(`enrol-sign-ins:${name}`, Math.max((ctx.config.policy.enrolGraceDays ?? 14) * 86_400_000, 60_000));
          if (mayEnrolAtSignIn(groupsOf(u), ctx.config.policy, ctx.clock.now() - u.createdAt, signIns)) {
            return res.json({ signedIn: true, ...(await openSession(req, res, name, 'enrolment-grace')) });
          }
        }
        throw new CountersignError(
          403,
          'no_factor',
          'You have no second factor yet. Open the invitation link your administrator sent you (or ask for one) to set one up.',
        );
      }
      throw err;
    }
    await signIns.start(req, res, name, c);
    res.json({
      signedIn: false,
      displayCode: c.displayCode,
      number: c.number,
      factors: c.factors,
      deadline: c.deadline,
      recovery: await ctx.recovery.has(name),
      passkey: c.factors.includes('passkey'),
    });
  });

  // Caller: the browser holding the sign-in cookie. Long-polls the push answer.
  api.get('/login/wait', async (req, res) => {
    const l = await pendingLogin(req);
    res.json({ state: await stateAfterWait(ctx.engine, l.cid, 25, req) });
  });

  api.post('/login/otp', async (req, res) => {
    const l = await pendingLogin(req);
    const body = parse(z.object({ code }).strict(), req.body);
    res.json({ state: (await ctx.login.answerOtp(l.cid, body.code)).state });
  });

  // A recovery code stands in for the second factor: it approves this sign-in, once.
  api.post('/login/recovery', async (req, res) => {
    const l = await pendingLogin(req);
    const body = parse(z.object({ code: z.string().min(1).max(64) }).strict(), req.body);
    const pending = await ctx.login.requirePending(l.cid);
    if (!(await ctx.recovery.use(l.user, body.code))) {
      const error = new CountersignError(401, 'recovery_invalid', 'This recovery code is wrong or was already used.');
      void ctx.audit.otpFailure({ user: l.user, origin: pending.origin, challengeId: pending.id, error, method: 'recovery' });
      throw error;
    }
    const r = await ctx.engine.approve(l.cid, 'recovery');
    res.json({ state: r.challenge?.state ?? 'expired' });
  });

  api.post('/login/passkey/options', async (req, res) => {
    const l = await pendingLogin(req);
    if (!passkeys) throw new CountersignError(404, 'no_passkeys', 'passkeys are not available on this server');
    const { options, ticket } = await passkeys.authenticationOptions(l.user);
    await ctx.store.kv.set(`${l.key}:passkey-ticket`, ticket, 5 * 60_000);
    res.json(options);
  });

  api.post('/login/passkey', async (req, res) => {
    const l = await pendingLogin(req);
    if (!passkeys) throw new CountersignError(404, 'no_passkeys', 'passkeys are not available on this server');
    const body = parse(z.object({ response: authenticationResponse }).strict(), req.body);
    const ticket = await ctx.store.kv.get(`${l.key}:passkey-ticket`);
    if (!ticket) throw new CountersignError(410, 'passkey_expired', 'ask for the passkey again');
    await ctx.store.kv.delete(`${l.key}:passkey-ticket`);
    // As at the OIDC and console sign-ins: this user's passkey, offered by this login, recorded as hwk or swk.
    res.json({ state: (await ctx.login.answerPasskey(l.cid, ticket, body.response)).state });
  });

  api.post('/login/finish', async (req, res) => {
    const { pending: l, challenge: c } = await signIns.finish(req, res);
    res.json({ signedIn: true, ...(await openSession(req, res, l.user, c.method ?? 'unknown')) });
  });

  // Everything below: the session's own user; changes carry the CSRF token and are limited per
  // user (PORTAL_CHANGES_PER_HOUR), so no session can flood the audit or the store.
  const session = async (req: Request, res: Response, opts: { change?: boolean; graceOk?: boolean } = {}): Promise<BrowserSession> => {
    const s = await sessions.get(req, res, ctx.clock.now());
    if (!s) throw new CountersignError(401, 'session_expired', 'not signed in');
    if (opts.change ?? req.method !== 'GET') {
      sessions.checkCsrf(req, s);
      if ((await ctx.store.guards.hit(`account-changes:${s.user}`, 3600_000)) > PORTAL_CHANGES_PER_HOUR) {
        throw new CountersignError(429, 'too_many_changes', 'too many changes to this account in the last hour; try again later');
      }
    }
    if (s.grace && !opts.graceOk) {
      throw new CountersignError(403, 'enrol_first', 'Set up your second factor first: until then, this sign-in can do nothing else.');
    }
    return s;
  };

  /**
   * Calls that add a way in (TOTP, a device link, a passkey, recovery codes). A session that
   * proved the user's own factor within the last 15 minutes may; older ones sign in again
   * first, as in the console. An enrolment-grace session (the password alone) may make only the
   * first factor, and only while the user has none: then it ends (`done`).
   */
  const addingWayIn = async (req: Request, res: Response, what: 'otp' | 'device' | 'passkey' | 'recovery') => {
    const s = await session(req, res, { graceOk: what !== 'recovery' });
    if (s.grace) {
      if (await hasOwnFactor(ctx, s.user)) {
        await sessions.destroy(req, res);
        throw new CountersignError(403, 'factor_exists', 'Your account has a second factor now: sign in again with it.');
      }
      return { s, done: async () => void (await sessions.destroy(req, res)) };
    }
    if (!recentlyVerified(s, ctx.clock.now())) {
      throw new CountersignError(403, 'sign_in_again', 'To add a way to sign in, sign in again first: it must be within 15 minutes of signing in with your second factor.');
    }
    return { s, done: async () => {} };
  };

  const devicesOf = async (user: string, u: UserRecord) => {
    const list = await ctx.devices.list(user);
    // A device enrolled from a link this portal made turns push on (an administrator's "off" otherwise stays).
    if (list.length && !u.pushEnabled && (await ctx.store.kv.get(pushMark(user)))) {
      await ctx.store.users.update(user, { pushEnabled: true });
      await ctx.store.kv.delete(pushMark(user));
      u.pushEnabled = true;
    }
    return list.map((d) => ({ id: d.id, name: d.name, platform: d.platform, createdAt: d.createdAt, lastUsedAt: d.lastSeenAt, push: ctx.devices.view(d).push }));
  };

  api.get('/me', async (req, res) => {
    const s = await session(req, res, { graceOk: true });
    const u = await ctx.users.require(s.user);
    const devices = await devicesOf(s.user, u);
    res.json({
      user: u.name,
      displayName: u.displayName,
      email: u.email,
      csrf: s.csrf,
      otp: { enabled: Boolean(u.otpEnabled && u.otpSecret), type: u.otpType },
      push: { enabled: u.pushEnabled },
      devices,
      passkeys: passkeys ? await passkeys.list(s.user) : null,
      recovery: await ctx.recovery.status(s.user),
      ...(s.grace ? { grace: true } : {}),
    });
  });

  api.post('/otp/start', async (req, res) => {
    const { s } = await addingWayIn(req, res, 'otp');
    const e = await ctx.otpEnrolments.start(s.user);
    res.json({ uri: e.uri, secret: e.secret, qrPng: await QRCode.toDataURL(e.uri, { margin: 2, scale: 5 }) });
  });

  api.post('/otp/confirm', async (req, res) => {
    const { s, done } = await addingWayIn(req, res, 'otp');
    const body = parse(z.object({ code }).strict(), req.body);
    if (!(await ctx.otpEnrolments.confirm(s.user, body.code))) {
      throw new CountersignError(400, 'otp_wrong_code', 'That code does not match the QR code; check the app and the time on your phone, and try again.');
    }
    record('account.otp-enrol', req, s.user, s.grace ? { grace: true } : {});
    await done();
    res.json({ ok: true, ...(s.grace ? { signedOut: true } : {}) });
  });

  api.post('/devices/enrolment', async (req, res) => {
    const { s, done } = await addingWayIn(req, res, 'device');
    const link = await ctx.devices.createEnrolment(s.user);
    await ctx.store.kv.set(pushMark(s.user), '1', Math.max(1000, link.expiresAt - ctx.clock.now() + 60_000));
    record('account.device-enrolment', req, s.user, s.grace ? { grace: true } : {});
    await done();
    res.json({ ...link, qrPng: await QRCode.toDataURL(link.appUrl, { margin: 2, scale: 5 }), ...(s.grace ? { signedOut: true } : {}) });
  });

  api.delete('/devices/:id', async (req, res) => {
    const s = await session(req, res);
    const id = String(req.params.id);
    await ctx.devices.revoke(s.user, id);
    // No device left: push is off, so the next sign-in asks for another factor instead of waiting for nothing.
    if ((await ctx.devices.list(s.user)).length === 0) await ctx.store.users.update(s.user, { pushEnabled: false });
    record('account.device-remove', req, s.user, { device: id });
    res.json({ ok: true });
  });

  api.get('/activity', async (req, res) => {
    const s = await session(req, res);
    const events = await ctx.store.audit.query({ user: s.user, limit: 200, stream: 'security' });
    const signIns = events
      .filter((e) => e.type === 'login')
      .slice(0, 30)
      .map((e) => ({ at: e.at, front: e.front, client: e.client, ip: e.ip, method: e.method, outcome: e.outcome }));
    const reports = events.filter((e) => e.type === 'fraud').slice(0, 30).map((e) => ({ at: e.at, front: e.front, client: e.client, ip: e.ip, detail: e.detail }));
    res.json({ signIns, reports });
  });

  api.post('/recovery', async (req, res) => {
    const { s } = await addingWayIn(req, res, 'recovery');
    const codes = await ctx.recovery.create(s.user);
    record('account.recovery-codes', req, s.user, { count: codes.length });
    res.json({ codes });
  });

  api.post('/passkeys/options', async (req, res) => {
    const { s } = await addingWayIn(req, res, 'passkey');
    if (!passkeys) throw new CountersignError(404, 'no_passkeys', 'passkeys are not available on this server');
    res.json(await passkeys.registrationOptions(s.user));
  });

  api.post('/passkeys', async (req, res) => {
    const { s, done } = await addingWayIn(req, res, 'passkey');
    if (!passkeys) throw new CountersignError(404, 'no_passkeys', 'passkeys are not available on this server');
    const body = parse(z.object({ response: z.record(z.string(), z.unknown()), name: z.string().min(1).max(100) }).strict(), req.body);
    const info = await passkeys.verifyRegistration(s.user, body.response as unknown as RegistrationResponseJSON, body.name);
    record('account.passkey-add', req, s.user, { passkey: info.id, ...(s.grace ? { grace: true } : {}) });
    await done();
    res.status(201).json({ ...info, ...(s.grace ? { signedOut: true } : {}) });
  });

  api.delete('/passkeys/:id', async (req, res) => {
    const s = await session(req, res);
    if (!passkeys) throw new CountersignError(404, 'no_passkeys', 'passkeys are not available on this server');
    if (!(await passkeys.remove(s.user, String(req.params.id)))) throw new CountersignError(404, 'passkey_not_found', 'no such passkey');
    record('account.passkey-remove', req, s.user, { passkey: String(req.params.id) });
    res.json({ ok: true });
  });

  // Caller: a portal session, or a browser whose session is already gone.
  api.post('/logout', async (req, res) => {
    const s = await sessions.get(req, res, ctx.clock.now());
    if (s) sessions.checkCsrf(req, s);
    await sessions.destroy(req, res);
    res.json({ ok: true });
  });

  app.use('/account/api', api);
  mountStaticPages(app, '/account', 'account');
}
