import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser, BrowserContext, CDPSession, Page, Worker } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { radclient, q } from '../helpers/radclient.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const haveRadclient = hasCommand('radclient');
const RADIUS_SECRET = 'app-test-radius-secret';
const PHONE = { width: 390, height: 844 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the service worker shows, read through the page. */
interface Shown {
  title: string;
  body: string;
  tag: string;
  actions: { action: string; title: string }[];
}

/**
 * The web authenticator (/app/) in headless Chromium at phone width: enrolment from the
 * admin's link as a 'webpush' device (poll-only here: Chromium cannot reach a push service
 * from this machine), live requests, approve / reject / number matching / "this wasn't me",
 * the PIN lock, history, removal, and the service worker's push path driven over the
 * DevTools protocol, with the outcome read where a login waits (RADIUS push-wait, the admin
 * API's long-poll).
 */
describe('web app (/app/) in headless Chromium', () => {
  let s: TestServer;
  let browser: Browser;
  /** CSP violations and uncaught errors in any app page: there must be none. */
  const problems: string[] = [];

  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await startTestServer({}, {}, (config) => {
      config.push.rateLimit.count = 100; // pat is pushed many times on purpose
      config.push.rejectLockout.count = 100;
    });
    await s.api('POST', '/api/v1/radius-clients', { name: 'vpn-gw', address: '127.0.0.0/8', secret: RADIUS_SECRET, mode: 'push-wait' });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  const ready = (t: TestContext) => requirePeer(t, haveChromium, 'chromium');

  const makeUser = async (name: string) => {
    assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, displayName: name })).status, 201);
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
  };
  const enrolmentLink = async (name: string) => {
    const r = await s.api('POST', `/api/v1/users/${name}/enrolments`);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.match(r.body.appUrl, /\/app\/#enrol=server=/, 'the admin API hands out the web app link');
    return r.body.appUrl as string;
  };
  const devices = async (name: string) => (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices as any[];
  const login = async (user: string, client = 'VPN gateway', ip = '198.51.100.23') => {
    const r = await s.api('POST', '/api/v1/challenges', { user, origin: { client, ip } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.ok(r.body.factors.includes('push'), `push offered: ${JSON.stringify(r.body)}`);
    return r.body as { id: string; displayCode: string; number?: string; deadline: number };
  };
  const stateOf = async (id: string) => (await s.api('GET', `/api/v1/challenges/${id}`)).body.state as string;

  /** A phone: a fresh browser context at 390 px with notifications allowed for the server. */
  const phone = async (opts: { notifications?: boolean; userAgent?: string } = {}) => {
    const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, hasTouch: true, userAgent: opts.userAgent });
    context.setDefaultTimeout(10_000);
    if (opts.notifications !== false) await context.grantPermissions(['notifications'], { origin: s.url });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
    return { context, page };
  };

  /** Opens the link, names the device and sets it up; leaves the page on the requests screen. */
  const enrol = async (page: Page, link: string, name: string) => {
    await page.goto(link);
    await page.getByRole('heading', { name: 'Set up this device' }).waitFor();
    await page.locator('#screen-enrol').getByLabel('Name of this device').fill(name);
    await page.getByRole('button', { name: /^Set up/ }).click();
    await page.getByRole('heading', { name: 'Sign-in requests' }).waitFor();
  };

  const card = (page: Page, displayCode: string) => page.locator('article.req').filter({ has: page.getByRole('heading', { name: `ID ${displayCode}` }) });
  /** The whole screen at phone width: the viewport grows to the content, so the fixed bars stay at its edges. */
  const shot = async (page: Page, name: string) => {
    const height = await page.evaluate(() => Math.max(document.documentElement.scrollHeight, innerHeight));
    await page.setViewportSize({ width: PHONE.width, height: Math.max(PHONE.height, height) });
    await page.evaluate(() => scrollTo(0, 0));
    await page.screenshot({ path: `${ARTIFACTS}app-${name}.png` });
    await page.setViewportSize(PHONE);
  };

  it('serves the app at /app/ under a strict CSP, with the right types and caching', async (t) => {
    if (!ready(t)) return;
    const bare = await fetch(`${s.url}/app`, { redirect: 'manual' });
    assert.equal(bare.status, 301);
    assert.equal(bare.headers.get('location'), '/app/');
    const page = await fetch(`${s.url}/app/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    const csp = page.headers.get('content-security-policy')!;
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "worker-src 'self'", "manifest-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    }
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    const html = await page.text();
    assert.doesNotMatch(html, /<script>|<style|\sstyle=|(src|href)="(https?:)?\/\//, 'no inline script or style, nothing from elsewhere');
    for (const [path, type] of [
      ['sw.js', /^text\/javascript/],
      ['js/core.js', /^text\/javascript/],
      ['js/main.js', /^text\/javascript/],
      ['app.css', /^text\/css/],
      ['manifest.webmanifest', /^application\/manifest\+json/],
      ['icons/icon.svg', /^image\/svg\+xml/],
      ['icons/icon-192.png', /^image\/png/],
      ['icons/icon-512.png', /^image\/png/],
      ['icons/maskable-512.png', /^image\/png/],
    ] as const) {
      const r = await fetch(`${s.url}/app/${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type')!, type, path);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(r.headers.get('cache-control'), 'no-cache', `${path} is revalidated`);
    }
    // Everything the worker keeps for opening offline is there.
    const sw = await (await fetch(`${s.url}/app/sw.js`)).text();
    const files = JSON.parse(`[${/const FILES = \[([^\]]*)\]/.exec(sw)![1]!.replace(/'/g, '"').replace(/,\s*$/, '')}]`) as string[];
    assert.ok(files.length > 10);
    for (const f of files) assert.equal((await fetch(new URL(f, `${s.url}/app/`))).status, 200, `the worker caches ${f}`);
    const manifest = await (await fetch(`${s.url}/app/manifest.webmanifest`)).json();
    assert.equal(manifest.display, 'standalone');
    assert.equal(manifest.scope, './');
    assert.ok(manifest.icons.some((i: any) => i.sizes === '512x512' && i.purpose === 'maskable'));
    assert.equal((await fetch(`${s.url}/app/nothing-here.js`)).status, 404);
  });

  // One person, pat, through the app's life: enrol, answer, lock, report, remove.
  let pat: { context: BrowserContext; page: Page };

  it('enrols from the admin’s link as a webpush device: poll-only where the push service is out of reach, and says why', async (t) => {
    if (!ready(t)) return;
    await makeUser('pat');
    pat = await phone();
    const { page } = pat;
    const link = await enrolmentLink('pat');
    await page.goto(link);
    await page.getByRole('heading', { name: 'Set up this device' }).waitFor();
    assert.match((await page.locator('#enrol-intro').textContent())!, /for pat on 127\.0\.0\.1:\d+/);
    assert.equal(await page.getByLabel('Name of this device').inputValue(), 'Chrome on Linux', 'a sensible default name');
    await page.getByLabel('Name of this device').fill('Pat’s phone');
    await shot(page, 'enrol');
    await page.getByRole('button', { name: 'Set up this device' }).click();
    await page.getByRole('heading', { name: 'Sign-in requests' }).waitFor();
    assert.doesNotMatch(page.url(), /token|enrol/, 'the spent token is out of the address bar');
    await page.getByText('No sign-in is waiting for you.').waitFor();

    const [d, ...more] = await devices('pat');
    assert.equal(more.length, 0);
    assert.equal(d.platform, 'webpush');
    assert.equal(d.name, 'Pat’s phone');
    assert.equal(d.push, false, 'Chromium here cannot subscribe (no push service): enrolled poll-only');
    assert.equal(d.protected, false);

    // The key is WebCrypto's, non-extractable, kept in IndexedDB.
    const key = await page.evaluate(async () => {
      const [e] = await (self as any).Countersign.enrolments();
      let exported = 'refused';
      try {
        await crypto.subtle.exportKey('jwk', e.key);
        exported = 'exported';
      } catch {
        // as it should be
      }
      return { type: e.key.type, extractable: e.key.extractable, alg: e.key.algorithm.name, curve: e.key.algorithm.namedCurve, exported, user: e.user };
    });
    assert.deepEqual(key, { type: 'private', extractable: false, alg: 'ECDSA', curve: 'P-256', exported: 'refused', user: 'pat' });

    // Why there are no notifications, in words, and that it follows requests live instead.
    const notice = page.locator('#push-notice');
    await notice.waitFor();
    assert.match((await notice.textContent())!, /push service.*only while Countersign is open/);
    await page.locator('#follow-state').filter({ hasText: /New requests appear here as they come|every few seconds/ }).waitFor();
    await shot(page, 'requests-empty');
  });

  it('shows a login live, with the ID, who asks, from where and a countdown; Approve approves it', async (t) => {
    if (!ready(t) || !pat) return;
    const { page } = pat;
    const c = await login('pat');
    const req = card(page, c.displayCode);
    await req.waitFor({ timeout: 8000 }); // no reload: the event stream (or polling) brings it
    assert.match((await req.locator('.asks').textContent())!, /VPN gateway asks to sign in pat/);
    assert.match((await req.locator('.facts').textContent())!, /From198\.51\.100\.23/);
    assert.match((await req.locator('.left').textContent())!, /^\d:\d\d left$/);
    assert.equal(await page.locator('#tab-count').textContent(), '1');
    await shot(page, 'request');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'request-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await req.getByRole('button', { name: 'Approve' }).click();
    await page.locator('#outcome').filter({ hasText: `Approved sign-in ID ${c.displayCode} to VPN gateway` }).waitFor();
    assert.equal(await stateOf(c.id), 'approved');
    await req.waitFor({ state: 'detached' });
    await shot(page, 'approved');
  });

  it('Reject rejects', async (t) => {
    if (!ready(t) || !pat) return;
    const { page } = pat;
    const c = await login('pat', 'Staff portal', '203.0.113.9');
    const req = card(page, c.displayCode);
    await req.waitFor({ timeout: 8000 });
    await req.getByRole('button', { name: 'Reject' }).click();
    await page.locator('#outcome').filter({ hasText: `Rejected sign-in ID ${c.displayCode}` }).waitFor();
    assert.equal(await stateOf(c.id), 'rejected');
  });

  it('number matching: asks for the number on the sign-in screen; the right one approves, a wrong one rejects', async (t) => {
    if (!ready(t) || !pat) return;
    const { page } = pat;
    await s.api('PATCH', '/api/v1/users/pat', { numberMatching: true });
    try {
      const c = await login('pat');
      assert.match(c.number!, /^\d+$/);
      const req = card(page, c.displayCode);
      await req.waitFor({ timeout: 8000 });
      const field = req.getByLabel('Type the number shown on the sign-in screen');
      await field.waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.id), await field.getAttribute('id'), 'the number field takes the focus');
      // Approve without the number: nothing is sent, the field says why.
      await req.getByRole('button', { name: 'Approve' }).click();
      await req.getByText('Type the number shown on the sign-in screen first.').waitFor();
      assert.equal(await stateOf(c.id), 'pending');
      await field.fill(c.number!);
      // The list refreshes underneath (another login changes it); the number field keeps its focus and text.
      await page.evaluate(() => (window as any).dispatchEvent(new Event('online')));
      await sleep(300);
      assert.equal(await page.evaluate(() => document.activeElement?.id), await field.getAttribute('id'));
      assert.equal(await field.inputValue(), c.number);
      await shot(page, 'number');
      await req.getByRole('button', { name: 'Approve' }).click();
      await page.locator('#outcome').filter({ hasText: 'Approved' }).waitFor();
      assert.equal(await stateOf(c.id), 'approved');

      const wrong = await login('pat');
      const req2 = card(page, wrong.displayCode);
      await req2.waitFor({ timeout: 8000 });
      await req2.getByLabel('Type the number shown on the sign-in screen').fill(wrong.number === '99' ? '98' : '99');
      await req2.getByRole('button', { name: 'Approve' }).click();
      await page.locator('#outcome').filter({ hasText: 'not the number on the sign-in screen' }).waitFor();
      assert.equal(await stateOf(wrong.id), 'rejected');
    } finally {
      await s.api('PATCH', '/api/v1/users/pat', { numberMatching: false });
    }
  });

  /** The page's CDP session, the worker's registration id, and the worker itself. */
  const worker = async (context: BrowserContext, page: Page): Promise<{ cdp: CDPSession; registrationId: string; sw: Worker }> => {
    const cdp = await context.newCDPSession(page);
    const regs: { registrationId: string; scopeURL: string; isDeleted: boolean }[] = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => regs.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    for (let i = 0; i < 100 && !regs.some((r) => r.scopeURL === `${s.url}/app/` && !r.isDeleted); i++) await sleep(50);
    const reg = regs.find((r) => r.scopeURL === `${s.url}/app/` && !r.isDeleted);
    assert.ok(reg, `the app's worker is registered with scope /app/: ${JSON.stringify(regs)}`);
    const sw = context.serviceWorkers().find((w) => w.url() === `${s.url}/app/sw.js`) ?? (await context.waitForEvent('serviceworker'));
    return { cdp, registrationId: reg.registrationId, sw };
  };

  /** The fields the server's Web Push message carries (pushFields), for a login opened elsewhere. */
  const pushPayload = async (id: string, user: string, over: Record<string, string> = {}) => {
    const c = (await s.api('GET', `/api/v1/challenges/${id}`)).body;
    return {
      type: 'countersign.challenge',
      challengeId: c.id,
      displayCode: c.displayCode,
      user,
      client: c.origin?.client ?? 'vpn-gw',
      ip: c.origin?.ip ?? '192.0.2.1',
      createdAt: String(c.createdAt ?? Date.now()),
      deadline: String(c.deadline),
      watch: 'approve-reject',
      numberMatching: 'false',
      ...over,
    };
  };
  const notifications = (page: Page) =>
    page.evaluate(() =>
      navigator.serviceWorker.ready
        .then((r) => r.getNotifications())
        .then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: (n as any).actions.map((a: any) => ({ action: a.action, title: a.title })) }))),
    ) as Promise<Shown[]>;
  const shownFor = async (page: Page, tag: string) => {
    for (let i = 0; i < 100; i++) {
      const n = (await notifications(page)).find((x) => x.tag === tag);
      if (n) return n;
      await sleep(50);
    }
    throw new Error(`no notification with tag ${tag}`);
  };
  /** What a tap on the notification's action button does: the worker's own notificationclick handler. */
  const tap = (sw: Worker, tag: string, action: string) =>
    sw.evaluate(
      async ([tag, action]) => {
        const [n] = await (self as any).registration.getNotifications({ tag });
        if (!n) throw new Error(`no notification ${tag}`);
        self.dispatchEvent(new (self as any).NotificationEvent('notificationclick', { notification: n, action }));
      },
      [tag, action] as const,
    );

  it('service worker: a push becomes a notification with the ID and who asks; its Reject ends a RADIUS login waiting for the phone', async (t) => {
    if (!ready(t) || !pat || !requirePeer(t, haveRadclient, 'radclient')) return;
    const { context, page } = pat;
    const { cdp, registrationId, sw } = await worker(context, page);

    // RADIUS push-wait: the NAS waits for the phone.
    const waiting = radclient(s.radiusPort!, RADIUS_SECRET, { 'User-Name': 'pat', 'User-Password': q('pat-pw') }, { timeout: 20, retries: 1 });
    let c: { id: string } | undefined;
    for (let i = 0; i < 100 && !c; i++) {
      c = ((await s.api('GET', '/api/v1/challenges')).body.challenges as any[]).find((x) => x.user === 'pat');
      if (!c) await sleep(50);
    }
    assert.ok(c, 'the RADIUS login is pending');
    const payload = await pushPayload(c.id, 'pat');
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: s.url, registrationId, data: JSON.stringify(payload) });
    const n = await shownFor(page, c.id);
    assert.equal(n.title, `Sign-in request · ID ${payload.displayCode}`);
    assert.match(n.body, new RegExp(`${payload.client} asks to sign in pat from ${payload.ip.replace(/\./g, '\\.')}`));
    assert.deepEqual(n.actions, [
      { action: 'approve', title: 'Approve' },
      { action: 'reject', title: 'Reject' },
    ]);

    // A second push for the same login replaces the notification (same tag), never stacks.
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: s.url, registrationId, data: JSON.stringify(payload) });
    await sleep(300);
    assert.equal((await notifications(page)).filter((x) => x.tag === c!.id).length, 1);

    const started = Date.now();
    await tap(sw, c.id, 'reject');
    const r = await waiting;
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.ok(Date.now() - started < 8000, 'answered from the worker, not at the deadline');
    assert.equal(await stateOf(c.id), 'rejected');
    for (let i = 0; i < 40 && (await notifications(page)).some((x) => x.tag === c!.id); i++) await sleep(50);
    assert.equal((await notifications(page)).filter((x) => x.tag === c!.id).length, 0, 'the notification goes once answered');
  });

  it('service worker: Approve from the notification wakes the admin API’s long-poll; number matching offers only Reject and Open', async (t) => {
    if (!ready(t) || !pat) return;
    const { context, page } = pat;
    const { cdp, registrationId, sw } = await worker(context, page);
    const c = await login('pat', 'Payroll', '192.0.2.77');
    const waiting = s.api('GET', `/api/v1/challenges/${c.id}/wait?timeout=20`);
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: s.url, registrationId, data: JSON.stringify(await pushPayload(c.id, 'pat')) });
    await shownFor(page, c.id);
    await tap(sw, c.id, 'approve');
    const done = await waiting;
    assert.equal(done.body.state, 'approved');
    assert.equal(done.body.method, 'push');

    // A login that needs the number cannot be approved from a notification.
    const numbered = await pushPayload(c.id, 'pat', { challengeId: 'n'.repeat(24), numberMatching: 'true' });
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: s.url, registrationId, data: JSON.stringify(numbered) });
    const n = await shownFor(page, numbered.challengeId);
    assert.deepEqual(n.actions, [
      { action: 'reject', title: 'Reject' },
      { action: 'open', title: 'Open to approve' },
    ]);
    assert.match(n.body, /type the number/);
    await page.evaluate((tag) => navigator.serviceWorker.ready.then((r) => r.getNotifications({ tag })).then((ns) => ns.forEach((x) => x.close())), numbered.challengeId);
  });

  it('history lists the recent logins', async (t) => {
    if (!ready(t) || !pat) return;
    const { page } = pat;
    await page.getByRole('link', { name: 'History' }).click();
    await page.getByRole('heading', { name: 'History', level: 1 }).waitFor();
    const rows = page.locator('#history li');
    await rows.first().waitFor();
    assert.ok((await rows.count()) >= 5, `${await rows.count()} rows`);
    const text = (await page.locator('#history').textContent())!;
    assert.match(text, /Approved/);
    assert.match(text, /Rejected/);
    assert.match(text, /VPN gateway/);
    await shot(page, 'history');
  });

  it('the PIN lock: the device becomes protected, approving asks for the PIN, a wrong one does not approve', async (t) => {
    if (!ready(t) || !pat) return;
    const { context, page } = pat;
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Set a PIN' }).click();
    await page.getByLabel('New PIN (4 to 12 digits)').fill('1234');
    await page.getByLabel('The same PIN again').fill('1234');
    await page.getByRole('button', { name: 'Save PIN' }).click();
    await page.getByText('Choose a PIN that is not a run of digits such as 1234.').waitFor();
    await page.getByLabel('New PIN (4 to 12 digits)').fill('480613');
    await page.getByLabel('The same PIN again').fill('480613');
    await page.getByRole('button', { name: 'Save PIN' }).click();
    await page.getByText('The PIN is set. Approving now asks for it.').waitFor({ timeout: 15_000 });
    assert.match((await page.locator('#lock-state').textContent())!, /^On, with a PIN/);
    // The PIN is kept as a salted PBKDF2 hash, never as itself.
    const kept = await page.evaluate(async () => {
      const l = await (self as any).Countersign.lock();
      return { kind: l.kind, iterations: l.iterations, salt: l.salt.length, hash: l.hash.length, plain: JSON.stringify(l).includes('480613') };
    });
    assert.deepEqual(kept, { kind: 'pin', iterations: 600_000, salt: 16, hash: 32, plain: false });
    await shot(page, 'settings');
    assert.equal((await devices('pat'))[0].push, false, 'telling the server about the lock keeps the push state as it was');

    await page.getByRole('link', { name: 'Requests' }).click();
    const c = await login('pat');
    const req = card(page, c.displayCode);
    await req.waitFor({ timeout: 8000 });
    await req.getByRole('button', { name: 'Unlock and approve' }).click();
    const dialog = page.getByRole('dialog', { name: 'Unlock Countersign' });
    await dialog.waitFor();
    await dialog.getByLabel('PIN').fill('000000');
    await dialog.getByRole('button', { name: 'Unlock and approve' }).click();
    await dialog.getByText(/^Wrong PIN\. 4 tries left/).waitFor({ timeout: 15_000 });
    assert.equal(await stateOf(c.id), 'pending', 'a wrong PIN approves nothing');
    await shot(page, 'unlock');
    await dialog.getByLabel('PIN').fill('480613');
    await dialog.getByRole('button', { name: 'Unlock and approve' }).click();
    await page.locator('#outcome').filter({ hasText: `Approved sign-in ID ${c.displayCode}` }).waitFor({ timeout: 15_000 });
    assert.equal(await stateOf(c.id), 'approved');

    // Locked: a notification offers only Reject and "Open to approve", and Approve from it does nothing.
    const { cdp, registrationId, sw } = await worker(context, page);
    const next = await login('pat');
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: s.url, registrationId, data: JSON.stringify(await pushPayload(next.id, 'pat', { watch: 'reject-only' })) });
    const n = await shownFor(page, next.id);
    assert.deepEqual(
      n.actions.map((a) => a.action),
      ['reject', 'open'],
    );
    await tap(sw, next.id, 'approve');
    await sleep(500);
    assert.equal(await stateOf(next.id), 'pending', 'no approval from a notification while locked');
    await s.api('POST', `/api/v1/challenges/${next.id}/cancel`, {});
  });

  it('turning the lock on marks the enrolled device protected on the server', async (t) => {
    if (!ready(t) || !pat) return;
    // The app sends POST /device/v1/token { protected: true, pushToken } when the lock changes.
    let d;
    for (let i = 0; i < 20 && !(d = (await devices('pat'))[0])?.protected; i++) await sleep(50);
    assert.equal(d?.protected, true, 'the server takes protected from a signed update (countersign-update+jwt claim protected)');
  });

  it('“This wasn’t me” rejects, after a confirmation, and reports it', async (t) => {
    if (!ready(t) || !pat) return;
    const { page } = pat;
    await page.getByRole('link', { name: 'Requests' }).click();
    const c = await login('pat', 'Webmail', '203.0.113.250');
    const req = card(page, c.displayCode);
    await req.waitFor({ timeout: 8000 });
    await req.getByRole('button', { name: 'This wasn’t me' }).click();
    const dialog = page.getByRole('dialog', { name: 'Report this sign-in?' });
    await dialog.waitFor();
    await shot(page, 'not-me');
    await dialog.getByRole('button', { name: 'Reject and report' }).click();
    await page.locator('#outcome').filter({ hasText: `Rejected and reported sign-in ID ${c.displayCode}` }).waitFor();
    assert.equal(await stateOf(c.id), 'rejected');
    const audit = (await s.api('GET', '/api/v1/audit?user=pat&limit=50')).body;
    assert.match(JSON.stringify(audit), /not-me|fraud/, 'the report is in the audit');
    await shot(page, 'reported');
  });

  it('removing the device forgets it on the server and here', async (t) => {
    if (!ready(t) || !pat) return;
    const { page, context } = pat;
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Remove this device' }).click();
    const dialog = page.getByRole('dialog', { name: 'Remove this device?' });
    await dialog.getByRole('button', { name: 'Remove' }).click();
    await page.getByRole('heading', { name: 'Approve sign-ins with this device' }).waitFor();
    assert.deepEqual(await devices('pat'), []);
    assert.equal(await page.evaluate(() => (self as any).Countersign.enrolments().then((e: unknown[]) => e.length)), 0);
    assert.ok(await page.locator('#tabs').isHidden());
    await shot(page, 'welcome');
    await context.close();
  });

  it('holds two accounts in one browser, and says so when the server revoked one', async (t) => {
    if (!ready(t)) return;
    await makeUser('quinn');
    await makeUser('rui');
    const { context, page } = await phone();
    await enrol(page, await enrolmentLink('quinn'), 'Shared tablet');
    // A PIN first: the next enrolment is protected from the start.
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Set a PIN' }).click();
    await page.getByLabel('New PIN (4 to 12 digits)').fill('7305');
    await page.getByLabel('The same PIN again').fill('7305');
    await page.getByRole('button', { name: 'Save PIN' }).click();
    await page.getByText('The PIN is set. Approving now asks for it.').waitFor({ timeout: 15_000 });
    // The second link pasted in Settings → Add another account.
    await page.getByText('Add another account').click();
    const settings = page.locator('#screen-settings');
    await settings.getByLabel('Enrolment link').fill(await enrolmentLink('rui'));
    await settings.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Set up this device' }).waitFor();
    assert.match((await page.locator('#enrol-intro').textContent())!, /for rui/);
    assert.ok(await page.getByText('The app lock is on: approving will ask to unlock.').isVisible());
    await page.locator('#screen-enrol').getByLabel('Name of this device').fill('Shared tablet');
    await page.getByRole('button', { name: /^Set up/ }).click();
    await page.getByRole('heading', { name: 'Sign-in requests' }).waitFor();
    assert.equal(await page.locator('#who').textContent(), '2 accounts');
    assert.equal((await devices('rui'))[0].protected, true, 'enrolled with the lock on: protected');

    const a = await login('quinn', 'Wiki');
    const b = await login('rui', 'Git server');
    await card(page, a.displayCode).waitFor({ timeout: 8000 });
    await card(page, b.displayCode).waitFor({ timeout: 8000 });
    assert.match((await card(page, b.displayCode).locator('.asks').textContent())!, /Git server asks to sign in rui/);
    await shot(page, 'two-accounts');
    await card(page, b.displayCode).getByRole('button', { name: 'Unlock and approve' }).click();
    const dialog = page.getByRole('dialog', { name: 'Unlock Countersign' });
    await dialog.getByLabel('PIN').fill('7305');
    await dialog.getByRole('button', { name: 'Unlock and approve' }).click();
    await page.locator('#outcome').filter({ hasText: 'Approved' }).waitFor({ timeout: 15_000 });
    assert.equal(await stateOf(b.id), 'approved', 'answered with rui’s key');
    await card(page, a.displayCode).getByRole('button', { name: 'Reject' }).click();
    await page.locator('#outcome').filter({ hasText: 'Rejected' }).waitFor();
    assert.equal(await stateOf(a.id), 'rejected', 'answered with quinn’s key');

    // The administrator revokes quinn's device: the app notices and says what to do.
    const [qd] = await devices('quinn');
    assert.equal((await s.api('DELETE', `/api/v1/users/quinn/devices/${qd.id}`)).status, 200);
    await page.reload();
    await page.locator('#revoked-notice').filter({ hasText: /removed on the server for quinn/ }).waitFor({ timeout: 10_000 });
    await shot(page, 'revoked');
    await context.close();
  });

  it('says why notifications are off when the site may not show them, and offers to turn them on', async (t) => {
    if (!ready(t)) return;
    await makeUser('sol');
    const { context, page } = await phone({ notifications: false });
    await page.goto(await enrolmentLink('sol'));
    await page.getByRole('heading', { name: 'Set up this device' }).waitFor();
    assert.equal(await page.getByRole('button', { name: /^Set up/ }).textContent(), 'Set up and allow notifications');
    await page.getByLabel('Name of this device').fill('Sol’s laptop');
    await page.getByRole('button', { name: /^Set up/ }).click();
    await page.getByRole('heading', { name: 'Sign-in requests' }).waitFor();
    const notice = page.locator('#push-notice');
    await notice.waitFor();
    assert.match((await notice.textContent())!, /Notifications are (off|blocked)/);
    assert.equal((await devices('sol'))[0].push, false);
    await shot(page, 'notifications-off');
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.locator('#set-push-text').filter({ hasText: /^(Off|Blocked):/ }).waitFor();
    await context.close();
  });

  it('on an iPhone in Safari, explains the Home Screen step before setting up', async (t) => {
    if (!ready(t)) return;
    await makeUser('tia');
    const { context, page } = await phone({
      userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
    });
    await page.goto(await enrolmentLink('tia'));
    await page.getByRole('heading', { name: 'First add Countersign to your Home Screen' }).waitFor();
    assert.equal(await page.getByLabel('Name of this device').inputValue(), 'Safari on iPhone');
    assert.equal(await page.getByRole('button', { name: /^Set up/ }).textContent(), 'Set up here without notifications');
    await shot(page, 'enrol-ios');
    await context.close();
    assert.deepEqual(await devices('tia'), [], 'nothing enrolled until asked');
  });

  it('the lock can be the device’s own screen lock: a passkey with user verification (a virtual authenticator here)', async (t) => {
    if (!ready(t)) return;
    await makeUser('vic');
    // WebAuthn takes no IP address as its relying party: this phone uses the name localhost.
    const local = s.url.replace('127.0.0.1', 'localhost');
    const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2 });
    context.setDefaultTimeout(10_000);
    await context.grantPermissions(['notifications'], { origin: local });
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    await enrol(page, (await enrolmentLink('vic')).replace(s.url, local), 'Vic’s phone');
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Use fingerprint or face' }).click();
    await page.getByText('The lock now uses this device’s screen lock.').waitFor();
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1, 'the app made one passkey on the device');

    await page.getByRole('link', { name: 'Requests' }).click();
    const c = await login('vic');
    await card(page, c.displayCode).getByRole('button', { name: 'Unlock and approve' }).click();
    await page.locator('#outcome').filter({ hasText: `Approved sign-in ID ${c.displayCode}` }).waitFor();
    assert.equal(await stateOf(c.id), 'approved');

    // The device cannot verify the user (no fingerprint match): nothing is approved.
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
    const d = await login('vic');
    await card(page, d.displayCode).getByRole('button', { name: 'Unlock and approve' }).click();
    await page.locator('#toast').filter({ hasText: 'did not confirm it is you' }).waitFor();
    assert.equal(await stateOf(d.id), 'pending');
    await context.close();
  });

  it('had no CSP violation or uncaught error on any page', (t) => {
    if (!ready(t)) return;
    assert.deepEqual(problems, []);
  });
});
