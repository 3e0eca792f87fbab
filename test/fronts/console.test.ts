import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const haveOathtool = hasCommand('oathtool');
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const SEEDED = 2000;
const PAGE_SIZE = 50;

const STATIC = new URL('../../src/fronts/console/static/', import.meta.url).pathname;
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/**
 * Stand-in for the server's static route, used only when the server does not
 * serve /console itself: the console's files with the console's headers, and
 * every other request passed through to the server, so the page and the API
 * share one origin as they do in production.
 */
async function staticShim(target: string): Promise<{ url: string; server: Server }> {
  const types: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
  const server = createServer((req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    if (path === '/console') {
      res.writeHead(301, { location: '/console/' }).end();
      return;
    }
    const file = /^\/console\/(index\.html|app\.css|js\/[a-z-]+\.js)?$/.exec(path);
    if (file) {
      const name = file[1] ?? 'index.html';
      res.writeHead(200, {
        'content-type': types[name.split('.').pop()!]!,
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-store',
      });
      res.end(readFileSync(`${STATIC}${name}`));
      return;
    }
    const up = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The admin console (/console) driven in headless Chromium: the sign-in with
 * a second factor, the users list over a few thousand users, bulk changes,
 * enrolment QR codes, devices, live logins, audit charts, and the guards
 * (CSRF, read-only help desk, expired sessions).
 */
describe('admin console in headless Chromium', () => {
  let s: TestServer;
  /** Where the browser finds the console: the server itself, or the shim when the server does not serve it. */
  let base: string;
  let servedByServer = false;
  let shim: Server | undefined;
  let browser: Browser;
  let adminCtx: BrowserContext;
  let admin: Page;
  const secrets: Record<string, string> = {};
  /** CSP violations and uncaught errors in the admin's page: there must be none. */
  const pageProblems: string[] = [];
  let helenPhone: Authenticator;

  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await startTestServer({}, {}, (config) => {
      config.oidc.clients = [
        { client_id: 'staff-portal', client_secret: 'portal-secret-0123456789', client_name: 'Staff portal', redirect_uris: ['https://portal.example.test/cb'] },
      ];
      config.push.rateLimit.count = 100;
    });

    // An hour of login history for the audit charts, oldest first (the audit log is append-only).
    const now = Date.now();
    const fronts = ['oidc', 'radius', 'bridge'];
    for (let i = 0; i < 180; i++) {
      const at = now - 3_540_000 + i * 19_000 + (i % 7) * 1000;
      const r = (i * 37) % 100;
      const outcome = r < 78 ? 'approved' : r < 88 ? 'rejected' : r < 96 ? 'expired' : 'cancelled';
      const durationMs = outcome === 'approved' ? 600 + ((i * 7919) % 14_000) * (r % 3 === 0 ? 2 : 1) : outcome === 'expired' ? 150_000 : 2000 + (i % 9) * 900;
      await s.ctx.store.audit.append({
        at,
        type: 'login',
        user: `user-${String(i % 40).padStart(4, '0')}`,
        front: fronts[i % 3],
        client: ['vpn-gw', 'staff-portal', 'WS-0142'][i % 3],
        ip: `10.1.${i % 4}.${(i * 13) % 250}`,
        method: outcome === 'approved' ? (i % 4 === 0 ? 'otp' : 'push') : outcome === 'expired' ? 'deadline' : 'push',
        outcome,
        durationMs,
        challengeId: `seed${String(i).padStart(16, '0')}`,
      });
    }

    // Console users: two administrators with OTP, a help desk user with a phone.
    for (const name of ['ada', 'olga']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, role: 'admin', displayName: `${name[0]!.toUpperCase()}${name.slice(1)} Admin` })).status, 201);
      secrets[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    await s.api('POST', '/api/v1/users', { name: 'helen', password: 'helen-pw', role: 'helpdesk', displayName: 'Helen Desk' });
    await s.api('POST', '/api/v1/users/factors', { users: ['helen'], factor: 'push', enabled: true });
    helenPhone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/helen/enrolments')).body.uri, { name: 'Helen’s phone' });

    // People to work on.
    for (const name of ['bulk-a', 'bulk-b', 'bulk-c', 'bulk-d', 'erin', 'frank', 'gina', 'hugo']) {
      await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, displayName: `${name[0]!.toUpperCase()}${name.slice(1)} Example` });
    }
    for (const name of ['erin', 'gina', 'hugo']) await s.api('POST', `/api/v1/users/${name}/otp`, {});
    await s.api('POST', '/api/v1/radius-clients', { name: 'vpn-gw', address: '10.0.0.0/24', secret: 'radius-secret-123', mode: 'challenge' });
    await s.api('POST', '/api/v1/bridge-credentials', { name: 'office-fleet', scope: 'fleet' });

    // A directory big enough that loading it all would show.
    const page = await fetch(`${s.url}/console/`);
    servedByServer = page.status === 200 && (await page.text()).includes('js/main.js');
    if (servedByServer) base = s.url;
    else ({ url: base, server: shim } = await staticShim(s.url));

    const names = Array.from({ length: SEEDED }, (_, i) => `user-${String(i).padStart(4, '0')}`);
    await pool(names, 32, (name) => s.ctx.users.create({ name }));

    browser = await launchChromium();
    adminCtx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    adminCtx.setDefaultTimeout(8000);
    admin = await adminCtx.newPage();
    admin.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) pageProblems.push(m.text());
    });
    admin.on('pageerror', (e) => pageProblems.push(`uncaught: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    shim?.close();
    await s?.close();
  });

  const ready = (t: Parameters<typeof requirePeer>[0]) => requirePeer(t, haveChromium, 'chromium');

  /** Password step of the sign-in; leaves the page on the second step. */
  const passwordStep = async (page: Page, user: string, password: string) => {
    await page.goto(`${base}/console/`);
    await page.getByLabel('User name', { exact: true }).fill(user);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.locator('#signin-second').waitFor();
  };
  const signInWithOtp = async (page: Page, user: string) => {
    await passwordStep(page, user, `${user}-pw`);
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(secrets[user]!));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.locator('#users-h').waitFor();
  };
  const goto = async (page: Page, hash: string) => {
    await page.evaluate((h) => {
      location.hash = h;
    }, hash);
  };
  const rowsOf = (page: Page, table: string) => page.locator(`#${table} tbody tr`);

  it('the server serves the console at /console, with a strict CSP', async (t) => {
    if (!ready(t)) return;
    const res = await fetch(`${s.url}/console/`);
    assert.equal(res.status, 200, `GET /console/ answered ${res.status}: mountConsole must serve src/fronts/console/static/ (the other tests ran through a stand-in)`);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.match(await res.text(), /<script type="module" src="js\/main\.js"><\/script>/);
    const main = await fetch(`${s.url}/console/js/main.js`);
    assert.equal(main.status, 200);
    assert.match(main.headers.get('content-type') ?? '', /javascript/, 'module scripts need a JavaScript MIME type');
    assert.ok(servedByServer);
  });

  it('shows the sign-in, and an error for a wrong password', async (t) => {
    if (!ready(t)) return;
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    page.setDefaultTimeout(8000);
    await page.goto(`${base}/console`);
    await page.getByRole('heading', { name: 'Sign in to the console' }).waitFor();
    assert.ok(await page.getByLabel('User name', { exact: true }).evaluate((e) => e === document.activeElement), 'the user field has focus');
    await page.screenshot({ path: `${ARTIFACTS}console-signin.png` });
    await page.getByLabel('User name', { exact: true }).fill('ada');
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.keyboard.press('Enter');
    const alert = page.locator('#signin-msg');
    await alert.waitFor();
    assert.equal(await alert.getAttribute('role'), 'alert');
    assert.match((await alert.textContent())!, /wrong user name or password/i);
    assert.ok(await page.locator('#signin-second').isHidden(), 'no second step without the password');
    await page.screenshot({ path: `${ARTIFACTS}console-signin-error.png` });
    await page.close();
  });

  it('signs an administrator in with a code from oathtool, and shows the role', async (t) => {
    if (!ready(t) || !requirePeer(t, haveOathtool, 'oathtool')) return;
    await passwordStep(admin, 'ada', 'ada-pw');
    assert.match((await admin.locator('#si-who').textContent())!, /ada/);
    await admin.screenshot({ path: `${ARTIFACTS}console-signin-second-step.png` });
    await admin.getByLabel('Code from your authenticator app').fill(oathTotp(secrets.ada!));
    await admin.getByRole('button', { name: 'Verify' }).click();
    await admin.locator('#users-h').waitFor();
    assert.equal(await admin.locator('#who-name').textContent(), 'ada');
    assert.equal(await admin.locator('#who-role').textContent(), 'admin');
    assert.ok(await admin.getByRole('button', { name: 'Sign out' }).isVisible());
    assert.ok(await admin.locator('#bulkbar').isVisible(), 'an admin gets bulk actions');
  });

  it('users: the first page and a prefix search come from the server, a page at a time', async (t) => {
    if (!ready(t)) return;
    const total = (await s.api('GET', '/api/v1/users?limit=1')).body.total as number;
    assert.ok(total > SEEDED);
    const listCalls: URL[] = [];
    const onRequest = (r: { url(): string }) => {
      const u = new URL(r.url());
      if (u.pathname === '/api/v1/users') listCalls.push(u);
    };
    admin.on('request', onRequest);
    await goto(admin, '#/users');
    await admin.locator('#users-count').filter({ hasText: `${total.toLocaleString('en-US')} users in total` }).waitFor();
    assert.equal(await rowsOf(admin, 'users-table').count(), PAGE_SIZE);
    assert.equal(await admin.locator('#users-page').textContent(), `Page 1 · 1–50 of ${total.toLocaleString('en-US')}`);
    await admin.screenshot({ path: `${ARTIFACTS}console-users.png` });

    const started = Date.now();
    await admin.getByLabel('Search by name prefix').fill('user-01');
    await admin.locator('#users-count').filter({ hasText: '100 users starting with “user-01”' }).waitFor();
    const took = Date.now() - started;
    assert.ok(took < 3000, `the search answered in ${took} ms`);
    assert.equal(await rowsOf(admin, 'users-table').count(), PAGE_SIZE);
    assert.equal(await rowsOf(admin, 'users-table').first().locator('td.name').textContent(), 'user-0100');
    await admin.getByRole('button', { name: 'Next page' }).click();
    await admin.locator('#users-page').filter({ hasText: 'Page 2 · 51–100 of 100' }).waitFor();
    assert.equal(await rowsOf(admin, 'users-table').count(), PAGE_SIZE);
    assert.equal(await rowsOf(admin, 'users-table').last().locator('td.name').textContent(), 'user-0199');
    assert.ok(await admin.getByRole('button', { name: 'Next page' }).isDisabled());
    await admin.getByRole('button', { name: 'Previous page' }).click();
    await admin.locator('#users-page').filter({ hasText: 'Page 1 · 1–50 of 100' }).waitFor();
    admin.off('request', onRequest);

    assert.ok(listCalls.length >= 3);
    for (const u of listCalls) assert.equal(u.searchParams.get('limit'), String(PAGE_SIZE), `every list call asks for one page: ${u.search}`);
    assert.ok(listCalls.some((u) => u.searchParams.get('prefix') === 'user-01' && u.searchParams.get('after') === 'user-0149'), 'paging uses the server cursor');
  });

  it('bulk-enables push for exactly the selected users, with progress and a summary', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/users');
    await admin.getByLabel('Search by name prefix').fill('bulk-');
    await admin.locator('#users-count').filter({ hasText: '4 users starting with “bulk-”' }).waitFor();
    await admin.getByLabel('Select all users on this page').check();
    await admin.locator('#bulk-count').filter({ hasText: '4 users selected' }).waitFor();
    await admin.getByLabel('Select bulk-d').uncheck();
    await admin.locator('#bulk-count').filter({ hasText: '3 users selected' }).waitFor();
    assert.equal(await admin.getByLabel('Select all users on this page').evaluate((e) => (e as HTMLInputElement).indeterminate), true);

    // Hold the request a moment so the progress indication can be seen.
    await admin.route('**/api/v1/users/factors', async (route) => {
      await sleep(700);
      await route.continue();
    });
    await admin.getByRole('button', { name: 'Enable push' }).click();
    const progress = admin.locator('#bulk-progress');
    await progress.waitFor();
    assert.equal(await progress.locator('#bulk-progress-text').textContent(), 'Enabling push for 3 users…');
    assert.equal(await progress.locator('progress').getAttribute('value'), null, 'indeterminate while it runs');
    await admin.screenshot({ path: `${ARTIFACTS}console-bulk-progress.png` });
    await admin.locator('#bulk-result h2').filter({ hasText: 'Push enabled for 3 users' }).waitFor();
    await admin.unroute('**/api/v1/users/factors');
    assert.ok(await progress.isHidden());
    assert.match((await admin.locator('#bulk-result .summary').textContent())!, /3 succeeded, 0 failed/);
    await admin.locator('#bulk-count').filter({ hasText: 'No users selected' }).waitFor();
    await admin.screenshot({ path: `${ARTIFACTS}console-bulk-result.png` });

    for (const [name, on] of [['bulk-a', true], ['bulk-b', true], ['bulk-c', true], ['bulk-d', false]] as const) {
      assert.equal((await s.api('GET', `/api/v1/users/${name}`)).body.push.enabled, on, `push for ${name}`);
    }
    // The table shows the new state.
    assert.equal(await admin.locator('tr[data-name="bulk-a"] td').nth(5).textContent(), 'on');
    assert.equal(await admin.locator('tr[data-name="bulk-d"] td').nth(5).textContent(), 'off');
  });

  it('opens a user and shows the OTP enrolment QR code, and a push enrolment link', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/users');
    await admin.getByLabel('Search by name prefix').fill('frank');
    await admin.locator('#users-count').filter({ hasText: '1 user starting with “frank”' }).waitFor();
    await admin.getByRole('link', { name: 'frank', exact: true }).click();
    await admin.getByRole('heading', { name: 'frank', level: 1 }).waitFor();
    await admin.locator('#user-body').waitFor();
    await admin.getByRole('button', { name: 'Enrol OTP' }).click();
    const qr = admin.getByRole('img', { name: 'QR code of the OTP enrolment for frank' });
    await qr.waitFor();
    assert.ok(await qr.isVisible());
    assert.match((await qr.getAttribute('src'))!, /^data:image\/png;base64,/);
    assert.ok((await qr.evaluate((img) => (img as HTMLImageElement).naturalWidth)) > 100, 'the image decoded');
    const uri = await admin.getByLabel('Link', { exact: true }).inputValue();
    assert.match(uri, /^otpauth:\/\/totp\/.*frank/);
    const secret = await admin.getByLabel('Secret for manual entry').inputValue();
    assert.equal(new URL(uri).searchParams.get('secret'), secret);
    await admin.locator('#user-factors').filter({ hasText: 'enabled' }).waitFor();
    await admin.setViewportSize({ width: 1280, height: 1060 });
    await admin.screenshot({ path: `${ARTIFACTS}console-qr.png` });
    if (haveOathtool) {
      // The seed on screen is the one the server keeps.
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'frank', code: oathTotp(secret) })).status, 200);
    }
    await admin.getByRole('button', { name: 'Done — hide it' }).click();
    assert.ok(await qr.isHidden(), 'shown once, then gone');

    await admin.getByRole('button', { name: 'Push enrolment link' }).click();
    const pushQr = admin.getByRole('img', { name: 'QR code of the push enrolment link for frank' });
    await pushQr.waitFor();
    assert.match((await pushQr.getAttribute('src'))!, /^data:image\/png;base64,/);
    assert.match(await admin.getByLabel('Link', { exact: true }).inputValue(), /^countersign:\/\/enrol\?/);
    assert.match((await admin.locator('#enrolment-expiry').textContent())!, /^Expires at .* \(in (9|10) min/);
    await admin.screenshot({ path: `${ARTIFACTS}console-push-link.png` });
    await admin.setViewportSize({ width: 1280, height: 860 });
    // The link on screen works in a phone.
    const phone = await Authenticator.enrol(await admin.getByLabel('Link', { exact: true }).inputValue(), { name: 'Frank’s phone' });
    assert.ok(phone.file.deviceId);
    // The page notices the new phone by itself, and puts the used link away.
    await admin.locator('#devices-table th', { hasText: 'Frank’s phone' }).waitFor({ timeout: 5000 });
    assert.ok(await pushQr.isHidden());
  });

  it('renames a device and revokes another after confirmation', async (t) => {
    if (!ready(t)) return;
    const pixel = await Authenticator.enrol((await s.api('POST', '/api/v1/users/erin/enrolments')).body.uri, { name: 'Erin’s Pixel', platform: 'android' });
    await Authenticator.enrol((await s.api('POST', '/api/v1/users/erin/enrolments')).body.uri, { name: 'Erin tablet', platform: 'ios', protected: true });
    await goto(admin, '#/users/erin');
    await admin.getByRole('heading', { name: 'erin', level: 1 }).waitFor();
    await rowsOf(admin, 'devices-table').nth(1).waitFor();
    assert.equal(await rowsOf(admin, 'devices-table').count(), 2);

    // Rename the tablet.
    await admin.getByRole('button', { name: 'Rename Erin tablet' }).click();
    const rename = admin.getByRole('dialog', { name: 'Rename device' });
    await rename.waitFor();
    await rename.getByLabel('Device name').fill('Erin iPad');
    await rename.getByRole('button', { name: 'Save' }).click();
    await admin.locator('#devices-table th', { hasText: 'Erin iPad' }).waitFor();

    // Revoke: cancelling changes nothing, confirming revokes.
    await admin.getByRole('button', { name: 'Revoke Erin’s Pixel' }).click();
    const confirm = admin.getByRole('dialog', { name: 'Revoke this device?' });
    await confirm.waitFor();
    assert.match((await confirm.textContent())!, /Erin’s Pixel/);
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    assert.ok(await confirm.isHidden());
    assert.equal((await s.api('GET', '/api/v1/users/erin/devices')).body.devices.length, 2);
    await admin.getByRole('button', { name: 'Revoke Erin’s Pixel' }).click();
    await confirm.waitFor();
    await admin.screenshot({ path: `${ARTIFACTS}console-revoke-confirm.png` });
    await confirm.getByRole('button', { name: 'Revoke device' }).click();
    await admin.locator('#devices-table tbody tr').filter({ hasText: 'Erin’s Pixel' }).waitFor({ state: 'detached' });
    assert.equal(await rowsOf(admin, 'devices-table').count(), 1);

    const devices = (await s.api('GET', '/api/v1/users/erin/devices')).body.devices as { id: string; name: string }[];
    assert.deepEqual(devices.map((d) => d.name), ['Erin iPad']);
    assert.ok(!devices.some((d) => d.id === pixel.file.deviceId), 'the revoked device is gone');
  });

  it('shows the pushes counted in this window, and Unlock clears them', async (t) => {
    if (!ready(t)) return;
    await s.api('POST', '/api/v1/users', { name: 'ivy', password: 'ivy-pw' });
    await s.api('POST', '/api/v1/users/factors', { users: ['ivy'], factor: 'push', enabled: true });
    await Authenticator.enrol((await s.api('POST', '/api/v1/users/ivy/enrolments')).body.uri, { name: 'Ivy’s phone' });
    let last = '';
    for (let i = 0; i < 3; i++) {
      const r = await s.api('POST', '/api/v1/challenges', { user: 'ivy' });
      assert.equal(r.status, 201);
      last = r.body.id;
    }
    await s.api('POST', `/api/v1/challenges/${last}/cancel`, {}); // each login superseded the one before; none is left waiting
    await goto(admin, '#/users/ivy');
    const sent = admin.locator('#user-factors .fact').filter({ hasText: 'Pushes sent in this window' });
    await sent.filter({ hasText: '3 of 100' }).waitFor();
    await admin.getByRole('button', { name: 'Unlock' }).click();
    await sent.filter({ hasText: '0 of 100' }).waitFor();
    assert.equal((await s.api('GET', '/api/v1/users/ivy')).body.push.sent, 0);
  });

  it('shows pending logins live, and drops one as soon as it is approved', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/live');
    await admin.locator('#live-summary').filter({ hasText: /No login waiting|waiting/ }).waitFor();
    const open = async (user: string, client: string, ip: string) => {
      const r = await s.api('POST', '/api/v1/challenges', { user, origin: { client, ip } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body as { id: string; displayCode: string };
    };
    const erin = await open('erin', 'vpn-gw', '198.51.100.7');
    const gina = await open('gina', 'staff-portal', '203.0.113.42');
    const hugo = await open('hugo', 'WS-0142', '192.0.2.10');
    const erinRow = admin.locator(`#live-table tr[data-id="${erin.id}"]`);
    await erinRow.waitFor({ timeout: 5000 });
    await admin.locator(`#live-table tr[data-id="${hugo.id}"]`).waitFor({ timeout: 5000 });
    assert.equal(await erinRow.locator('.display-id').textContent(), erin.displayCode);
    assert.match((await erinRow.locator('.from').textContent())!, /api.*vpn-gw.*198\.51\.100\.7/);
    assert.match((await erinRow.locator('.time-left').textContent())!, /\d+ (s|min)/);
    await admin.locator('#live-summary').filter({ hasText: '3 logins waiting' }).waitFor();
    await admin.waitForTimeout(300); // let the row highlight fade for the picture
    await admin.screenshot({ path: `${ARTIFACTS}console-live.png` });

    const approved = await s.api('POST', `/api/v1/challenges/${erin.id}/approve`, {});
    assert.equal(approved.body.state, 'approved');
    const t0 = Date.now();
    await erinRow.waitFor({ state: 'detached', timeout: 4000 });
    assert.ok(Date.now() - t0 < 4000);
    assert.equal(await admin.locator(`#live-table tr[data-id="${gina.id}"]`).count(), 1, 'the others stay');
    await admin.locator('#live-summary').filter({ hasText: '2 logins waiting' }).waitFor();
    for (const c of [gina, hugo]) await s.api('POST', `/api/v1/challenges/${c.id}/cancel`, {});
    await admin.locator('#live-empty').waitFor({ timeout: 4000 });
  });

  it('lists clients read-only', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/clients');
    await admin.locator('#radius-table tbody tr').filter({ hasText: 'vpn-gw' }).waitFor();
    assert.match((await admin.locator('#radius-table tbody tr').first().textContent())!, /10\.0\.0\.0\/24.*challenge/);
    await admin.locator('#oidc-table tbody tr').filter({ hasText: 'staff-portal' }).waitFor();
    assert.match((await admin.locator('#oidc-table').textContent())!, /Staff portal.*portal\.example\.test/);
    await admin.locator('#bridge-table tbody tr').filter({ hasText: 'office-fleet' }).waitFor();
    assert.equal(await admin.locator('#view-clients button').count(), 0, 'no buttons: read-only lists');
    await admin.screenshot({ path: `${ARTIFACTS}console-clients.png`, fullPage: true });
  });

  it('audit: filters the events and draws the charts as inline SVG', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/audit');
    await admin.locator('#chart-rate svg rect.bar-ok').first().waitFor();
    assert.ok((await admin.locator('#chart-rate svg rect.bar-ok').count()) > 30, 'a bar for most minutes of the hour');
    assert.ok((await admin.locator('#chart-rate svg rect.bar-bad').count()) > 5);
    assert.match((await admin.locator('#chart-rate .chart-summary').textContent())!, /logins in the last hour/);
    assert.match((await admin.locator('#chart-outcomes .chart-summary').textContent())!, /approved \d+ \(\d+%\), rejected \d+/);
    assert.ok((await admin.locator('#chart-latency svg rect.bar-accent').count()) >= 4);
    assert.match((await admin.locator('#chart-latency .chart-summary').textContent())!, /median .*, 90th percentile/);
    assert.equal(await admin.locator('#chart-rate svg').getAttribute('role'), 'img');
    assert.ok((await rowsOf(admin, 'audit-table').count()) > 20);
    await admin.setViewportSize({ width: 1280, height: 1100 });
    await admin.screenshot({ path: `${ARTIFACTS}console-audit.png` });
    await admin.setViewportSize({ width: 1280, height: 860 });

    await admin.getByLabel('Outcome', { exact: true }).selectOption('rejected');
    await admin.getByLabel('Front', { exact: true }).fill('radius');
    await admin.getByRole('button', { name: 'Apply' }).click();
    await admin.locator('#audit-table tbody tr').first().waitFor();
    await admin.waitForFunction(() => [...document.querySelectorAll('#audit-table tbody tr')].every((tr) => /rejected/.test(tr.textContent ?? '') && /radius/.test(tr.textContent ?? '')));
    const n = await rowsOf(admin, 'audit-table').count();
    assert.ok(n > 0);
    assert.equal(await admin.locator('#chart-outcomes svg rect.bar-ok').count(), 0, 'the charts follow the filters');
    await admin.getByRole('button', { name: 'Reset' }).click();
    await admin.waitForFunction((k) => document.querySelectorAll('#audit-table tbody tr').length > k, n);
  });

  it('refuses a change without the CSRF token, and nothing changes', async (t) => {
    if (!ready(t)) return;
    const r = await admin.evaluate(async () => {
      const res = await fetch('/api/v1/users/factors', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ users: ['bulk-d'], factor: 'push', enabled: true }),
      });
      return { status: res.status, body: (await res.json()) as { error: string; message: string } };
    });
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'csrf');
    assert.equal((await s.api('GET', '/api/v1/users/bulk-d')).body.push.enabled, false, 'nothing changed');
    // The same call with the token goes through: the cookie alone is not enough, the token is.
    const ok = await admin.evaluate(async () => {
      const { csrf } = (await (await fetch('/console/api/session')).json()) as { csrf: string };
      const res = await fetch('/api/v1/users/bulk-d/unlock', { method: 'POST', headers: { 'x-csrf-token': csrf } });
      return res.status;
    });
    assert.equal(ok, 200);
    assert.deepEqual(pageProblems, [], 'no CSP violation and no script error all along');
  });

  it('help desk: signs in with push, sees no change buttons, and a forced change gets the read-only message', async (t) => {
    if (!ready(t)) return;
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    ctx.setDefaultTimeout(8000);
    const page = await ctx.newPage();
    try {
      await passwordStep(page, 'helen', 'helen-pw');
      const code = (await page.locator('#si-code').textContent())!;
      await page.screenshot({ path: `${ARTIFACTS}console-signin-push.png` });
      assert.ok(await page.locator('#si-otp-form').isHidden(), 'no OTP field for a push-only user');
      let pending;
      for (let i = 0; i < 100 && !pending; i++) {
        pending = (await helenPhone.pending()).find((p) => p.displayCode === code);
        if (!pending) await sleep(20);
      }
      assert.ok(pending, 'the phone got the push with the ID on screen');
      await helenPhone.answer(pending.challengeId, 'approve');
      await page.locator('#users-h').waitFor({ timeout: 5000 });
      assert.equal(await page.locator('#who-role').textContent(), 'helpdesk · read-only');

      await page.locator('#users-count').filter({ hasText: 'users in total' }).waitFor();
      assert.ok(await page.locator('#bulkbar').isHidden(), 'no bulk actions');
      assert.equal(await page.locator('#users-table input[type=checkbox]:visible').count(), 0, 'no selection');
      for (const name of ['Enable OTP', 'Disable OTP', 'Enable push', 'Disable push']) {
        assert.equal(await page.getByRole('button', { name }).count(), 0, `no "${name}" for the help desk`);
      }
      await page.screenshot({ path: `${ARTIFACTS}console-helpdesk.png` });

      await goto(page, '#/users/erin');
      await page.locator('#user-body').waitFor();
      await rowsOf(page, 'devices-table').first().waitFor();
      for (const name of [/^Revoke/, /^Rename/, /Enrol OTP/, /Push enrolment link/, /Unlock/, /Enable|Disable/]) {
        assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button`);
      }

      // A change forced from the page, with the CSRF token: the API says read_only.
      const forced = await page.evaluate(async () => {
        const { csrf } = (await (await fetch('/console/api/session')).json()) as { csrf: string };
        const res = await fetch('/api/v1/users/factors', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
          body: JSON.stringify({ users: ['bulk-d'], factor: 'push', enabled: true }),
        });
        return { status: res.status, body: (await res.json()) as { error: string; message: string } };
      });
      assert.equal(forced.status, 403);
      assert.equal(forced.body.error, 'read_only');
      // And if a change button slipped through, the page shows the API's message.
      await page.evaluate(() => document.body.classList.remove('ro'));
      await page.getByRole('button', { name: 'Enable push' }).click();
      const alert = page.locator('#alert');
      await alert.waitFor();
      assert.match((await alert.textContent())!, /help ?desk role can look but not change anything/i);
      await page.screenshot({ path: `${ARTIFACTS}console-read-only-message.png` });
      assert.equal((await s.api('GET', '/api/v1/users/bulk-d')).body.push.enabled, false);
      assert.equal((await s.api('GET', '/api/v1/users/erin')).body.push.enabled, false);

      // The session ends on the server (a forged or expired cookie): back to the sign-in, with a message.
      await ctx.addCookies([{ name: 'cs_console', value: 'expired-session-token', url: base }]);
      await goto(page, '#/clients');
      await page.getByRole('heading', { name: 'Sign in to the console' }).waitFor();
      assert.match((await page.locator('#signin-msg').textContent())!, /your console session has expired; sign in again/i);
      assert.ok(await page.locator('#nav').isHidden());
    } finally {
      await ctx.close();
    }
  });

  it('an ended session (cookie gone) brings the sign-in back with a message', async (t) => {
    if (!ready(t) || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const ctx = await browser.newContext({ viewport: { width: 390, height: 800 } });
    ctx.setDefaultTimeout(8000);
    const page = await ctx.newPage();
    try {
      await signInWithOtp(page, 'olga');
      await page.screenshot({ path: `${ARTIFACTS}console-users-mobile.png`, fullPage: false });
      await ctx.clearCookies();
      await goto(page, '#/audit');
      await page.getByRole('heading', { name: 'Sign in to the console' }).waitFor();
      assert.match((await page.locator('#signin-msg').textContent())!, /session has ended\. Sign in again/);
      assert.equal(await page.getByLabel('User name', { exact: true }).inputValue(), 'olga', 'the name is kept, to sign in again quickly');
      assert.equal(await page.getByLabel('Password', { exact: true }).inputValue(), '');
      assert.ok(await page.getByLabel('Password', { exact: true }).evaluate((e) => e === document.activeElement), 'the password field has focus');
      await page.screenshot({ path: `${ARTIFACTS}console-session-expired.png` });
    } finally {
      await ctx.close();
    }
  });
});
