import { generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { AppContext } from '../../context.js';
import { storeAdapter } from './adapter.js';
import { groupsOf } from '../../core/directories.js';
import { FAILURE_WORDS } from '../../core/directory.js';
import { decide, mergePolicy, type AccessPolicy } from '../../core/policy.js';
import { errorPage, loggedOutPage, logoutPage } from './pages.js';
import type { OidcClients } from './clients.js';
import type { UserRecord } from '../../core/store.js';

export const ACR_PWD = 'urn:countersign:pwd';
export const ACR_MFA = 'urn:countersign:mfa';
/** Password, then an administrator approved the login by hand: a second step, but not the user's own factor. */
export const ACR_APPROVED = 'urn:countersign:approved';

/**
 * RFC 8176 method values for what the user did. A passkey is hwk (bound to one authenticator)
 * or swk (synced), always with user verification (user); passwordless has no pwd, and the
 * passkey with user verification is the two factors (mfa).
 */
export const amrFor = (method: string | undefined): string[] =>
  /^(passkey|passwordless)-(hwk|swk)$/.test(method ?? '')
    ? [...(method!.startsWith('passkey-') ? ['pwd'] : []), method!.slice(-3), 'user', 'mfa']
    : method === 'otp' ? ['pwd', 'otp', 'mfa'] : method === 'push' ? ['pwd', 'swk', 'mfa'] : method === 'recovery' ? ['pwd', 'otp', 'mfa'] : ['pwd'];

/** The login an approved challenge stands for; acr follows from what was actually done. */
export function loginFor(method: string | undefined): { amr: string[]; acr: string } {
  const amr = amrFor(method);
  return { amr, acr: amr.includes('mfa') ? ACR_MFA : method === 'admin' ? ACR_APPROVED : ACR_PWD };
}

/** A relying party's group policy, from its metadata (countersign_allow_groups, _mfa_groups, _no_factor). */
export function clientPolicy(client: unknown): AccessPolicy {
  const c = (client ?? {}) as {
    countersign_allow_groups?: string[];
    countersign_mfa_groups?: string[];
    countersign_no_factor?: 'deny' | 'allow';
    countersign_enrol_at_sign_in?: 'off' | 'on';
    countersign_enrol_groups?: string[];
  };
  return {
    allowGroups: c.countersign_allow_groups,
    mfaGroups: c.countersign_mfa_groups,
    noFactor: c.countersign_no_factor,
    enrolAtSignIn: c.countersign_enrol_at_sign_in,
    enrolGroups: c.countersign_enrol_groups,
  };
}

/**
 * The acr values that satisfy one authorization, or null for any: asking for MFA in
 * acr_values needs the user's own factor; otherwise a client whose policy lets some users in
 * on the password (noFactor allow, or a second factor only for some groups) takes any login
 * the policy let through, and any other needs a second step.
 */
export function acceptedAcrs(client: unknown, acrValues: unknown, defaults: AccessPolicy): string[] | null {
  if (String(acrValues ?? '').split(' ').includes(ACR_MFA)) return [ACR_MFA];
  const p = mergePolicy(defaults, clientPolicy(client));
  if (p.noFactor === 'allow' || p.mfaGroups?.length) return null;
  return [ACR_MFA, ACR_APPROVED];
}

export const satisfies = (accepted: string[] | null, acr: string | undefined) => accepted === null || (acr !== undefined && accepted.includes(acr));

/** Said to the relying party when a finished login still falls short of what it asked for. */
export const WEAKER_THAN_ASKED = 'This application requires your own second factor (a one-time code or a push), and this sign-in did not use one.';

/** Said alike for every CIBA refusal, so the endpoint does not tell who exists or can be pushed. */
export const CIBA_REFUSED = 'this user cannot be asked to approve a sign-in';

/**
 * Whether this client's group policy (over the default) lets the user sign in at all, and the
 * directory (or its last sync) still has the account active.
 */
function admits(ctx: AppContext, record: UserRecord | null, client: unknown): record is UserRecord {
  if (!record || (record.directoryState && record.directoryState !== 'active')) return false;
  return decide(groupsOf(record), mergePolicy(ctx.config.policy, clientPolicy(client))).allowed;
}

/**
 * oidc-provider reuses a session for any client (single sign-on) as long as
 * someone is logged in; this makes the login prompt come back whenever the
 * session's acr is weaker than this client and its acr_values need.
 */
function interactionsPolicy(ctx: AppContext) {
  const { Check } = interactionPolicy;
  const policy = interactionPolicy.base();
  policy.get('login')!.checks.add(
    new Check('countersign_acr', 'a stronger sign-in is required', 'login_required', async (kctx) => {
      const { session, client, params, result } = kctx.oidc;
      if (!session?.accountId) return Check.NO_NEED_TO_PROMPT; // no_session asks for the login
      // Who may sign in here is this client's to say, also for a session another client began.
      if (!admits(ctx, await ctx.store.users.get(session.accountId), client)) throw new errors.AccessDenied(FAILURE_WORDS.not_allowed);
      if (satisfies(acceptedAcrs(client, params?.acr_values, ctx.config.policy), session.acr)) return Check.NO_NEED_TO_PROMPT;
      // A login just finished and still falls short: prompting again would loop the browser.
      if (result?.login) throw new errors.AccessDenied(WEAKER_THAN_ASKED);
      return Check.REQUEST_PROMPT;
    }),
  );
  return policy;
}

type Jwks = { keys: Record<string, unknown>[] };
const newJwks = (): Jwks => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] };
};
/** Generated keys kept in the store: every instance signs with the same one. Years, not forever. */
const STORED_JWKS_MS = 10 * 365 * 24 * 3600 * 1000;

