import QRCode from 'qrcode';
import { CountersignError } from './core/errors.js';
import type { Running } from './main.js';

export const DEMO_USER = 'demo';
export const DEMO_PASSWORD = 'demo-password';
export const DEMO_RADIUS_SECRET = 'demo-radius-secret';

/** Development mode only: a user to try things with, and a banner saying how. */
export async function seedDemo(running: Running): Promise<string> {
  const { ctx, url, adminToken } = running;
  const lines: string[] = [];
  let enrolment;
  try {
    await ctx.users.create({ name: DEMO_USER, password: DEMO_PASSWORD, displayName: 'Demo User', role: 'admin' });
    enrolment = await ctx.users.enrolOtp(DEMO_USER);
    await ctx.users.setFactor([DEMO_USER], 'push', true);
  } catch (err) {
    if (!(err instanceof CountersignError && err.code === 'user_exists')) throw err;
  }
  let oidcSecret: string | undefined;
  if (ctx.config.oidc.enabled) {
    oidcSecret = await ctx.oidcClients
      .add({ client_id: 'demo-app', client_name: 'Demo app', redirect_uris: ['http://127.0.0.1:3000/callback'], grant_types: ['authorization_code', 'refresh_token'] })
      .then((c) => String(c.client_secret))
      .catch((err) => {
        if (err instanceof CountersignError && err.code === 'client_exists') return undefined;
        throw err;
      });
  }
  for (const [name, address] of [['demo-nas', '127.0.0.1/32'], ['demo-nas6', '::1/128']] as const) {
    await ctx.radiusClients.add({ name, address, secret: DEMO_RADIUS_SECRET, mode: 'append' }).catch((err) => {
      if (!(err instanceof CountersignError && err.code === 'client_exists')) throw err;
    });
  }
  const store = ctx.store.kind === 'memory' ? 'in-memory store (nothing is kept after a restart)' : 'Redis store';
  lines.push(
    '',
    `Countersign is running in ${ctx.config.mode} mode on the ${store}.`,
    '',
    `  Console       ${url}/console/         (sign in as ${DEMO_USER}: password, then a code from the app)`,
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
      ? `  OpenID        ${running.issuer}/.well-known/openid-configuration  (client demo-app${oidcSecret ? `, secret ${oidcSecret}` : ''}, redirect http://127.0.0.1:3000/callback)`
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
    '    npx countersign enrol demo   # then: npx countersign device enrol <link>; npx countersign device watch',
    '',
  );
  return lines.join('\n');
}
