import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { type Browser } from 'playwright-core';
import { demoLeftovers, seedDemo } from '../../src/demo.js';
import { ScriptedBrowser, haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const DEV_DEMO = { COUNTERSIGN_MODE: 'development', COUNTERSIGN_DEMO: 'true' };

/** The demo relying party at /demo-app/: what a newcomer signs in to after `npm start`. */
describe('the demo relying party (development mode, demo seeded)', () => {
  let s: TestServer;
  let banner: string;
  let otpSecret: string;
  let browser: Browser | undefined;

  before(async () => {
    s = await startTestServer(DEV_DEMO);
    banner = await seedDemo(s); // as `countersign serve` does
    otpSecret = /otpauth:\/\/\S*[?&]secret=([A-Z2-7]+)/.exec(banner)?.[1] ?? '';
    if (haveChromium) {
      mkdirSync(ARTIFACTS, { recursive: true });
      browser = await launchChromium();
    }
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  it('the banner sends newcomers to the demo app first; its client is registered for it', async () => {
    assert.ok(otpSecret, 'the banner prints the demo user’s OTP seed');
    const first = banner.split('\n').find((l) => l.trim())!;
    assert.match(first, /running in development mode/);
    const tryFirst = banner.split('\n').findIndex((l) => l.includes('Try first'));
    assert.ok(tryFirst > 0 && tryFirst < banner.split('\n').findIndex((l) => l.includes('Console')), 'the demo app comes before everything else');
    assert.match(banner, new RegExp(`Try first\\s+${s.url}/demo-app/ `));
    assert.match(banner, new RegExp(`redirect ${s.url}/demo-app/callback`));
    const { clients } = (await s.api('GET', '/api/v1/oidc-clients')).body;
    const app = clients.find((c: { client_id: string }) => c.client_id === 'demo-app');
    assert.deepEqual(app.redirect_uris, [`${s.url}/demo-app/callback`]);
    assert.deepEqual(app.post_logout_redirect_uris, [`${s.url}/demo-app/`]);
    assert.equal(app.client_secret, undefined, 'the secret stays inside the server');
    // A production start on a store holding it would refuse to serve.
    assert.ok((await demoLeftovers(s.ctx, s.registries)).some((l) => l.includes("OpenID client 'demo-app'")));
  });

  it('in Chromium at phone width: sign in with MFA required, a TOTP from oathtool, the claims, single sign-on, sign-out', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium') || !requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const context = await browser!.newContext({ viewport: { width: 390, height: 844 } });
    // Nothing outside this server is asked for, on any page (the stock sign-out page asked for a web font).
    const outside: string[] = [];
    await context.route('**/*', (route) => {
      if (route.request().url().startsWith(s.url)) return route.continue();
      outside.push(route.request().url());
      return route.abort();
    });
    const page = await context.newPage();
    try {
      await page.goto(`${s.url}/demo-app/`);
      await page.getByRole('button', { name: 'Sign in, MFA required' }).click();
      await page.getByLabel('User name').fill('demo');
      await page.getByLabel('Password').fill('demo-password');
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.getByLabel('Code from your authenticator app').fill(oathTotp(otpSecret));
      await page.getByRole('button', { name: 'Verify' }).click();
      await page.waitForURL(`${s.url}/demo-app/`);
      assert.equal(await page.textContent('#sub'), 'demo');
      assert.equal(await page.textContent('#name'), 'Demo User (from userinfo)');
      assert.deepEqual((await page.textContent('#amr'))!.split(' '), ['pwd', 'otp', 'mfa']);
      assert.equal(await page.textContent('#acr'), 'urn:countersign:mfa');
      const authTime = Number(await page.textContent('#auth-time'));
      assert.ok(Math.abs(authTime - Date.now() / 1000) < 120, `auth_time is now (${authTime})`);
      assert.match((await page.textContent('#userinfo'))!, /"name": "Demo User"/);
      assert.match(await page.textContent('main') ?? '', /asked for MFA/);
      await page.screenshot({ path: `${ARTIFACTS}demo-rp-claims.png`, fullPage: true });

      // Single sign-on: Countersign's session answers without asking again.
      await page.getByRole('button', { name: 'Sign in again' }).click();
      await page.waitForURL(`${s.url}/demo-app/`);
      assert.equal(await page.textContent('#acr'), 'urn:countersign:mfa');
      assert.doesNotMatch(await page.textContent('main') ?? '', /asked for MFA/);

      // RP-initiated logout ends both sessions and comes back to the app.
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('heading', { name: 'Sign out' }).waitFor();
      await page.screenshot({ path: `${ARTIFACTS}oidc-sign-out.png`, fullPage: true });
      await page.getByRole('button', { name: 'Sign out', exact: true }).click();
      await page.waitForURL(`${s.url}/demo-app/?state=signed-out`);
      await page.getByText('You are signed out').waitFor();
      await page.getByRole('button', { name: 'Sign in with Countersign' }).click();
      await page.getByLabel('User name').waitFor();
      assert.match(page.url(), /\/oidc\/interaction\//, 'signed out of Countersign too: the password is asked again');
      assert.deepEqual(outside, []);
    } finally {
      await context.close();
    }
  });

  it('pages carry a CSP without scripts; a callback without a sign-in, a cross-site form and an error answer are refused, escaped', async () => {
    const home = await fetch(`${s.url}/demo-app/`);
    const csp = home.headers.get('content-security-policy')!;
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /script-src|unsafe-inline/);
    assert.doesNotMatch(await home.text(), /<script/i);
    assert.equal((await fetch(`${s.url}/demo-app`, { redirect: 'manual' })).headers.get('location'), '/demo-app/');

    const stray = new ScriptedBrowser();
    const noTxn = await stray.follow(`${s.url}/demo-app/callback?code=x&state=y`);
    assert.equal(noTxn.res.status, 400);
    assert.match(noTxn.body, /No sign-in in progress/);

    const b = new ScriptedBrowser();
    const login = await b.request(`${s.url}/demo-app/login`, { form: {} });
    assert.equal(login.status, 303);
    const auth = new URL(login.headers.get('location')!);
    assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(auth.searchParams.get('nonce') && auth.searchParams.get('state'));
    assert.equal(auth.searchParams.get('acr_values'), null, 'the plain button asks for no acr');
    const cb = new URL(`${s.url}/demo-app/callback`);
    cb.search = new URLSearchParams({ error: 'access_denied', error_description: '<img src=x onerror=alert(1)>', state: auth.searchParams.get('state')!, iss: s.issuer! }).toString();
    const denied = await b.follow(cb.toString());
    assert.equal(denied.res.status, 400);
    assert.match(denied.body, /&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.doesNotMatch(denied.body, /<img/);
    const again = await b.follow(cb.toString());
    assert.match(again.body, /No sign-in in progress/, 'a transaction is used once');

    const mfa = await b.request(`${s.url}/demo-app/login`, { form: { mfa: '1' } });
    assert.equal(new URL(mfa.headers.get('location')!).searchParams.get('acr_values'), 'urn:countersign:mfa');
    const forged = await b.follow(`${s.url}/demo-app/callback?code=stolen&state=forged&iss=${encodeURIComponent(s.issuer!)}`);
    assert.equal(forged.res.status, 400);
    assert.match(forged.body, /Not signed in/);

    const other = new ScriptedBrowser();
    other.headers['sec-fetch-site'] = 'cross-site';
    assert.equal((await other.request(`${s.url}/demo-app/login`, { form: {} })).status, 403);
  });
});

describe('the demo relying party elsewhere', () => {
  it('is not served in production, nor with the demo off; says so until the demo is seeded', async () => {
    const elsewhere: Record<string, string>[] = [
      { COUNTERSIGN_MODE: 'production', COUNTERSIGN_PUBLIC_URL: 'https://countersign.example.org' },
      { COUNTERSIGN_MODE: 'development', COUNTERSIGN_DEMO: 'false' },
    ];
    for (const env of elsewhere) {
      const s = await startTestServer(env);
      try {
        assert.equal((await fetch(`${s.url}/demo-app/`)).status, 404, JSON.stringify(env));
      } finally {
        await s.close();
      }
    }
    const unseeded = await startTestServer(DEV_DEMO);
    try {
      const res = await fetch(`${unseeded.url}/demo-app/`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /not set up/);
    } finally {
      await unseeded.close();
    }
  });

  it('a demo-app client left by an older version (redirect to port 3000) is still recognised as a leftover', async () => {
    const s = await startTestServer();
    try {
      const added = await s.api('POST', '/api/v1/oidc-clients', { client_id: 'demo-app', redirect_uris: ['http://127.0.0.1:3000/callback'] });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      assert.deepEqual(await demoLeftovers(s.ctx, s.registries), ["OpenID client 'demo-app' (countersign oidc-client delete demo-app)"]);
    } finally {
      await s.close();
    }
  });
});
