import { createHash, randomBytes } from 'node:crypto';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type * as OpenId from 'openid-client';
import type { AppContext } from '../../context.js';
import { newToken } from '../../core/ids.js';
import { SECURE_COOKIES_SETTING } from '../../http/server.js';
import { ACR_MFA } from '../oidc/provider.js';
import { claimsPage, problemPage, welcomePage } from './pages.js';

/**
 * The demo relying party: a small web application on the same HTTP server, in
 * development mode with the demo seeded only, that signs in through our own
 * OpenID provider with openid-client (authorization code, PKCE, state, nonce)
 * and shows what it learned. It exists so that a newcomer who runs `npm start`
 * has an application to sign in to.
 *
 * openid-client is a development dependency: it is imported on first use, so a
 * production install (no devDependencies) never loads it — and production never
 * mounts this at all.
 */

export const DEMO_APP_PATH = '/demo-app';
export const DEMO_APP_CLIENT_ID = 'demo-app';

/** The demo app's addresses under the server's base URL, as registered with the provider. */
export function demoAppUrls(baseUrl: string): { home: string; callback: string } {
  const b = baseUrl.replace(/\/+$/, '');
  return { home: `${b}${DEMO_APP_PATH}/`, callback: `${b}${DEMO_APP_PATH}/callback` };
}

export interface DemoAppSetup {
  /** The issuer the demo app signs in with. */
  issuer: string;
  /** The address browsers use for this server (the redirect URIs hang off it). */
  baseUrl: string;
  /** The demo-app client's secret, generated when the demo was seeded; kept in this process only. */
  clientSecret: string;
}

export interface DemoApp {
  /** Called by the demo seeding once the client is registered. */
  ready(setup: DemoAppSetup): void;
  readonly isReady: boolean;
}

const apps = new WeakMap<AppContext, DemoApp>();

/** The demo app mounted on this server, if any (the demo seeding hands it the client secret). */
export const demoAppOf = (ctx: AppContext): DemoApp | undefined => apps.get(ctx);

const TXN_COOKIE = 'cs_demo_txn';
const SESSION_COOKIE = 'cs_demo_session';
const TXN_MS = 10 * 60 * 1000;
const SESSION_MS = 60 * 60 * 1000;

/** A sign-in on its way through the provider: all of it stays on the server, the browser holds a random id. */
interface Transaction {
  verifier: string;
  state: string;
  nonce: string;
  mfa: boolean;
}

interface Session {
  claims: Record<string, unknown>;
  userinfo: Record<string, unknown> | null;
  userinfoError?: string;
  idToken?: string;
  mfa: boolean;
}

/** Something to tell the person in the browser, with an HTTP status. */
class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest('base64url');
const txnKey = (id: string) => `demo-app:txn:${digest(id)}`;
const sessionKey = (id: string) => `demo-app:session:${digest(id)}`;

function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      const v = part.slice(i + 1).trim();
      return /^[A-Za-z0-9_-]{16,128}$/.test(v) ? v : undefined;
    }
  }
  return undefined;
}

function setCookie(req: Request, res: Response, name: string, value: string, maxAgeMs: number): void {
  const secure = req.secure || req.app.get(SECURE_COOKIES_SETTING) === true ? '; Secure' : '';
  // Lax: the callback arrives as a top-level navigation from the provider's pages.
  res.append('set-cookie', `${name}=${value}; Path=${DEMO_APP_PATH}/; HttpOnly; SameSite=Lax; Max-Age=${Math.floor(maxAgeMs / 1000)}${secure}`);
}

type OpenIdModule = typeof OpenId;
let openIdModule: Promise<OpenIdModule> | undefined;
const openid = (): Promise<OpenIdModule> =>
  (openIdModule ??= import('openid-client').catch((err: unknown) => {
    openIdModule = undefined;
    throw new Problem(
      503,
      'The demo app cannot start',
      'It needs the development dependency openid-client, which is not installed.',
      `Run npm install (without --omit=dev). ${(err as Error).message}`,
    );
  }));

/**
 * Mounts the demo app at /demo-app. Development mode with the demo on only; it
 * answers "not set up" until the demo seeding calls ready() (the demo records,
 * the client among them, are seeded on the in-memory store only).
 */
