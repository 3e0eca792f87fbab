import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import type { Browser, Page } from 'playwright-core';
import { ACR_MFA } from '../../src/fronts/oidc/provider.js';
import { WEBAUTHN_JS } from '../../src/fronts/web/webauthn/browser.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { requirePeer } from '../helpers/peers.js';
import { freePort } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VirtualAuthenticator, getInPage, idTokenClaims, registerPasskey } from '../helpers/webauthn.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;

/**
 * Passkeys at the OpenID Connect pages, with Chromium's virtual authenticator and
 * openid-client as the relying party. The server's public address is http://localhost:<port>
 * (a WebAuthn rpID is a host name, never an IP address).
 */
describe('passkeys at the OpenID Connect sign-in, in Chromium', () => {
  let s: TestServer;
  let publicUrl: string;
  let rpServer: Server;
  let redirect: string;
  let rp: client.Configuration;
  let staffOnly: client.Configuration;
  let browser: Browser;

  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    rpServer = createServer((req, res) => {
      const u = new URL(req.url!, 'http://x');
      res.setHeader('content-type', 'text/html');
      res.end(`<h1 id="rp">${u.searchParams.get('code') ? 'Signed in to the app' : `Not signed in: ${u.searchParams.get('error')}`}</h1><p id="desc">${u.searchParams.get('error_description') ?? ''}</p>`);
    });
    await new Promise<void>((r) => rpServer.listen(0, '127.0.0.1', r));
    redirect = `http://127.0.0.1:${(rpServer.address() as AddressInfo).port}/cb`;
    const port = await freePort();
    publicUrl = `http://localhost:${port}`;
    s = await startTestServer({ COUNTERSIGN_HTTP_PORT: String(port), COUNTERSIGN_PUBLIC_URL: publicUrl }, {}, (config) => {
      config.oidc.clients = [
        { client_id: 'portal', client_secret: 'portal-secret-0123456789', client_name: 'Staff portal', redirect_uris: [redirect] },
        { client_id: 'payroll', client_secret: 'payroll-secret-012345678', client_name: 'Payroll', redirect_uris: [redirect], countersign_allow_groups: ['payroll'] },
      ];
    });
    const discover = (id: string, secret: string) => client.discovery(new URL(s.issuer!), id, secret, undefined, { execute: [client.allowInsecureRequests] });
    rp = await discover('portal', 'portal-secret-0123456789');
    staffOnly = await discover('payroll', 'payroll-secret-012345678');
    await s.api('POST', '/api/v1/users', { name: 'dana', password: 'dana-pw' });
    await s.api('POST', '/api/v1/users/dana/otp', {});
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    rpServer?.close();
  });

  /** A fresh browser context with its own virtual authenticator, on the server's origin. */
  const withAuthenticator = async (opts: { isUserVerified?: boolean } = {}, at = `${publicUrl}/console/`) => {
    const page = await browser.newPage();
    const authenticator = await VirtualAuthenticator.add(page, opts);
    await page.goto(at);
    return { page, authenticator };
  };

  /** Starts an authorization at the relying party; returns the page on the sign-in form and the PKCE verifier. */
  const authorize = async (page: Page, config = rp) => {
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    await page.goto(url.toString());
    return verifier;
  };
  /** Waits for the relying party's callback and redeems the code: the ID token's claims. */
  const tokens = async (page: Page, verifier: string, config = rp) => {
    await page.waitForURL((u) => u.toString().startsWith(redirect), { timeout: 10_000 });
    assert.equal(await page.textContent('#rp'), 'Signed in to the app', (await page.textContent('#desc').catch(() => '')) ?? '');
    const t = await client.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: verifier });
    return idTokenClaims(t.id_token!);
  };

  let shared: { page: Page; authenticator: VirtualAuthenticator };

  it('registers a passkey (the portal’s ceremony: options from the server, create() in the browser)', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    shared = await withAuthenticator();
    const info = await registerPasskey(shared.page, s.ctx.passkeys, 'dana', 'Work laptop');
    assert.equal(info.name, 'Work laptop');
    assert.equal(info.deviceType, 'singleDevice', 'a virtual CTAP2 authenticator does not sync');
    const [stored] = await shared.authenticator.credentials();
    assert.equal(stored!.isResidentCredential, true, 'a discoverable credential (resident key)');
    const listed = await s.api('GET', '/api/v1/users/dana/passkeys');
    assert.deepEqual(listed.body.passkeys.map((p: { name: string }) => p.name), ['Work laptop']);
    // The same authenticator cannot register twice (excludeCredentials): one factor is not two.
    const again = await s.ctx.passkeys.registrationOptions('dana');
    assert.deepEqual(again.excludeCredentials?.map((c) => c.id), [info.id]);
  });

  it('after the password, "Use a passkey" beside the code signs in: amr pwd hwk user mfa', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const { page } = shared;
    const verifier = await authorize(page);
    await page.getByLabel('User name').fill('dana');
    await page.getByLabel('Password').fill('dana-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Use a passkey' }).waitFor();
    assert.ok(await page.getByLabel('Code from your authenticator app').isVisible(), 'the code is still offered beside it');
    await page.screenshot({ path: `${ARTIFACTS}passkey-oidc-second-factor.png`, fullPage: true });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    const claims = await tokens(page, verifier);
    assert.deepEqual(claims.amr, ['pwd', 'hwk', 'user', 'mfa']);
    assert.equal(claims.acr, ACR_MFA);
    assert.equal(claims.sub, 'dana');
    const [last] = await s.ctx.store.audit.query({ user: 'dana', limit: 1 });
    assert.equal(last!.method, 'passkey-hwk');
  });

  it('passwordless: "Sign in with a passkey" alone signs in: amr hwk user mfa, no pwd', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    // A new browser session (no single sign-on), the same authenticator.
    const { authenticator } = shared;
    const page = await browser.newPage();
    const copy = await VirtualAuthenticator.add(page);
    await copy.addCredential((await authenticator.credentials())[0]!);
    await shared.page.close();
    shared = { page, authenticator: copy };
    const verifier = await authorize(page);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await page.screenshot({ path: `${ARTIFACTS}passkey-oidc-login.png`, fullPage: true });
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    const claims = await tokens(page, verifier);
    assert.deepEqual(claims.amr, ['hwk', 'user', 'mfa']);
    assert.equal(claims.acr, ACR_MFA);
    assert.equal(claims.sub, 'dana');
    const [last] = await s.ctx.store.audit.query({ user: 'dana', limit: 1 });
    assert.equal(last!.method, 'passwordless-hwk');
    assert.equal(last!.front, 'oidc');
  });

  it('passwordless still meets the client’s policy: a group-only client refuses a non-member', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await browser.newPage();
    const a = await VirtualAuthenticator.add(page);
    await a.addCredential((await shared.authenticator.credentials())[0]!);
    await authorize(page, staffOnly);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL((u) => u.toString().startsWith(redirect), { timeout: 10_000 });
    assert.match((await page.textContent('#rp'))!, /access_denied/);
    assert.match((await page.textContent('#desc'))!, /may not sign in here/);
    await page.close();
  });

  it('refuses an answer made for another origin (a look-alike page), and a tampered clientDataJSON', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    // Another origin with the same host (another port): the browser lets it use rpID localhost
    // and signs for that origin; only the server's origin check stands between it and a login.
    const lookalike = createServer((req, res) => {
      if (req.url === '/webauthn.js') res.setHeader('content-type', 'text/javascript').end(WEBAUTHN_JS);
      else res.setHeader('content-type', 'text/html').end('<!doctype html><title>Sign in</title><h1>Totally the real sign-in</h1>');
    });
    await new Promise<void>((r) => lookalike.listen(0, '127.0.0.1', r));
    const page = await browser.newPage();
    const a = await VirtualAuthenticator.add(page);
    await a.addCredential((await shared.authenticator.credentials())[0]!);
    await page.goto(`http://localhost:${(lookalike.address() as AddressInfo).port}/`);
    const { options, ticket } = await s.ctx.passkeys.authenticationOptions();
    const answer = await getInPage(page, options);
    assert.equal(JSON.parse(Buffer.from(answer.response.clientDataJSON, 'base64url').toString()).origin, `http://localhost:${(lookalike.address() as AddressInfo).port}`);
    await assert.rejects(s.ctx.passkeys.verifyAuthentication(ticket, answer), { code: 'passkey_wrong_origin', status: 401 });
    lookalike.close();

    // The right origin, with clientDataJSON edited afterwards: the origin check or the signature refuses it.
    await page.goto(`${publicUrl}/console/`);
    const second = await s.ctx.passkeys.authenticationOptions();
    const good = await getInPage(page, second.options);
    const data = JSON.parse(Buffer.from(good.response.clientDataJSON, 'base64url').toString());
    const forged = { ...good, response: { ...good.response, clientDataJSON: Buffer.from(JSON.stringify({ ...data, origin: 'https://elsewhere.example' })).toString('base64url') } };
    await assert.rejects(s.ctx.passkeys.verifyAuthentication(second.ticket, forged), { code: 'passkey_wrong_origin' });
    // A ticket is spent by its first answer, right or wrong: the good answer cannot follow.
    await assert.rejects(s.ctx.passkeys.verifyAuthentication(second.ticket, good), { code: 'passkey_challenge_unknown' });
    await page.close();
  });

  it('refuses a cloned authenticator whose counter is behind the original’s', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const original = await withAuthenticator();
    const info = await registerPasskey(original.page, s.ctx.passkeys, 'dana', 'Security key');
    const [cred] = (await original.authenticator.credentials()).filter((c) => Buffer.from(c.credentialId, 'base64').toString('base64url') === info.id);
    assert.ok(cred, 'the new credential is in the authenticator');
    // The clone: the same private key, with the counter as it was before the original moved on.
    const clone = await withAuthenticator();
    await clone.authenticator.addCredential({ ...cred!, signCount: 0 });
    const use = async (page: Page) => {
      const { options, ticket } = await s.ctx.passkeys.authenticationOptions('dana');
      return s.ctx.passkeys.verifyAuthentication(ticket, await getInPage(page, options), 'dana');
    };
    await use(original.page);
    await use(original.page);
    const counter = (await s.ctx.store.passkeys.get(info.id))!.counter;
    assert.ok(counter >= 2, `the original's counter advanced (${counter})`);
    await assert.rejects(use(clone.page), { code: 'passkey_counter' });
    assert.equal((await s.ctx.store.passkeys.get(info.id))!.counter, counter, 'the refused clone moved nothing');
    await use(original.page); // the original still works
    await original.page.close();
    await clone.page.close();
    assert.equal((await s.api('DELETE', `/api/v1/users/dana/passkeys/${info.id}`)).status, 200);
  });

  it('refuses an answer without user verification, even when the page asked for none', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const page = await browser.newPage();
    const a = await VirtualAuthenticator.add(page);
    await a.addCredential((await shared.authenticator.credentials())[0]!);
    await a.cdp.send('WebAuthn.setUserVerified', { authenticatorId: a.id, isUserVerified: false });
    await page.goto(`${publicUrl}/console/`);
    const { options, ticket } = await s.ctx.passkeys.authenticationOptions();
    // As the server asks (verification required), the browser itself refuses without it.
    await assert.rejects(getInPage(page, options), /NotAllowedError|not allowed/i);
    // A page that asked for none gets an answer without UV: the server refuses it.
    const second = await s.ctx.passkeys.authenticationOptions();
    const answer = await getInPage(page, { ...second.options, userVerification: 'discouraged' });
    const flags = Buffer.from(answer.response.authenticatorData, 'base64url')[32]!;
    assert.equal(flags & 0x04, 0, 'the authenticator did not verify the user (UV flag clear)');
    await assert.rejects(s.ctx.passkeys.verifyAuthentication(second.ticket, answer), { code: 'passkey_not_verified' });
    await s.ctx.passkeys.verifyAuthentication(ticket, answer).then(
      () => assert.fail('a ticket answered with another challenge must not pass'),
      () => {},
    );
    await page.close();
  });
});