/**
 * Signing keys: from oidc.jwksFile; else, in production, generated once and kept sealed in
 * the shared store (every instance must sign with the same key, and a container's disk may
 * be read-only); in development, generated once and kept in the data dir.
 */
async function signingKeys(ctx: AppContext): Promise<Jwks> {
  const { oidc, dataDir, mode } = ctx.config;
  if (oidc.jwksFile) {
    try {
      return JSON.parse(readFileSync(oidc.jwksFile, 'utf8')) as Jwks;
    } catch (err) {
      throw new Error(`cannot read oidc.jwksFile ${oidc.jwksFile}: ${(err as Error).message}`);
    }
  }
  if (mode === 'production') {
    const candidate = ctx.box.seal(Buffer.from(JSON.stringify(newJwks())), 'oidc-jwks');
    const sealed = (await ctx.store.kv.setIfAbsent('oidc-jwks', candidate, STORED_JWKS_MS)) ?? candidate;
    return JSON.parse(ctx.box.open(sealed, 'oidc-jwks').toString()) as Jwks;
  }
  const path = join(dataDir, 'oidc-jwks.json');
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as Jwks;
  const jwks = newJwks();
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(path, JSON.stringify(jwks), { mode: 0o600 });
  } catch (err) {
    throw new Error(
      `cannot keep generated signing keys in ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; make dataDir (COUNTERSIGN_DATA_DIR) writable or set oidc.jwksFile (COUNTERSIGN_OIDC_JWKS_FILE)`,
    );
  }
  ctx.log.warn({ path }, 'generated OpenID Connect signing keys; set oidc.jwksFile in production');
  return jwks;
}

/** Cookie signing keys derived from the secret key, so every instance agrees. */
export const derivedKey = (ctx: AppContext, label: string) =>
  Buffer.from(hkdfSync('sha256', Buffer.from(ctx.config.secretKey ?? '', 'base64'), Buffer.alloc(0), label, 32));

/** The headers our pages carry (CSP with a per-response nonce for the style); returns the nonce. */
function pageHeaders(kctx: KoaContextWithOIDC): string {
  const nonce = randomBytes(16).toString('base64');
  kctx.type = 'html';
  kctx.set('content-security-policy', `default-src 'none'; style-src 'nonce-${nonce}'; form-action 'self' *; frame-ancestors 'none'; base-uri 'none'`);
  kctx.set('cache-control', 'no-store');
  return nonce;
}

/**
 * How long an interaction lives: every step of a sign-in (the password, a push within the
 * challenge deadline, an enrolment at sign-in's 10 minutes) fits inside, and one nobody
 * finishes, which anyone can open, is gone within minutes rather than an hour.
 */
export const interactionSeconds = (deadlineSeconds: number) => Math.max(15 * 60, deadlineSeconds + 5 * 60);

/**
 * Every URL oidc-provider builds (discovery's endpoints, the way back from an interaction, the
 * sign-out form) comes from the request's scheme and host, which are the caller's to say (Host,
 * X-Forwarded-Host and -Proto, an absolute request target); a shared cache would hand a forged
 * answer to everyone. So the provider's requests know themselves only by the issuer, and take
 * their address from Express, which trusts http.trustProxy's hops and no more (Koa's own proxy
 * setting would take the left-most X-Forwarded-For entry, which the caller writes).
 */