export function mountDemoApp(app: Express, ctx: AppContext): DemoApp {
  if (ctx.config.mode !== 'development' || !ctx.config.demo || !ctx.config.oidc.enabled) {
    throw new Error('the demo app runs only in development mode, with the demo and the OpenID provider on');
  }
  const log = ctx.log.child({ component: 'demo-app' });
  let setup: DemoAppSetup | undefined;
  let discovered: Promise<OpenId.Configuration> | undefined;

  const handle: DemoApp = {
    ready(s) {
      setup = s;
      discovered = undefined;
      log.info({ url: demoAppUrls(s.baseUrl).home }, 'demo app ready');
    },
    get isReady() {
      return setup !== undefined;
    },
  };
  apps.set(ctx, handle);

  const need = (): DemoAppSetup => {
    if (setup) return setup;
    throw new Problem(
      503,
      'The demo app is not set up',
      'The demo app is set up when the demo records are seeded, and they are seeded on the in-memory store only.',
      ctx.store.kind === 'memory'
        ? 'Start the server with npm start (development mode, demo on).'
        : 'This server runs on Redis: the demo records carry a public password, so they are never written to a store a production server could share. Register your own client with npx countersign oidc-client add.',
    );
  };

  /** Discovery, once per setup; a failure is not kept, so the next request tries again. */
  const configuration = async (s: DemoAppSetup): Promise<OpenId.Configuration> => {
    const oc = await openid();
    const issuer = new URL(s.issuer);
    discovered ??= oc
      .discovery(issuer, DEMO_APP_CLIENT_ID, s.clientSecret, undefined, {
        // Only ever in development (this app exists nowhere else): the embedded default serves plain
        // HTTP on loopback. A real relying party talks to an https issuer and never sets this.
        execute: issuer.protocol === 'http:' ? [oc.allowInsecureRequests] : [],
      })
      .catch((err: unknown) => {
        discovered = undefined;
        throw new Problem(502, 'The OpenID provider did not answer', `Discovery at ${s.issuer} failed.`, (err as Error).message);
      });
    return discovered;
  };

  const headers = (res: Response, s?: DemoAppSetup): string => {
    const n = randomBytes(16).toString('base64');
    // No scripts at all; forms post here and are redirected to the provider.
    const provider = s ? ` ${new URL(s.issuer).origin}` : '';
    res.set({
      'content-security-policy': `default-src 'none'; style-src 'nonce-${n}'; form-action 'self'${provider}; frame-ancestors 'none'; base-uri 'none'`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    return n;
  };

  const loadJson = async <T>(key: string): Promise<T | null> => {
    const raw = await ctx.store.kv.get(key);
    return raw ? (JSON.parse(raw) as T) : null;
  };

  const sessionOf = async (req: Request): Promise<Session | null> => {
    const id = readCookie(req, SESSION_COOKIE);
    return id ? loadJson<Session>(sessionKey(id)) : null;
  };

  /** A form posted from another site is refused (a sign-out or a sign-in forced on the user). */
  const sameSite = (req: Request) => {
    if (req.get('sec-fetch-site') === 'cross-site') throw new Problem(403, 'Refused', 'This form was sent from another site.');
  };

  const router = express.Router({ strict: true });
  const form = express.urlencoded({ extended: false, limit: '1kb', parameterLimit: 4 });

  router.get('/', async (req, res) => {
    if (!req.originalUrl.split('?')[0]!.endsWith('/')) return res.redirect(301, `${DEMO_APP_PATH}/`);
    const s = need();
    const session = await sessionOf(req);
    const n = headers(res, s);
    if (session) {
      return res.type('html').send(
        claimsPage({ path: DEMO_APP_PATH, nonce: n, claims: session.claims, userinfo: session.userinfo, userinfoError: session.userinfoError, mfaAsked: session.mfa, now: ctx.clock.now() }),
      );
    }
    res.type('html').send(welcomePage({ path: DEMO_APP_PATH, nonce: n, signedOut: req.query.state === 'signed-out' }));
  });

  router.post('/login', form, async (req, res) => {
    sameSite(req);
    const s = need();
    const oc = await openid();
    const config = await configuration(s);
    const t: Transaction = { verifier: oc.randomPKCECodeVerifier(), state: oc.randomState(), nonce: oc.randomNonce(), mfa: req.body?.mfa === '1' };
    const id = newToken(24);
    await ctx.store.kv.set(txnKey(id), JSON.stringify(t), TXN_MS);
    setCookie(req, res, TXN_COOKIE, id, TXN_MS);
    const url = oc.buildAuthorizationUrl(config, {
      redirect_uri: demoAppUrls(s.baseUrl).callback,
      scope: 'openid profile email',
      code_challenge: await oc.calculatePKCECodeChallenge(t.verifier),
      code_challenge_method: 'S256',
      state: t.state,
      nonce: t.nonce,
      ...(t.mfa ? { acr_values: ACR_MFA } : {}),
    });
    res.redirect(303, url.href);
  });

  router.get('/callback', async (req, res) => {
    const s = need();
    const id = readCookie(req, TXN_COOKIE);
    const t = id ? await loadJson<Transaction>(txnKey(id)) : null;
    if (id) {
      // One use only, whatever happens next.
      await ctx.store.kv.delete(txnKey(id));
      setCookie(req, res, TXN_COOKIE, '', 0);
    }
    const urls = demoAppUrls(s.baseUrl);
    if (!t) {
      throw new Problem(
        400,
        'No sign-in in progress',
        'This browser has no sign-in in progress with the demo app.',
        `It expired (after 10 minutes), was already completed, or was started at another address than ${urls.home}. Start again from there.`,
      );
    }
    const oc = await openid();
    const config = await configuration(s);
    // The callback as registered, with the query the provider sent: never the Host header.
    const current = new URL(urls.callback);
    current.search = new URL(req.originalUrl, 'http://localhost').search;
    let tokens: Awaited<ReturnType<typeof oc.authorizationCodeGrant>>;
    try {
      tokens = await oc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: t.verifier,
        expectedState: t.state,
        expectedNonce: t.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      if (err instanceof oc.AuthorizationResponseError || err instanceof oc.ResponseBodyError) {
        throw new Problem(400, 'Not signed in', err.error_description ?? err.error, `error: ${err.error}`);
      }
      log.warn({ err }, 'demo app: the authorization response or the code redemption failed');
      throw new Problem(400, 'Not signed in', 'The answer from the OpenID provider did not check out.', (err as Error).message);
    }
    const claims = { ...tokens.claims()! } as Record<string, unknown>;
    const session: Session = { claims, userinfo: null, idToken: tokens.id_token, mfa: t.mfa };
    try {
      session.userinfo = { ...(await oc.fetchUserInfo(config, tokens.access_token, String(claims.sub))) };
    } catch (err) {
      session.userinfoError = `The userinfo request failed: ${(err as Error).message}`;
    }
    const sid = newToken(24);
    await ctx.store.kv.set(sessionKey(sid), JSON.stringify(session), SESSION_MS);
    setCookie(req, res, SESSION_COOKIE, sid, SESSION_MS);
    res.redirect(303, `${DEMO_APP_PATH}/`);
  });

  router.post('/logout', form, async (req, res) => {
    sameSite(req);
    const s = need();
    const id = readCookie(req, SESSION_COOKIE);
    const session = id ? await loadJson<Session>(sessionKey(id)) : null;
    if (id) {
      await ctx.store.kv.delete(sessionKey(id));
      setCookie(req, res, SESSION_COOKIE, '', 0);
    }
    if (!session) return res.redirect(303, `${DEMO_APP_PATH}/`);
    const oc = await openid();
    // RP-initiated logout: the provider ends its session too, then sends the browser back here.
    const url = oc.buildEndSessionUrl(await configuration(s), {
      post_logout_redirect_uri: demoAppUrls(s.baseUrl).home,
      state: 'signed-out',
      ...(session.idToken ? { id_token_hint: session.idToken } : {}),
    });
    res.redirect(303, url.href);
  });

  app.use(DEMO_APP_PATH, router);
  app.use(DEMO_APP_PATH, (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const n = headers(res, setup);
    if (err instanceof Problem) {
      return res.status(err.status).type('html').send(problemPage({ path: DEMO_APP_PATH, nonce: n, title: err.title, message: err.message, detail: err.detail }));
    }
    const status = (err as { status?: number })?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return res.status(status).type('html').send(problemPage({ path: DEMO_APP_PATH, nonce: n, title: 'Bad request', message: 'The form could not be read.' }));
    }
    log.error({ err }, 'demo app failed');
    res.status(500).type('html').send(problemPage({ path: DEMO_APP_PATH, nonce: n, title: 'Something went wrong', message: 'The demo app failed; the server log says why.' }));
  });
  return handle;
}
