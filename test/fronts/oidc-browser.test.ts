import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { type Browser, type Page } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;

describe('sign-in pages in headless Chromium', () => {
  let s: TestServer;
  let rpServer: Server;
  let redirect: string;
  let rp: client.Configuration;
  let browser: Browser;
  let phone: Authenticator;
  let otpSecret: string;

  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    // A relying party's callback page: shows what came back. /frame: a page on another origin
    // that frames a URL (sandboxed: no script runs in the frame, so the frame shows what loaded).
    rpServer = createServer((req, res) => {
      const u = new URL(req.url!, 'http://x');
      res.setHeader('content-type', 'text/html');
      if (u.pathname === '/frame') return res.end(`<iframe id="f" sandbox="" src="${u.searchParams.get('src')}"></iframe>`);
      res.end(`<h1 id="rp">${u.searchParams.get('code') ? 'Signed in to the app' : `Not signed in: ${u.searchParams.get('error')}`}</h1><p id="desc">${u.searchParams.get('error_description') ?? ''}</p>`);
    });
    await new Promise<void>((r) => rpServer.listen(0, '127.0.0.1', r));
    redirect = `http://127.0.0.1:${(rpServer.address() as AddressInfo).port}/cb`;
    s = await startTestServer({ COUNTERSIGN_DEADLINE_SECONDS: '12' }, {}, (config) => {
      config.oidc.clients = [
        { client_id: 'portal', client_secret: 'portal-secret-0123456789', client_name: 'Staff portal', redirect_uris: [redirect] },
        { client_id: 'kiosk', client_secret: 'kiosk-secret-0123456789ab', redirect_uris: [redirect], grant_types: ['urn:openid:params:grant-type:ciba'], response_types: [], backchannel_token_delivery_mode: 'poll' },
      ];
      config.push.rateLimit.count = 100;
    });
    rp = await client.discovery(new URL(s.issuer!), 'portal', 'portal-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    await s.api('POST', '/api/v1/users', { name: 'carol', password: 'carol-pw' });
    otpSecret = (await s.api('POST', '/api/v1/users/carol/otp', {})).body.secret;
    await s.api('POST', '/api/v1/users/factors', { users: ['carol'], factor: 'push', enabled: true });
    phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/carol/enrolments')).body.uri, {});
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    rpServer?.close();
  });

  const signIn = async (): Promise<Page> => {
    const page = await browser.newPage();
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: redirect,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    await page.goto(url.toString());
    await page.getByLabel('User name').fill('carol');
    await page.getByLabel('Password').fill('carol-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForSelector('#display-code');
    return page;
  };
  const pending = async () => {
    for (let i = 0; i < 100; i++) {
      const [p] = await phone.pending();
      if (p) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no pending push');
  };

  it('signs in with a one-time code', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium') || !requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const page = await signIn();
    await page.screenshot({ path: `${ARTIFACTS}oidc-second-factor.png`, fullPage: true });
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(otpSecret));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForURL((u) => u.toString().startsWith(redirect));
    assert.equal(await page.textContent('#rp'), 'Signed in to the app');
    await page.close();
  });

  it('moves on by itself the moment the push is approved, showing the phone’s ID', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await signIn();
    const p = await pending();
    assert.equal(await page.textContent('#display-code'), p.displayCode);
    await phone.answer(p.challengeId, 'approve');
    await page.waitForURL((u) => u.toString().startsWith(redirect), { timeout: 5000 });
    assert.equal(await page.textContent('#rp'), 'Signed in to the app');
    await page.screenshot({ path: `${ARTIFACTS}oidc-push-approved.png` });
    await page.close();
  });

  it('says at once that a push was rejected, and tells the app', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await signIn();
    await phone.answer((await pending()).challengeId, 'reject');
    await page.getByText('The sign-in was rejected on your phone.').waitFor({ timeout: 3000 });
    await page.screenshot({ path: `${ARTIFACTS}oidc-push-rejected.png` });
    await page.waitForURL((u) => u.toString().startsWith(redirect), { timeout: 5000 });
    assert.match((await page.textContent('#rp'))!, /access_denied/);
    await page.close();
    await s.api('POST', '/api/v1/users/carol/unlock');
  });

  it('denies at the deadline with a clear message', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await signIn();
    await page.getByText('No answer in time').waitFor({ timeout: 20_000 });
    await page.screenshot({ path: `${ARTIFACTS}oidc-deadline.png` });
    await page.waitForURL((u) => u.toString().startsWith(redirect), { timeout: 5000 });
    assert.match((await page.textContent('#desc'))!, /No answer arrived in time/);
    await page.close();
  });

  it('CIBA: nobody answers, and the relying party hears expired_token after the deadline', async () => {
    const kiosk = await client.discovery(new URL(s.issuer!), 'kiosk', 'kiosk-secret-0123456789ab', undefined, { execute: [client.allowInsecureRequests] });
    const req = await client.initiateBackchannelAuthentication(kiosk, { scope: 'openid', login_hint: 'carol' });
    assert.ok(req.expires_in <= 12, `the request lives as long as the challenge (${req.expires_in})`);
    // openid-client stops polling by itself at expires_in; ask once more after it, as a slow client would.
    await new Promise((r) => setTimeout(r, (req.expires_in + 1) * 1000));
    await assert.rejects(
      client.genericGrantRequest(kiosk, 'urn:openid:params:grant-type:ciba', { auth_req_id: req.auth_req_id }),
      { error: 'expired_token' },
    );
  });

  it('sign-out: the page submits itself under its CSP, and another site cannot frame it', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await browser.newPage();
    await page.goto(`${s.issuer}/session/end`);
    await page.getByText('You are signed out').waitFor({ timeout: 5000 });
    assert.equal(new URL(page.url()).pathname, '/oidc/session/end/success');

    await page.goto(`${redirect.replace(/\/cb$/, '/frame')}?src=${encodeURIComponent(`${s.issuer}/session/end`)}`);
    const frame = await (await page.waitForSelector('#f')).contentFrame();
    await frame!.waitForLoadState();
    assert.ok(!frame!.url().startsWith(s.issuer!), `the browser refused to show it in a frame: ${frame!.url()}`);
    await page.close();
  });

  it('keyboard only: tab to the fields and submit with Enter', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await browser.newPage({ viewport: { width: 360, height: 740 } });
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: redirect,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    await page.goto(url.toString());
    await page.keyboard.type('carol');
    await page.keyboard.press('Tab');
    await page.keyboard.type('wrong');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').waitFor();
    assert.match((await page.getByRole('alert').textContent())!, /Wrong user name or password/);
    await page.screenshot({ path: `${ARTIFACTS}oidc-login-mobile.png`, fullPage: true });
    await page.close();
  });
});
