import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import { seedDemo } from '../../src/demo.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { freePort } from '../helpers/processes.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp.js';
import { VirtualAuthenticator } from '../helpers/webauthn.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const AUTH = { user: 'relay', password: 'relay-secret-2' };

/**
 * A newcomer end to end: the invitation mail, the portal (a passkey on Chromium's virtual
 * authenticator, and a TOTP app), then the demo relying party with each.
 */
describe('a newcomer: invitation → portal → passkey and TOTP → the demo application', () => {
  let s: TestServer;
  let smtp: SmtpReceiver;
  let browser: Browser;
  let publicUrl: string;
  let totpSecret = '';
  const up = haveChromium && hasCommand('oathtool') && hasCommand('openssl');

  before(async () => {
    if (!up) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    smtp = await startSmtpReceiver(AUTH);
    const port = await freePort();
    // Passkeys are bound to a host name (not an address): localhost.
    publicUrl = `http://localhost:${port}`;
    s = await startTestServer({
      COUNTERSIGN_MODE: 'development',
      COUNTERSIGN_DEMO: 'true',
      COUNTERSIGN_HTTP_PORT: String(port),
      COUNTERSIGN_PUBLIC_URL: publicUrl,
      COUNTERSIGN_MAIL_SMTP_HOST: '127.0.0.1',
      COUNTERSIGN_MAIL_SMTP_PORT: String(smtp.port),
      COUNTERSIGN_MAIL_SMTP_USER: AUTH.user,
      COUNTERSIGN_MAIL_SMTP_PASSWORD: AUTH.password,
      COUNTERSIGN_MAIL_SMTP_CA_FILE: smtp.caFile,
    });
    await seedDemo(s); // the demo relying party, as `countersign serve` does
    await s.api('POST', '/api/v1/users', { name: 'nora', password: 'nora-pw', email: 'nora@example.org', displayName: 'Nora Newcomer' });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    await smtp?.close();
  });
  const ready = (t: TestContext) => requirePeer(t, up, 'chromium, oathtool and openssl');

  it('receives the invitation, enrols a passkey and TOTP in the portal, and signs in to the demo app with each', async (t) => {
    if (!ready(t)) return;
    const r = await s.api('POST', '/api/v1/invitations', { users: ['nora'] });
    assert.equal(r.body.results[0].ok, true, JSON.stringify(r.body));
    const [mail] = await smtp.waitFor(1);
    const link = /https?:\/\/\S+\/account\/#invite=\S+/.exec(mail!.text)![0];
    assert.ok(link.startsWith(`${publicUrl}/account/#invite=`));

    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('dialog', (d) => void d.accept());
    await VirtualAuthenticator.add(page);
    await page.goto(link);
    await page.getByText('You were invited to set up a second factor').waitFor();
    await page.getByLabel('User name').fill('nora');
    await page.getByLabel('Password').fill('nora-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.locator('#portal').waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the spent invitation leaves the address bar');

    await page.getByLabel('Name for a new passkey').fill('Laptop');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.getByText('Passkey added.').waitFor();
    assert.match((await page.textContent('#passkeys'))!, /Laptop/);

    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    // The QR code's link is filled in when the server has answered: wait for it, not for the click.
    await page.locator('#otp-setup').waitFor();
    totpSecret = new URL((await page.getAttribute('#otpauth', 'href'))!).searchParams.get('secret')!;
    await page.getByLabel('Code from the app').fill(oathTotp(totpSecret));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.getByText('On: your authenticator app is set up.').waitFor();
    await page.screenshot({ path: `${ARTIFACTS}account-newcomer-portal.png`, fullPage: true });

    // The demo application, with the passkey (same browser, its virtual authenticator).
    await page.goto(`${publicUrl}/demo-app/`);
    await page.getByRole('button', { name: 'Sign in, MFA required' }).click();
    await page.getByLabel('User name').fill('nora');
    await page.getByLabel('Password').fill('nora-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(`${publicUrl}/demo-app/`);
    assert.equal(await page.textContent('#sub'), 'nora');
    assert.equal(await page.textContent('#acr'), 'urn:countersign:mfa');
    await context.close();

    // And with the TOTP app, in a browser without the passkey. The code of the next time step:
    // the enrolment spent this one.
    const other = await browser.newPage();
    await other.goto(`${publicUrl}/demo-app/`);
    await other.getByRole('button', { name: 'Sign in, MFA required' }).click();
    await other.getByLabel('User name').fill('nora');
    await other.getByLabel('Password').fill('nora-pw');
    await other.getByRole('button', { name: 'Continue' }).click();
    await other.getByLabel('Code from your authenticator app').fill(oathTotp(totpSecret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]));
    await other.getByRole('button', { name: 'Verify' }).click();
    await other.waitForURL(`${publicUrl}/demo-app/`);
    assert.equal(await other.textContent('#sub'), 'nora');
    assert.deepEqual((await other.textContent('#amr'))!.split(' '), ['pwd', 'otp', 'mfa']);
    await other.screenshot({ path: `${ARTIFACTS}account-newcomer-demo-app.png`, fullPage: true });
    await other.close();
  });
});
