import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { systemClock, type Clock } from '../../src/core/clock.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { freePort } from '../helpers/processes.js';
import { radclient, q } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';
import { VirtualAuthenticator, registerPasskey } from '../helpers/webauthn.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const SECRET = 'radius-passkey-secret';

/** The system clock, moved forward by hand: sessions can be made old without waiting. */
let skew = 0;
const skewed: Clock = { now: () => Date.now() + skew, at: (t, fn) => systemClock.at(t - skew, fn) };

/**
 * Console administrators and passkeys: a signed-in administrator adds one on their user
 * page, signs in with it alone and as the second step; a user without console access gets
 * no session from theirs; RADIUS says why a passkey-only user cannot log in there.
 */
describe('passkeys in the console, in Chromium', () => {
  let s: TestServer;
  let publicUrl: string;
  let browser: Browser;
  let page: Page;
  let otpSecret: string;

  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    const port = await freePort();
    publicUrl = `http://localhost:${port}`;
    s = await startTestServer({ COUNTERSIGN_HTTP_PORT: String(port), COUNTERSIGN_PUBLIC_URL: publicUrl }, { clock: skewed }, (config) => {
      config.radius.clients = [
        { name: 'vpn', address: '127.0.0.1/32', secret: SECRET, mode: 'push-wait', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      ];
    });
    await s.api('POST', '/api/v1/users', { name: 'root', password: 'root-pw', role: 'admin' });
    otpSecret = (await s.api('POST', '/api/v1/users/root/otp', {})).body.secret;
    await s.api('POST', '/api/v1/users', { name: 'ursula', password: 'ursula-pw' });
    browser = await launchChromium();
    page = await browser.newPage();
    await VirtualAuthenticator.add(page);
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  const signedInAs = async (user: string) => {
    await page.locator('#who-name').filter({ hasText: user }).waitFor({ timeout: 10_000 });
    assert.equal(await page.textContent('#who-name'), user);
  };
  const signOut = async () => {
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.locator('#signin-form').waitFor();
  };

  it('a signed-in administrator adds a passkey on their own user page', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium') || !requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    await page.goto(`${publicUrl}/console/`);
    await page.locator('#si-user').fill('root');
    await page.locator('#si-password').fill('root-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(otpSecret));
    await page.getByRole('button', { name: 'Verify' }).click();
    await signedInAs('root');
    await page.goto(`${publicUrl}/console/#/users/root`);
    await page.getByLabel('Add a passkey to sign in to the console').fill('Admin laptop');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.locator('#passkeys-table th', { hasText: 'Admin laptop' }).waitFor();
    await page.screenshot({ path: `${ARTIFACTS}passkey-console-user.png`, fullPage: true });
    const listed = (await s.api('GET', '/api/v1/users/root/passkeys')).body.passkeys;
    assert.deepEqual(listed.map((p: { name: string }) => p.name), ['Admin laptop']);
    const [event] = await s.ctx.store.audit.query({ user: 'root', limit: 1 });
    assert.equal((event!.detail as { action: string }).action, 'passkey.register');
  });

  it('signs in with the passkey alone (no password): a console session, audited', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    await signOut();
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await page.screenshot({ path: `${ARTIFACTS}passkey-console-signin.png`, fullPage: true });
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await signedInAs('root');
    const logins = await s.ctx.store.audit.query({ user: 'root', front: 'console', limit: 5 });
    assert.ok(logins.some((e) => e.type === 'login' && e.method === 'passwordless-hwk' && e.outcome === 'approved'), 'the login is audited as passwordless');
  });

  it('after the password, "Use a passkey" is the second step', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    await signOut();
    await page.locator('#si-user').fill('root');
    await page.locator('#si-password').fill('root-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Use a passkey' }).waitFor();
    await page.screenshot({ path: `${ARTIFACTS}passkey-console-second-step.png`, fullPage: true });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await signedInAs('root');
    const [login] = (await s.ctx.store.audit.query({ user: 'root', front: 'console', limit: 5 })).filter((e) => e.type === 'login');
    assert.equal(login!.method, 'passkey-hwk');
  });

  it('adding a passkey needs a recent sign-in, and the CSRF token', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const call = (path: string, csrf?: string) =>
      page.evaluate(
        async ([p, c]) => {
          const r = await fetch(p!, { method: 'POST', headers: { 'content-type': 'application/json', ...(c ? { 'x-csrf-token': c } : {}) }, body: '{}' });
          return { status: r.status, body: await r.json() };
        },
        [path, csrf] as const,
      );
    const { csrf } = await page.evaluate(async () => (await fetch('/console/api/session')).json());
    assert.equal((await call('/console/api/passkeys/options')).status, 403, 'no CSRF token, no options');
    assert.equal((await call('/console/api/passkeys/options', csrf)).status, 200);
    skew += 16 * 60_000;
    try {
      const late = await call('/console/api/passkeys/options', csrf);
      assert.equal(late.status, 403);
      assert.equal(late.body.error, 'sign_in_again');
    } finally {
      skew -= 16 * 60_000;
    }
  });

  it('a passkey of a user without console access opens no console session', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const other = await browser.newPage();
    await VirtualAuthenticator.add(other);
    await other.goto(`${publicUrl}/console/`);
    await registerPasskey(other, s.ctx.passkeys, 'ursula', 'Phone');
    await other.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await other.getByText('wrong user name or password, or no console access', { exact: false }).waitFor();
    await other.screenshot({ path: `${ARTIFACTS}passkey-console-refused.png`, fullPage: true });
    assert.equal(await other.locator('#who').isVisible(), false);
    await other.close();
  });

  it('RADIUS and the bridge cannot carry a passkey: a passkey-only user is told so', async (t) => {
    if (!requirePeer(t, hasCommand('radclient'), 'radclient') || !requirePeer(t, haveChromium, 'chromium')) return;
    // ursula's only factor is the passkey registered above.
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'ursula', 'User-Password': q('ursula-pw') });
    assert.equal(r.code, 'Access-Reject');
    assert.match(r.attributes['Reply-Message'] ?? '', /passkey/i);
    assert.match(r.attributes['Reply-Message'] ?? '', /web browser/);
    // The Windows logon bridge says the same in its own words.
    const token = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'fleet' })).body.token;
    const logon = await s.api('POST', '/bridge/v1/logins', { user: 'ursula', password: 'ursula-pw', workstation: 'ws-1', scenario: 'logon' }, token);
    assert.equal(logon.status, 403);
    assert.equal(logon.body.error, 'passkey_needs_browser');
    assert.match(logon.body.message, /works only in a web browser/);
    // An answer naming a credential nobody registered is refused before anything else.
    const { ticket } = await s.ctx.passkeys.authenticationOptions('ursula');
    const unknown = { id: 'AAAA', rawId: 'AAAA', type: 'public-key' as const, response: { clientDataJSON: '', authenticatorData: '', signature: '' }, clientExtensionResults: {} };
    await assert.rejects(s.ctx.passkeys.verifyAuthentication(ticket, unknown), { code: 'passkey_unknown' });
  });
});
