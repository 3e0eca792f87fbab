import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import * as client from 'openid-client';
import type { Browser, Page } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const NAS_SECRET = 'nas-secret-0123';

describe('enrolment at first sign-in (openid-client and Chromium; RADIUS)', () => {
  let s: TestServer;
  let rpServer: Server;
  let redirect: string;
  let browser: Browser;
  const codes = new Map<string, string>();
  let challenge = '';
  const rp: Record<string, client.Configuration> = {};
  const up = haveChromium && hasCommand('oathtool') && hasCommand('radclient');

  before(async () => {
    if (!up) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    // The relying party's callback: exchanges the code with openid-client, shows the outcome.
    let verifier = '';
    rpServer = createServer(async (req, res) => {
      const u = new URL(req.url!, redirect);
      const which = u.pathname.split('/').pop()!;
      res.setHeader('content-type', 'text/html');
      if (!u.searchParams.get('code')) {
        res.end(`<h1 id="rp">Not signed in: ${u.searchParams.get('error')}</h1><p id="desc">${u.searchParams.get('error_description') ?? ''}</p>`);
        return;
      }
      try {
        const tokens = await client.authorizationCodeGrant(rp[which]!, u, { pkceCodeVerifier: verifier, expectedState: client.skipStateCheck });
        const claims = tokens.claims()!;
        codes.set(String(claims.sub), JSON.stringify(claims));
        res.end(`<h1 id="rp">Signed in as ${claims.sub}</h1><p id="acr">${claims.acr}</p><p id="amr">${(claims.amr as string[]).join(' ')}</p>`);
      } catch (err) {
        res.end(`<h1 id="rp">Token exchange failed</h1><p id="desc">${(err as Error).message}</p>`);
      }
    });
    await new Promise<void>((r) => rpServer.listen(0, '127.0.0.1', r));
    redirect = `http://127.0.0.1:${(rpServer.address() as AddressInfo).port}/cb`;
    s = await startTestServer({}, {}, (c) => {
      c.policy.enrolAtSignIn = 'on';
      c.policy.enrolGraceSignIns = 2;
      c.oidc.clients = [
        { client_id: 'intranet', client_secret: 'intranet-secret-0123456789', redirect_uris: [`${redirect}/intranet`] },
        // This application does not let people enrol while signing in to it.
        { client_id: 'payroll', client_secret: 'payroll-secret-0123456789a', redirect_uris: [`${redirect}/payroll`], countersign_enrol_at_sign_in: 'off' },
      ];
      c.radius.clients = [nasConfig(NAS_SECRET, { name: 'vpn', address: '127.0.0.1/32', mode: 'push-wait' })];
    });
    for (const id of ['intranet', 'payroll']) {
      rp[id] = await client.discovery(new URL(s.issuer!), id, `${id}-secret-0123456789${id === 'payroll' ? 'a' : ''}`, undefined, { execute: [client.allowInsecureRequests] });
    }
    for (const name of ['erin', 'fred', 'gina', 'hank', 'ivy', 'jane']) await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` });
    await s.api('POST', '/api/v1/users', { name: 'kate', password: 'kate-pw', role: 'admin' });
    browser = await launchChromium();
    // One PKCE verifier for the whole run: each test signs in one after the other.
    verifier = client.randomPKCECodeVerifier();
    challenge = await client.calculatePKCECodeChallenge(verifier);
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    rpServer?.close();
  });
  const ready = (t: TestContext) => requirePeer(t, up, 'chromium, oathtool and radclient');

  const signIn = async (app: 'intranet' | 'payroll', user: string): Promise<Page> => {
    const page = await browser.newPage();
    const url = client.buildAuthorizationUrl(rp[app]!, { redirect_uri: `${redirect}/${app}`, scope: 'openid', code_challenge: challenge, code_challenge_method: 'S256' });
    await page.goto(url.toString());
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(`${user}-pw`);
    await page.getByRole('button', { name: 'Continue' }).click();
    return page;
  };

  it('a user with no factor enrols TOTP while signing in; that code completes the sign-in', async (t) => {
    if (!ready(t)) return;
    const page = await signIn('intranet', 'erin');
    await page.getByRole('heading', { name: 'Set up your second factor' }).waitFor();
    await page.screenshot({ path: `${ARTIFACTS}account-enrol-at-sign-in.png`, fullPage: true });
    const secret = new URL((await page.getAttribute('#otpauth', 'href'))!).searchParams.get('secret')!;
    // A wrong code turns nothing on, and the page keeps the QR code the user has scanned.
    const right = oathTotp(secret);
    await page.getByLabel('Code from your authenticator app').fill(right.slice(0, -1) + String((Number(right.at(-1)) + 5) % 10));
    await page.getByRole('button', { name: 'Verify and sign in' }).click();
    await page.getByText('That code did not match').waitFor();
    assert.equal((await s.ctx.store.users.get('erin'))!.otpEnabled, false);
    const fresh = new URL((await page.getAttribute('#otpauth', 'href'))!).searchParams.get('secret')!;
    assert.equal(fresh, secret);
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(fresh));
    await page.getByRole('button', { name: 'Verify and sign in' }).click();
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.equal(await page.textContent('#rp'), 'Signed in as erin');
    assert.equal(await page.textContent('#acr'), 'urn:countersign:mfa');
    assert.equal(await page.textContent('#amr'), 'pwd otp mfa');
    const erin = (await s.ctx.store.users.get('erin'))!;
    assert.equal(erin.otpEnabled, true);
    assert.ok(erin.otpSecret && !erin.otpSecret.includes(fresh), 'the seed is sealed');
    const events = await s.ctx.store.audit.query({ user: 'erin', limit: 10 });
    assert.ok(events.some((e) => e.type === 'login' && e.front === 'oidc' && e.method === 'otp' && e.outcome === 'approved'));
    await page.close();
  });

  it('a console user is never offered enrolment on the password alone', async (t) => {
    if (!ready(t)) return;
    const page = await signIn('intranet', 'kate');
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.match((await page.textContent('#rp'))!, /access_denied/);
    assert.match((await page.textContent('#desc'))!, /no second factor enabled/);
    assert.equal((await s.ctx.store.users.get('kate'))!.otpEnabled, false);
    await page.close();
  });

  it('a factor enrolled meanwhile (by the real user) cannot be replaced from a sign-in that knows only the password', async (t) => {
    if (!ready(t)) return;
    const page = await signIn('intranet', 'jane');
    await page.getByRole('heading', { name: 'Set up your second factor' }).waitFor();
    const seed = new URL((await page.getAttribute('#otpauth', 'href'))!).searchParams.get('secret')!;
    // Meanwhile the real jane sets up her own authenticator (an administrator, here).
    const real = (await s.api('POST', '/api/v1/users/jane/otp', {})).body.secret;
    const before = (await s.ctx.store.users.get('jane'))!.otpSecret;
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(seed));
    await page.getByRole('button', { name: 'Verify and sign in' }).click();
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.match((await page.textContent('#rp'))!, /access_denied/);
    assert.match((await page.textContent('#desc'))!, /has a second factor now/);
    assert.equal((await s.ctx.store.users.get('jane'))!.otpSecret, before, 'her own seed stands');
    assert.ok(real);
    await page.close();
  });

  it('with the policy off for the application: refused with a message', async (t) => {
    if (!ready(t)) return;
    const page = await signIn('payroll', 'fred');
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.match((await page.textContent('#rp'))!, /access_denied/);
    assert.match((await page.textContent('#desc'))!, /no second factor enabled/);
    assert.equal((await s.ctx.store.users.get('fred'))!.otpEnabled, false);
    await page.close();
  });

  it('once the grace (sign-ins without a factor) is used up: refused', async (t) => {
    if (!ready(t)) return;
    for (let i = 0; i < 2; i++) {
      const page = await signIn('intranet', 'gina');
      await page.getByRole('heading', { name: 'Set up your second factor' }).waitFor();
      await page.close(); // walks away without enrolling
    }
    const page = await signIn('intranet', 'gina');
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.match((await page.textContent('#desc'))!, /time to set up a second factor while signing in has run out/);
    await page.screenshot({ path: `${ARTIFACTS}account-enrol-grace-over.png` });
    await page.close();
  });

  it('a recovery code signs in instead of the phone, once', async (t) => {
    if (!ready(t)) return;
    await s.api('POST', '/api/v1/users/ivy/otp', {});
    const [code] = await s.ctx.recovery.create('ivy');
    for (const attempt of ['first', 'again']) {
      const page = await signIn('intranet', 'ivy');
      await page.getByText('Lost your phone? Use a recovery code').click();
      await page.getByLabel('Recovery code').fill(code!);
      await page.getByRole('button', { name: 'Use recovery code' }).click();
      if (attempt === 'first') {
        await page.waitForURL((u) => u.toString().startsWith(redirect));
        assert.equal(await page.textContent('#rp'), 'Signed in as ivy');
        assert.equal(await page.textContent('#amr'), 'pwd otp mfa');
      } else {
        await page.getByText('This recovery code is wrong or was already used.').waitFor();
      }
      await page.close();
    }
    const events = await s.ctx.store.audit.query({ user: 'ivy', limit: 10 });
    assert.ok(events.some((e) => e.type === 'login' && e.method === 'recovery' && e.outcome === 'approved'));
  });

  it('over RADIUS, a user with no factor is told where to set one up', async (t) => {
    if (!ready(t)) return;
    const r = await radclient(s.radiusPort!, NAS_SECRET, { 'User-Name': 'hank', 'User-Password': q('hank-pw') });
    assert.equal(r.code, 'Access-Reject');
    assert.equal(r.attributes['Reply-Message'], `No second factor is set up for this account; set one up at ${s.url}/account/`);
    // The portal lets hank in on the password within the grace, to enrol a first factor.
    const res = await fetch(`${s.url}/account/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'hank', password: 'hank-pw' }) });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).signedIn, true);
  });
});
