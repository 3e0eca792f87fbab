import QRCode from 'qrcode';
import { CountersignError } from './core/errors.js';
import type { AppContext } from './context.js';
import type { Registries } from './fronts/admin/index.js';
import { verifyPassword } from './core/password.js';
import type { Running } from './main.js';
import { DEMO_APP_CLIENT_ID, DEMO_APP_PATH, demoAppOf, demoAppUrls } from './fronts/demo-rp/index.js';

export const DEMO_USER = 'demo';
export const DEMO_PASSWORD = 'demo-password';
const NEWCOMER = 'newcomer';
const NEWCOMER_PASSWORD = 'newcomer-password';
export const DEMO_RADIUS_SECRET = 'demo-radius-secret';

/** Where versions before the demo app registered demo-app's redirect (nothing listened there). */
const OLD_DEMO_REDIRECT = 'http://127.0.0.1:3000/callback';
/** demo-app's redirect, old or new (the new one hangs off whatever address the server had). */
const isDemoRedirect = (uri: unknown) => uri === OLD_DEMO_REDIRECT || (typeof uri === 'string' && uri.endsWith(`${DEMO_APP_PATH}/callback`));

/**
 * Records an earlier development run left in a shared store with their published
 * passwords and secrets: a production start refuses to serve while any is there.
 */
export async function demoLeftovers(ctx: AppContext, registries: Registries): Promise<string[]> {
  const found: string[] = [];
  const user = await ctx.store.users.get(DEMO_USER);
  if (user?.passwordHash && (await verifyPassword(DEMO_PASSWORD, user.passwordHash))) {
    found.push(`user '${DEMO_USER}' with the demo password (countersign user delete ${DEMO_USER})`);
  }
  await registries.radiusClients.refresh();
  for (const name of registries.radiusClients.withSecret(DEMO_RADIUS_SECRET)) {
    found.push(`RADIUS client '${name}' with the demo secret (countersign radius-client delete ${name})`);
  }
  const app = await registries.oidcClients.load(DEMO_APP_CLIENT_ID);
  if (app && (app.redirect_uris ?? []).some(isDemoRedirect)) {
    found.push("OpenID client 'demo-app' (countersign oidc-client delete demo-app)");
  }
  return found;
}

/**
 * Development mode only: a user to try things with, and a banner saying how. The demo
 * records (a public password and secrets) go only into the in-memory store, never into a
 * Redis that a production start could share later.
 */
