import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { Authenticator } from '../../src/cli/authenticator.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;

/** A code that is certainly not the right one now: the right one with its last digit changed. */
const wrongCode = (right: string) => right.slice(0, -1) + String((Number(right.at(-1)) + 5) % 10);

describe('the self-service portal (/account/) in headless Chromium', () => {
  let s: TestServer;
  let browser: Browser;
  let page: Page;
  let otpSecret: string;
  let phone: Authenticator;
  const up = haveChromium && hasCommand('oathtool');

  before(async () => {
    if (!up) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await startTestServer({}, {}, (c) => {
      c.push.rateLimit.count = 100;
    });
    await s.api('POST', '/api/v1/users', { name: 'dana', password: 'dana-pw', displayName: 'Dana Scully' });
    otpSecret = (await s.api('POST', '/api/v1/users/dana/otp', {})).body.secret;
    await s.api('POST', '/api/v1/users/factors', { users: ['dana'], factor: 'push', enabled: true });
    phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/dana/enrolments')).body.uri, { name: 'Old phone' });
    browser = await launchChromium();
    page = await browser.newPage();
    page.on('dialog', (d) => void d.accept());
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });
  const ready = (t: TestContext) => requirePeer(t, up, 'chromium and oathtool');

  const signInWithPassword = async () => {
    await page.goto(`${s.url}/account/`);
    await page.getByLabel('User name').fill('dana');
    await page.getByLabel('Password').fill('dana-pw');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.locator('#second').waitFor();
  };
  const signOut = async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#signin').waitFor();
  };

  it('signs in with the password and a one-time code', async (t) => {
    if (!ready(t)) return;
    await page.goto(`${s.url}/account/`);
    await page.screenshot({ path: `${ARTIFACTS}account-signin.png` });
    await page.getByLabel('User name').fill('dana');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('Wrong user name or password.').waitFor();
    await signInWithPassword();
    assert.equal(await page.locator('#display-code').isVisible(), true, 'push is offered too');
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(otpSecret));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.locator('#portal').waitFor();
    assert.match((await page.textContent('#who-name'))!, /Dana Scully \(dana\)/);
    assert.match((await page.textContent('#devices'))!, /Old phone \(android\)/);
  });

  it('enrols a TOTP app: a wrong code is refused, the right one switches it on', async (t) => {
    if (!ready(t)) return;
    const before = (await s.ctx.store.users.get('dana'))!.otpSecret;
    await page.getByRole('button', { name: /Set up a new authenticator app/ }).click();
    await page.locator('#otp-setup').waitFor();
    const uri = new URL((await page.getAttribute('#otpauth', 'href'))!);
    assert.equal(uri.protocol, 'otpauth:');
    const secret = uri.searchParams.get('secret')!;
    await page.screenshot({ path: `${ARTIFACTS}account-totp-qr.png`, fullPage: true });
    await page.getByLabel('Code from the app').fill(wrongCode(oathTotp(secret)));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.getByText('That code does not match').waitFor();
    assert.equal((await s.ctx.store.users.get('dana'))!.otpSecret, before, 'nothing changed yet');
    await page.getByLabel('Code from the app').fill(oathTotp(secret));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.getByText('On: your authenticator app is set up.').waitFor();
    const after = (await s.ctx.store.users.get('dana'))!;
    assert.notEqual(after.otpSecret, before);
    assert.equal(after.otpEnabled, true);
    assert.ok((after.otpLast ?? -1) >= 0, 'the verifying code is spent');
    otpSecret = secret;
  });

  it('makes 10 recovery codes, shown once and stored hashed; one works once', async (t) => {
    if (!ready(t)) return;
    await page.getByRole('button', { name: 'Create new recovery codes' }).click();
    await page.locator('#recovery-new').waitFor();
    const codes = (await page.locator('#recovery-codes li').allTextContents()).map((c) => c.trim());
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes) assert.match(c, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/);
    await page.screenshot({ path: `${ARTIFACTS}account-recovery-codes.png`, fullPage: true });
    // The store keeps digests only.
    const stored = (await s.ctx.store.settings.get('recovery', 'dana'))!;
    for (const c of codes) {
      assert.ok(!stored.includes(c) && !stored.includes(c.replace(/-/g, '')), 'no code in clear');
    }
    assert.equal((JSON.parse(stored) as { digests: string[] }).digests.length, 10);
    // Shown once: a reload shows the count, not the codes.
    await page.reload();
    await page.locator('#portal').waitFor();
    assert.equal(await page.locator('#recovery-new').isVisible(), false);
    assert.match((await page.textContent('#recovery-status'))!, /10 of 10 codes left/);

    await signOut();
    await signInWithPassword();
    await page.getByText('Lost your phone? Use a recovery code').click();
    await page.getByLabel('Recovery code', { exact: true }).fill(codes[0]!.toUpperCase());
    await page.getByRole('button', { name: 'Use recovery code' }).click();
    await page.locator('#portal').waitFor();
    assert.match((await page.textContent('#recovery-status'))!, /9 of 10 codes left/);

    await signOut();
    await signInWithPassword();
    await page.getByText('Lost your phone? Use a recovery code').click();
    await page.getByLabel('Recovery code', { exact: true }).fill(codes[0]!);
    await page.getByRole('button', { name: 'Use recovery code' }).click();
    await page.getByText('This recovery code is wrong or was already used.').waitFor();
    await page.screenshot({ path: `${ARTIFACTS}account-recovery-reused.png` });
    await page.getByLabel('Recovery code', { exact: true }).fill(codes[1]!);
    await page.getByRole('button', { name: 'Use recovery code' }).click();
    await page.locator('#portal').waitFor();
  });

  it('refuses a change without the CSRF token', async (t) => {
    if (!ready(t)) return;
    const bare = await page.request.post(`${s.url}/account/api/recovery`, { data: {} });
    assert.equal(bare.status(), 403);
    assert.equal((await bare.json()).error, 'csrf');
    const del = await page.request.delete(`${s.url}/account/api/devices/${phone.file.deviceId}`, { headers: { 'x-csrf-token': 'not-the-token' } });
    assert.equal(del.status(), 403);
    assert.equal((await s.ctx.devices.list('dana')).length, 1, 'the device is still there');
    // Without a session, nothing at all.
    const anon = await fetch(`${s.url}/account/api/me`);
    assert.equal(anon.status, 401);
  });

  it('adds the web app from a link, and removes a device', async (t) => {
    if (!ready(t)) return;
    await page.getByRole('button', { name: 'Add the web app or a phone' }).click();
    await page.locator('#enrol').waitFor();
    const appUrl = (await page.getAttribute('#enrol-link', 'href'))!;
    assert.ok(appUrl.startsWith(`${s.url}/app/#enrol=`));
    await Authenticator.enrol(`countersign://enrol?${appUrl.split('#enrol=')[1]}`, { name: 'New phone' });
    await page.getByText('New phone (android)').waitFor({ timeout: 10_000 });
    await page.getByRole('button', { name: 'Remove Old phone' }).click();
    await page.getByText('Old phone').waitFor({ state: 'detached' });
    const left = await s.ctx.devices.list('dana');
    assert.deepEqual(left.map((d) => d.name), ['New phone']);
    assert.equal((await s.ctx.store.users.get('dana'))!.pushEnabled, true);
    await page.screenshot({ path: `${ARTIFACTS}account-portal.png`, fullPage: true });
  });

  it('lists recent sign-ins with how they were made, and "this wasn\'t me" reports', async (t) => {
    if (!ready(t)) return;
    // A push the user reports as not theirs, from an OpenID-like login elsewhere.
    const c = await s.ctx.login.begin('dana', null, { front: 'radius', client: 'vpn', ip: '192.0.2.7' }, { only: 'push', policy: null });
    const newPhone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/dana/enrolments')).body.uri, { name: 'Third' });
    await newPhone.answer(c.id, 'reject', { reason: 'not-me' });
    await page.reload();
    await page.locator('#portal').waitFor();
    const rows = await page.locator('#signins tbody tr').allTextContents();
    assert.ok(rows.some((r) => /account/.test(r) && /otp/.test(r) && /approved/.test(r)), rows.join('\n'));
    assert.ok(rows.some((r) => /recovery/.test(r) && /approved/.test(r)), rows.join('\n'));
    assert.ok(rows.some((r) => /radius · vpn/.test(r) && /192\.0\.2\.7/.test(r)), rows.join('\n'));
    assert.match((await page.textContent('#reports'))!, /vpn from 192\.0\.2\.7/);
    await page.screenshot({ path: `${ARTIFACTS}account-activity.png`, fullPage: true });
  });
});
