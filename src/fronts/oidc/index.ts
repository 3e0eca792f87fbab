import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import express, { type Express, type Request, type Response } from 'express';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import { doorRefusal, refusalSentence } from '../../core/first-factor.js';
import { whyNoPush } from '../../core/push-service.js';
import type { AppContext } from '../../context.js';
import { endAccount, idDigest } from './adapter.js';
import type { OidcClients } from './clients.js';
import { ACR_APPROVED, WEAKER_THAN_ASKED, acceptedAcrs, clientPolicy, createProvider, derivedKey, loginFor, satisfies } from './provider.js';
import { errorPage, factorPage, loginPage } from './pages.js';
import { passkeyRoutes } from './passkey.js';
import { enrolAtSignIn } from './enrol.js';
import { recoveryStep } from './recovery.js';

/** What we remember of an interaction between its steps. */
interface Step {
  user: string;
  cid: string;
  /** Why no push was sent for this login, in the user's words; kept for every render of the page. */
  noPush?: string;
}

const FINAL_WORDS: Record<string, string> = {
  rejected: 'The sign-in was rejected on your phone.',
  expired: 'No answer arrived in time; the sign-in was denied.',
  cancelled: 'This sign-in was cancelled.',
};

/**
 * The OpenID Connect front: oidc-provider mounted at `oidc.path`, and the
 * interaction steps it sends browsers to — password, then the push (waited
 * for live over server-sent events) or a one-time code. The provider is
 * built once the server knows its own address, when none is configured.
 */