function pinToIssuer(provider: Provider, issuer: string) {
  const { origin, host, hostname, protocol } = new URL(issuer);
  type Req = { originalUrl: string; href: string; req: { ip?: string }; socket: { remoteAddress?: string } };
  Object.defineProperties(provider.request, {
    protocol: { get: () => protocol.slice(0, -1) },
    host: { get: () => host },
    hostname: { get: () => hostname.replace(/^\[|\]$/g, '') },
    href: {
      get(this: Req) {
        const u = new URL(this.originalUrl, origin);
        return `${origin}${u.pathname}${u.search}`;
      },
    },
    URL: {
      get(this: Req) {
        return new URL(this.href);
      },
    },
    ip: {
      get(this: Req) {
        return this.req.ip ?? this.socket.remoteAddress ?? '';
      },
    },
  });
}

/**
 * The provider's own responses are never framed (the sign-out pages, its auto-submitting forms
 * and error pages); the pages it makes itself (form_post) get a CSP that allows only their own
 * script, which oidc-provider adds by hash to script-src (the nonce here is on no element).
 * Discovery and the keys are the same for every caller, so a cache may keep them a few minutes.
 */
async function providerHeaders(kctx: KoaContextWithOIDC, next: () => Promise<void>) {
  kctx.set('x-frame-options', 'DENY');
  kctx.set(
    'content-security-policy',
    `default-src 'none'; script-src 'nonce-${randomBytes(16).toString('base64')}'; form-action 'self' *; frame-ancestors 'none'; base-uri 'none'`,
  );
  await next();
  const csp = kctx.response.get('content-security-policy');
  if (!/frame-ancestors/.test(csp)) kctx.set('content-security-policy', csp ? `${csp}; frame-ancestors 'none'` : "frame-ancestors 'none'");
  const route = (kctx as { routerName?: string }).routerName;
  if ((route === 'discovery' || route === 'jwks') && kctx.status === 200) kctx.set('cache-control', 'public, max-age=300');
}