export async function seedDemo(running: Running): Promise<string> {
  const { ctx, url, adminToken, registries } = running;
  if (ctx.store.kind !== 'memory') {
    const where = ctx.config.store.redis.url ?? ctx.config.store.redis.sentinels?.join(',') ?? ctx.config.store.redis.cluster?.join(',');
    const down = await ctx.store.ping().then(
      () => null,
      () => `  Redis at ${where} does not answer: logins are denied and /readyz says 503 until it does.`,
    );
    return [
      '',
      `Countersign is running in ${ctx.config.mode} mode on the Redis store, at ${url}.`,
      ...(down ? [down] : []),
      '  No demo records were created: they carry a public password and secrets, so they go only',
      '  into the in-memory store. Create users with `npx countersign user add NAME --password-stdin`.',
      `  Admin API     ${url}/api/v1          (Authorization: Bearer ${adminToken})`,
      '',
    ].join('\n');
  }
  const lines: string[] = [];
  let enrolment;
  try {
    await ctx.users.create({ name: DEMO_USER, password: DEMO_PASSWORD, displayName: 'Demo User', role: 'admin' });
    enrolment = await ctx.users.enrolOtp(DEMO_USER);
    await ctx.users.setFactor([DEMO_USER], 'push', true);
  } catch (err) {
    if (!(err instanceof CountersignError && err.code === 'user_exists')) throw err;
  }
  // Someone who has no factor yet: an invitation (its link is logged here) takes them to the portal.
  await ctx.users.create({ name: NEWCOMER, password: NEWCOMER_PASSWORD, displayName: 'New Colleague', email: 'newcomer@example.com' }).catch((err) => {
    if (!(err instanceof CountersignError && err.code === 'user_exists')) throw err;
  });
  // The address browsers use: the demo app's redirects hang off it, as the issuer does.
  const base = (ctx.config.http.publicUrl ?? url).replace(/\/+$/, '');
  const demoApp = demoAppUrls(base);
  let oidcSecret: string | undefined;
  let appSecret: string | undefined;
  if (ctx.config.oidc.enabled) {
    oidcSecret = await registries.oidcClients
      .add({
        client_id: DEMO_APP_CLIENT_ID,
        client_name: 'Demo app',
        redirect_uris: [demoApp.callback],
        post_logout_redirect_uris: [demoApp.home],
        grant_types: ['authorization_code', 'refresh_token'],
      })
      .then((c) => String(c.client_secret))
      .catch((err) => {
        if (err instanceof CountersignError && err.code === 'client_exists') return undefined;
        throw err;
      });
    // Seeded a second time on the same store: the client registered then, if it is still ours.
    const registered = oidcSecret ? undefined : await registries.oidcClients.load(DEMO_APP_CLIENT_ID);
    appSecret = oidcSecret ?? (registered?.redirect_uris?.includes(demoApp.callback) ? registered.client_secret : undefined);
  }
  const rp = demoAppOf(ctx);
  if (rp && running.issuer && appSecret) rp.ready({ issuer: running.issuer, baseUrl: base, clientSecret: appSecret });
  for (const [name, address] of [['demo-nas', '127.0.0.1/32'], ['demo-nas6', '::1/128']] as const) {
    await registries.radiusClients.add({ name, address, secret: DEMO_RADIUS_SECRET, mode: 'append' }).catch((err) => {
      if (!(err instanceof CountersignError && err.code === 'client_exists')) throw err;
    });
  }
  const store = ctx.store.kind === 'memory' ? 'in-memory store (nothing is kept after a restart)' : 'Redis store';
  lines.push(
    '',
    `Countersign is running in ${ctx.config.mode} mode on the ${store}.`,
    '',
    ...(rp?.isReady
      ? [`  Try first     ${demoApp.home}   (a demo web app: sign in as ${DEMO_USER} / ${DEMO_PASSWORD}, then a code from the app)`, '']
      : []),
    `  Console       ${base}/console/         (sign in as ${DEMO_USER}: password, then a code from the app)`,
    `  Web app       ${base}/app/             (the push authenticator: npx countersign enrol ${DEMO_USER} prints its set-up link)`,
    `  Your account  ${base}/account/         (self-service: a TOTP app, the web app, passkeys, recovery codes)`,
    `  Newcomer      ${NEWCOMER} / ${NEWCOMER_PASSWORD}, no factor yet: npx countersign invite ${NEWCOMER} logs their invitation link here`,
    `  Admin API     ${url}/api/v1          (Authorization: Bearer ${adminToken})`,
    `  OpenAPI       ${url}/api/v1/openapi.json`,
    `  Health        ${url}/healthz  ${url}/readyz  ${url}/metrics`,
    '',
  );
  if (enrolment) {
    lines.push(
      `  Demo user     ${DEMO_USER} / ${DEMO_PASSWORD}, OTP enrolled. Add it to an authenticator app:`,
      `                ${enrolment.uri}`,
      await QRCode.toString(enrolment.uri, { type: 'terminal', small: true }),
    );
  } else {
    lines.push(`  Demo user     ${DEMO_USER} already exists (its OTP seed was shown when it was created).`, '');
  }
  lines.push(
    running.issuer
      ? `  OpenID        ${running.issuer}/.well-known/openid-configuration  (client ${DEMO_APP_CLIENT_ID}${oidcSecret ? `, secret ${oidcSecret}` : ''}, redirect ${demoApp.callback})`
      : '  OpenID        disabled',
    running.radiusPort
      ? `  RADIUS        udp port ${running.radiusPort}, demo NAS at 127.0.0.1 and ::1 (secret ${DEMO_RADIUS_SECRET}, append mode: password,code)`
      : '  RADIUS        disabled',
    '',
    '  Try, in another terminal:',
    `    export COUNTERSIGN_URL=${url} COUNTERSIGN_ADMIN_TOKEN=${adminToken}`,
    '    npx countersign user list',
    `    echo ${DEMO_PASSWORD} | npx countersign challenge open ${DEMO_USER} --password-stdin`,
    '    npx countersign challenge otp <challenge id> <code from the app>',
    running.radiusPort
      ? `    echo 'User-Name = ${DEMO_USER}, User-Password = "${DEMO_PASSWORD},<code>", Message-Authenticator = 0x00' | radclient 127.0.0.1:${running.radiusPort} auth ${DEMO_RADIUS_SECRET}`
      : '',
    '    npx countersign enrol demo   # open the web app link it prints in Chrome here, then approve demo-app sign-ins there',
    '',
  );
  return lines.join('\n');
}