export function mountOidc(app: Express, ctx: AppContext, clients: OidcClients) {
  const path = ctx.config.oidc.path;
  const base = `${path}/interaction`;
  // A password reset, "revoke sessions", a factor reset or a deletion ends the user's single
  // sign-on sessions, grants and refresh tokens too, not only their browser sessions here.
  ctx.sessions.register({ name: 'oidc', endAll: (user) => endAccount(ctx.store, user) });
  const csrfKey = derivedKey(ctx, 'oidc-csrf');
  let provider: Provider | undefined;
  let handler: ReturnType<Provider['callback']> | undefined;
  const ttl = (c: Challenge) => Math.max(1000, c.deadline - ctx.clock.now() + 60_000);

  const csrfFor = (uid: string) => createHmac('sha256', csrfKey).update(uid).digest('base64url');
  const checkCsrf = (uid: string, given: unknown) => {
    const want = Buffer.from(csrfFor(uid));
    const got = Buffer.from(typeof given === 'string' ? given : '');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      throw new CountersignError(403, 'csrf', 'This form has expired or was not sent from this page; go back and try again.');
    }
  };
  const nonce = (res: Response) => {
    const n = randomBytes(16).toString('base64');
    res.set({
      'content-security-policy': `default-src 'none'; style-src 'nonce-${n}'; script-src 'nonce-${n}'; connect-src 'self'; form-action 'self' *; frame-ancestors 'none'; base-uri 'none'`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    });
    return n;
  };
  const details = async (req: Request, res: Response) => {
    if (!provider) throw new CountersignError(503, 'not_ready', 'Sign-in is starting; try again in a moment.');
    return provider.interactionDetails(req, res);
  };
  const stepKey = (uid: string) => `oidc-ix:${idDigest(uid)}`;
  const stepOf = async (uid: string): Promise<Step | null> => {
    const raw = await ctx.store.kv.get(stepKey(uid));
    return raw ? (JSON.parse(raw) as Step) : null;
  };
  const clientName = async (clientId: unknown) => {
    const c = await provider!.Client.find(String(clientId));
    return c?.clientName ?? String(clientId);
  };
  const finish = (req: Request, res: Response, result: Record<string, unknown>) =>
    provider!.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  const deny = (req: Request, res: Response, description: string) => finish(req, res, { error: 'access_denied', error_description: description });
  type Details = Awaited<ReturnType<typeof details>>;
  const clientOf = (d: Details) => provider!.Client.find(String(d.params.client_id));
  const accepted = async (d: Details) => acceptedAcrs(await clientOf(d), d.params.acr_values, ctx.config.policy);
  /** Never finishes with a login weaker than asked: oidc-provider would only prompt for it again. */
  const approved = async (req: Request, res: Response, d: Details, c: Challenge, user: string) => {
    const login = loginFor(c.method);
    if (!satisfies(await accepted(d), login.acr)) {
      return deny(
        req,
        res,
        login.acr === ACR_APPROVED ? 'This application requires your own second factor (a one-time code or a push); approval by an administrator is not enough.' : WEAKER_THAN_ASKED,
      );
    }
    return finish(req, res, { login: { accountId: user, ...login } });
  };

  const renderFactor = async (res: Response, uid: string, step: Step, c: Challenge, error?: string, status = 200) => {
    const n = nonce(res);
    res.status(status).type('html').send(
      factorPage({
        base: `${base}/${uid}`,
        csrf: csrfFor(uid),
        nonce: n,
        displayCode: c.displayCode,
        number: c.number,
        push: c.factors.includes('push'),
        otp: c.factors.includes('otp'),
        secondsLeft: Math.max(0, Math.ceil((c.deadline - ctx.clock.now()) / 1000)),
        noPush: step.noPush,
        error,
        recovery: await ctx.recovery.has(step.user),
        passkey: c.factors.includes('passkey')
          ? { optionsAction: `${base}/${uid}/passkey/options`, action: `${base}/${uid}/passkey`, csrf: csrfFor(uid), nonce: n, label: 'Use a passkey' }
          : undefined,
      }),
    );
  };
  /** "Sign in with a passkey" on the first page, when passwordless sign-in is on. */
  const passwordlessButton = (uid: string, n: string) =>
    ctx.config.passkeys.enabled && ctx.config.passkeys.passwordless
      ? { optionsAction: `${base}/${uid}/passwordless/options`, action: `${base}/${uid}/passwordless`, csrf: csrfFor(uid), nonce: n, label: 'Sign in with a passkey' }
      : undefined;

  const router = express.Router();
  // Enrolment at first sign-in (enrol.ts): its own routes; the password step hands over to it.
  const enrolStep = enrolAtSignIn(router, {
    ctx, base, csrfFor, checkCsrf,
    uidOf: async (req, res) => (await details(req, res)).uid,
    approved: async (req, res, c, user) => approved(req, res, await details(req, res), c, user),
    deny,
  });
  // A recovery code instead of the phone (recovery.ts), linked from the second step.
  recoveryStep(router, {
    ctx, base, csrfFor, checkCsrf, nonce, stepOf,
    uidOf: async (req, res) => (await details(req, res)).uid,
    approved: async (req, res, c, user) => approved(req, res, await details(req, res), c, user),
    deny,
  });
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 });
  passkeyRoutes(router, {
    ctx, form, checkCsrf, details, stepOf, approved, deny, renderFactor,
    policyOf: async (d) => clientPolicy(await clientOf(d)),
    renderLogin: async (_req, res, d, error, status) => {
      const n = nonce(res);
      res.status(status).type('html').send(
        loginPage({ action: `${base}/${d.uid}/login`, csrf: csrfFor(d.uid), client: await clientName(d.params.client_id), error, nonce: n, passkey: passwordlessButton(d.uid, n) }),
      );
    },
  });

  router.get('/:uid', async (req, res) => {
    const d = await details(req, res);
    if (d.prompt.name !== 'login') return deny(req, res, `unexpected prompt ${d.prompt.name}`);
    const step = await stepOf(d.uid);
    const c = step ? await ctx.engine.get(step.cid) : null;
    if (c && step) {
      if (c.state === 'approved') return approved(req, res, d, c, step.user);
      if (c.state !== 'pending') return deny(req, res, FINAL_WORDS[c.state]!);
      return renderFactor(res, d.uid, step, c);
    }
    const n = nonce(res);
    res.type('html').send(loginPage({ action: `${base}/${d.uid}/login`, csrf: csrfFor(d.uid), client: await clientName(d.params.client_id), nonce: n, passkey: passwordlessButton(d.uid, n) }));
  });

  router.post('/:uid/login', form, async (req, res) => {
    const d = await details(req, res);
    checkCsrf(d.uid, req.body?.csrf);
    const user = typeof req.body?.user === 'string' ? req.body.user.trim() : '';
    const password = typeof req.body?.password === 'string' ? req.body.password : '';
    const again = async (error: string, status: number) => {
      const n = nonce(res);
      res.status(status).type('html').send(
        loginPage({ action: `${base}/${d.uid}/login`, csrf: csrfFor(d.uid), client: await clientName(d.params.client_id), error, user, nonce: n, passkey: passwordlessButton(d.uid, n) }),
      );
    };
    if (!user || user.length > 128 || password.length > 1024) return again('Enter your user name and password.', 400);
    let verified;
    try {
      verified = await ctx.firstFactor.check({ login: user, passwords: [password], source: { front: 'oidc', address: req.ip ?? '' } });
    } catch (err) {
      // Too many failures for this account or from this address, or too many checks at once.
      if (doorRefusal(err)) return again(`${refusalSentence(err as CountersignError)}.`, (err as CountersignError).status);
      throw err;
    }
    if (!verified.ok) {
      if (verified.reason === 'invalid' || verified.reason === 'account_locked') return again('Wrong user name or password.', 401);
      // The directory cannot be asked, or the password was right and the account cannot sign in
      // as it is (password expired, disabled…): say which, on the page, never "wrong password".
      return again(verified.message, verified.reason === 'unavailable' ? 503 : 403);
    }
    const name = verified.name;

    let c: Challenge;
    let noPush: string | undefined;
    try {
      const opened = await ctx.login.open(
        name,
        null,
        { front: 'oidc', client: String(d.params.client_id), ip: req.ip, userAgent: req.get('user-agent') },
        { policy: clientPolicy(await clientOf(d)), webauthn: true },
      );
      c = opened.challenge;
      // The password was right: from here on the user may know why their phone stays quiet.
      if (opened.pushNotSent) noPush = whyNoPush(opened.pushNotSent, ctx.clock.now());
    } catch (err) {
      if (err instanceof CountersignError && err.code === 'no_second_factor') {
        const next = await enrolStep.offer(d.uid, name, String(d.params.client_id), clientPolicy(await clientOf(d)), req.ip);
        if (next && 'redirect' in next) return res.redirect(303, next.redirect);
        if (next) return deny(req, res, next.refuse);
      }
      if (err instanceof CountersignError && err.status < 500) return deny(req, res, err.message);
      throw err;
    }
    await ctx.store.kv.set(stepKey(d.uid), JSON.stringify({ user: name, cid: c.id, ...(noPush ? { noPush } : {}) } satisfies Step), ttl(c));
    res.redirect(303, `${base}/${d.uid}`);
  });

  router.post('/:uid/otp', form, async (req, res) => {
    const d = await details(req, res);
    checkCsrf(d.uid, req.body?.csrf);
    const step = await stepOf(d.uid);
    if (!step) return res.redirect(303, `${base}/${d.uid}`);
    const code = typeof req.body?.code === 'string' ? req.body.code.trim() : '';
    const c = await ctx.engine.get(step.cid);
    if (!c) return deny(req, res, FINAL_WORDS.expired!);
    if (!/^\d{6,8}$/.test(code)) return renderFactor(res, d.uid, step, c, 'A code is 6 to 8 digits.', 400);
    try {
      const done = await ctx.login.answerOtp(c.id, code);
      return approved(req, res, d, done, step.user);
    } catch (err) {
      if (!(err instanceof CountersignError) || err.status >= 500) throw err;
      if (err.code === 'otp_invalid' || err.code === 'otp_replayed') {
        const left = (err.details?.attemptsLeft as number | undefined) ?? 0;
        return renderFactor(res, d.uid, step, c, `${err.code === 'otp_replayed' ? 'That code was already used' : 'Wrong code'}. ${left} attempt${left === 1 ? '' : 's'} left.`, 401);
      }
      return deny(req, res, err.code.startsWith('challenge_') ? FINAL_WORDS[c.state] ?? err.message : err.message);
    }
  });

  router.post('/:uid/finish', form, async (req, res) => {
    const d = await details(req, res);
    checkCsrf(d.uid, req.body?.csrf);
    const step = await stepOf(d.uid);
    const c = step ? await ctx.engine.get(step.cid) : null;
    if (!step || !c) return deny(req, res, FINAL_WORDS.expired!);
    if (c.state === 'approved') return approved(req, res, d, c, step.user);
    if (c.state === 'pending') return renderFactor(res, d.uid, step, c, 'Not approved yet.');
    return deny(req, res, FINAL_WORDS[c.state]!);
  });

  /** Server-sent events: one `outcome` event the moment the push is decided. */
  router.get('/:uid/events', async (req, res) => {
    const d = await details(req, res);
    const step = await stepOf(d.uid);
    if (!step) throw new CountersignError(404, 'no_login', 'no sign-in is waiting here');
    res.set({ 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    const abort = new AbortController();
    const beat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    req.on('close', () => abort.abort(new Error('page closed')));
    try {
      const c = await ctx.engine.wait(step.cid, abort.signal);
      res.write(`event: outcome\ndata: ${JSON.stringify({ state: c.state })}\n\n`);
    } catch (err) {
      if (!abort.signal.aborted) res.write(`event: outcome\ndata: ${JSON.stringify({ state: 'cancelled', error: (err as Error).message })}\n\n`);
    } finally {
      clearInterval(beat);
      res.end();
    }
  });

  router.get('/:uid/abort', async (req, res) => {
    const d = await details(req, res);
    const step = await stepOf(d.uid);
    if (step) await ctx.engine.cancel(step.cid, 'cancelled on the sign-in page').catch(() => {});
    return deny(req, res, 'The sign-in was cancelled.');
  });

  app.use(base, router);
  app.use(base, (err: unknown, _req: Request, res: Response, next: (e?: unknown) => void) => {
    if (res.headersSent) return next(err);
    const n = nonce(res);
    if (err instanceof errors.SessionNotFound || (err as { name?: string })?.name === 'SessionNotFound') {
      return res.status(400).type('html').send(errorPage('Sign-in expired', 'This sign-in page has expired. Go back to the application and start again.', n));
    }
    if (err instanceof CountersignError && err.status < 500) {
      return res.status(err.status).type('html').send(errorPage('Sign-in problem', err.message, n));
    }
    const status = (err as { status?: number })?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // body-parser: too large, malformed, too many fields.
      return res.status(status).type('html').send(errorPage('Sign-in problem', 'The form could not be read; go back and try again.', n));
    }
    ctx.log.error({ err }, 'oidc interaction failed');
    res.status(500).type('html').send(errorPage('Sign-in problem', 'Something went wrong; nobody was signed in. Try again.', n));
  });
  // Anyone may send these, and each makes the provider keep a record for minutes: an
  // authorization opens an interaction, a sign-out without a session makes one for its form.
  // (Resuming an interaction replaces the one it finishes; the other endpoints need a client.)
  // Matched as oidc-provider's router matches, case aside and one trailing slash allowed.
  const anonymousWrites = new Set(['/auth', '/session/end']);
  app.use(path, async (req, res, next) => {
    if (!anonymousWrites.has(req.path.toLowerCase().replace(/(.)\/$/, '$1'))) return next();
    if ((await ctx.store.guards.hit(`oidc-auth:${req.ip}`, 60_000)) <= ctx.config.oidc.authorizationsPerMinute) return next();
    // A page of our own: the request's redirect_uri is unchecked here, so nobody is sent back to it.
    res.status(429).set('retry-after', '60').type('html').send(errorPage('Too many sign-in requests', 'Too many sign-in requests came from your network; wait a minute and try again.', nonce(res)));
  });
  app.use(path, (req, res, next) => {
    if (!handler) return res.status(503).json({ error: 'not_ready', message: 'the OpenID provider is starting' });
    return handler(req, res);
  });

  return {
    /** Builds the provider once the public address is known. */
    async start(publicUrl: string): Promise<Provider> {
      provider = await createProvider(ctx, clients, `${publicUrl.replace(/\/+$/, '')}${path}`, base);
      handler = provider.callback();
      return provider;
    },
    get provider() {
      return provider;
    },
  };
}