export async function createProvider(ctx: AppContext, clients: OidcClients, issuer: string, interactionBase: string): Promise<Provider> {
  const { engine, login, store } = ctx;
  const deadlineSeconds = Math.floor(engine.opts.deadlineMs / 1000);
  let provider: Provider;

  const configuration: Configuration = {
    adapter: storeAdapter(store, clients),
    clients: ctx.config.oidc.clients as unknown as Configuration['clients'],
    jwks: (await signingKeys(ctx)) as Configuration['jwks'],
    cookies: { keys: [derivedKey(ctx, 'oidc-cookies').toString('base64url')] },
    acrValues: [ACR_PWD, ACR_MFA, ACR_APPROVED],
    claims: {
      acr: null,
      amr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
      profile: ['name', 'preferred_username'],
      email: ['email'],
    },
    extraClientMetadata: {
      properties: ['countersign_no_factor', 'countersign_allow_groups', 'countersign_mfa_groups', 'countersign_enrol_at_sign_in', 'countersign_enrol_groups'],
      validator(_ctx, key, value) {
        if (key === 'countersign_no_factor' && value !== undefined && value !== 'deny' && value !== 'allow') {
          throw new errors.InvalidClientMetadata('countersign_no_factor must be "deny" or "allow"');
        }
        if (key === 'countersign_enrol_at_sign_in' && value !== undefined && value !== 'off' && value !== 'on') {
          throw new errors.InvalidClientMetadata('countersign_enrol_at_sign_in must be "off" or "on"');
        }
        if (
          (key === 'countersign_allow_groups' || key === 'countersign_mfa_groups' || key === 'countersign_enrol_groups') &&
          value !== undefined &&
          !(Array.isArray(value) && value.every((g) => typeof g === 'string' && g.length > 0 && g.length <= 256))
        ) {
          throw new errors.InvalidClientMetadata(`${key} must be a list of group names`);
        }
      },
    },
    async findAccount(_ctx, id) {
      const u = await store.users.get(id);
      if (!u) return undefined;
      return {
        accountId: u.name,
        async claims() {
          return { sub: u.name, preferred_username: u.name, name: u.displayName, email: u.email };
        },
      };
    },
    interactions: { policy: interactionsPolicy(ctx), url: (_ctx, interaction) => `${interactionBase}/${interaction.uid}` },
    // Relying parties are the organisation's own apps: the grant is given, no consent screen.
    async loadExistingGrant(kctx: KoaContextWithOIDC) {
      const { client, session, result, params } = kctx.oidc;
      if (!client || !session?.accountId) return undefined;
      const grantId = (result?.consent as { grantId?: string } | undefined)?.grantId ?? session.grantIdFor(client.clientId);
      if (grantId) return kctx.oidc.provider.Grant.find(grantId);
      const grant = new kctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope(String(params?.scope ?? 'openid'));
      await grant.save();
      return grant;
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    pkce: { required: () => true },
    ttl: {
      Interaction: interactionSeconds(deadlineSeconds),
      // A session nobody signed in to (an anonymous sign-out keeps its state in one) lives as
      // long as an interaction: anyone may make one.
      Session: (_kctx, session) => (session.accountId ? 8 * 3600 : interactionSeconds(deadlineSeconds)),
      Grant: 8 * 3600,
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      BackchannelAuthenticationRequest: deadlineSeconds,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Our own pages: no external resources, and the same CSP as the sign-in pages.
        async logoutSource(kctx, form) {
          const nonce = pageHeaders(kctx);
          kctx.body = logoutPage({ form, client: kctx.oidc.client?.clientName ?? kctx.oidc.client?.clientId, nonce });
        },
        async postLogoutSuccessSource(kctx) {
          kctx.body = loggedOutPage(pageHeaders(kctx));
        },
      },
      ciba: {
        enabled: true,
        deliveryModes: ['poll', 'ping'],
        // Unknown users, users this client may not sign in (its group policy, as in the browser)
        // and users who cannot be pushed get the same answer; only the log tells them apart.
        async processLoginHint(kctx, loginHint) {
          const user = loginHint ? await store.users.get(loginHint) : null;
          const reason = !user ? 'unknown_user' : !admits(ctx, user, kctx.oidc.client) ? 'not_allowed' : (await ctx.push.blocked(user))?.code;
          if (!reason) return loginHint;
          ctx.log.info({ client: kctx.oidc.client?.clientId, user: loginHint?.slice(0, 128), reason }, 'ciba: request refused');
          throw new errors.AccessDenied(CIBA_REFUSED);
        },
        async validateBindingMessage(_kctx, bindingMessage) {
          if (bindingMessage !== undefined && !/^[\p{L}\p{N} .,:;!?#+/_-]{1,40}$/u.test(bindingMessage)) {
            throw new errors.InvalidBindingMessage('binding_message must be 1-40 letters, digits, spaces or basic punctuation');
          }
        },
        async validateRequestContext() {},
        async verifyUserCode(_kctx, _account, userCode) {
          if (userCode) throw new errors.InvalidRequest('user_code is not supported');
        },
        async triggerAuthenticationDevice(kctx, request, account, client) {
          let c;
          try {
            c = await login.begin(
              account.accountId,
              null,
              { front: 'oidc-ciba', client: client.clientId, ip: kctx.ip, userAgent: kctx.get('user-agent') || undefined },
              // The client's group policy, as in the browser; and, whatever that policy says about
              // a password being enough, CIBA checked none: only the phone can approve.
              { only: 'push', bindingMessage: request.params?.binding_message as string | undefined, policy: clientPolicy(client), requireSecondFactor: true },
            );
          } catch (err) {
            // Past processLoginHint only races and the push rate limit refuse; they answer alike too.
            ctx.log.warn({ err, client: client.clientId }, 'ciba: request refused');
            throw new errors.AccessDenied(CIBA_REFUSED);
          }
          // The answer comes later; the relying party polls (or is pinged) meanwhile.
          void engine.wait(c.id).then(
            async (done) => {
              const byPhone = done.method === 'push';
              if (done.state === 'approved' && !byPhone && !satisfies(acceptedAcrs(client, request.params?.acr_values, ctx.config.policy), ACR_APPROVED)) {
                await provider.backchannelResult(request, new errors.AccessDenied(WEAKER_THAN_ASKED));
              } else if (done.state === 'approved') {
                const grant = new provider.Grant({ clientId: client.clientId, accountId: account.accountId as string });
                grant.addOIDCScope(String(request.params?.scope ?? 'openid'));
                await grant.save();
                await provider.backchannelResult(request, grant, {
                  // An administrator's approval is not the user's phone.
                  ...(byPhone ? { amr: ['swk'], acr: ACR_MFA } : { acr: ACR_APPROVED }),
                  authTime: Math.floor((done.resolvedAt ?? Date.now()) / 1000),
                });
              } else if (done.state !== 'expired') {
                await provider.backchannelResult(request, new errors.AccessDenied(`the request was ${done.state} on the phone`));
              }
              // expired: the request's own lifetime (the same deadline) answers expired_token.
            },
            (err) => ctx.log.warn({ err, challenge: c.id }, 'ciba: could not learn the outcome; the request will expire'),
          );
        },
      },
    },
    async renderError(kctx, out) {
      kctx.body = errorPage('Sign-in error', String(out.error_description ?? out.error), pageHeaders(kctx));
    },
  };
  provider = new Provider(issuer, configuration);
  clients.attach(provider);
  pinToIssuer(provider, issuer);
  provider.use(providerHeaders);
  return provider;
}
