import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { requirePeer } from '../helpers/peers.js';
import { startTestServer, type TestServer } from '../helpers/server.js';


/**
 * The console's live-logins page and "End all my sessions" in headless
 * Chromium, per role: the helpdesk is not given challenge ids, so its rows
 * must be keyed otherwise, and only admins may approve or reject.
 */
describe('console live logins and sign-out everywhere, by role', () => {
  let s: TestServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const problems: string[] = [];

  before(async () => {
    if (!haveChromium) return;
    s = await startTestServer();
    for (const [name, role] of [['ada', 'admin'], ['olga', 'admin'], ['hal', 'helpdesk']] as const) {
      await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, role });
      await s.api('POST', `/api/v1/users/${name}/otp`, {});
    }
    for (const name of ['erin', 'gina']) {
      await s.api('POST', '/api/v1/users', { name });
      await s.api('POST', `/api/v1/users/${name}/otp`, {});
    }
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /**
   * A console session for `user`, its second factor granted by the admin
   * token approving the sign-in's login (no TOTP step to wait for), handed
   * to a fresh browser.
   */
  async function browserFor(user: string): Promise<Page> {
    const start = await fetch(`${s.url}/console/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, password: `${user}-pw` }),
    });
    const { displayCode } = (await start.json()) as { displayCode: string };
    const loginCookie = start.headers.getSetCookie()[0]!.split(';')[0]!;
    const pending = (await s.api('GET', '/api/v1/challenges')).body.challenges as { id: string; user: string; displayCode: string }[];
    const c = pending.find((x) => x.user === user && x.displayCode === displayCode)!;
    await s.api('POST', `/api/v1/challenges/${c.id}/approve`, {});
    const done = await fetch(`${s.url}/console/api/login/finish`, { method: 'POST', headers: { cookie: loginCookie } });
    assert.equal(done.status, 200);
    const session = done.headers.getSetCookie().find((x) => x.startsWith('cs_console='))!.split(';')[0]!.slice('cs_console='.length);
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    ctx.setDefaultTimeout(8000);
    contexts.push(ctx);
    await ctx.addCookies([{ name: 'cs_console', value: session, url: s.url }]);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(`${user}: ${e.message}`));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`${user}: ${m.text()}`);
    });
    await page.goto(`${s.url}/console/#/live`);
    await page.locator('#live-h').waitFor();
    return page;
  }

  const open = async (user: string) => {
    const r = await s.api('POST', '/api/v1/challenges', { user, origin: { client: 'vpn-gw' } });
    assert.equal(r.status, 201);
    return r.body as { id: string; displayCode: string };
  };

  it('the helpdesk sees every pending login, without ids and without Approve or Reject', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const erin = await open('erin');
    const gina = await open('gina');
    const page = await browserFor('hal');
    await page.locator('#live-summary').filter({ hasText: '2 logins waiting' }).waitFor();
    const rows = page.locator('#live-table tbody tr');
    assert.equal(await rows.count(), 2, 'one row per login, though neither has an id');
    assert.equal(await page.locator('#live-table tr[data-id]').count(), 0, 'no challenge id in the page');
    assert.deepEqual((await page.locator('#live-table .display-id').allTextContents()).sort(), [erin.displayCode, gina.displayCode].sort());
    assert.equal(await page.locator('#live-table button').count(), 0, 'no Approve or Reject for the helpdesk');
    assert.ok(!(await page.content()).includes(erin.id), 'the id is nowhere in the document');
    // Still keyed right across polls: a decided login leaves, the other stays.
    await s.api('POST', `/api/v1/challenges/${erin.id}/cancel`, {});
    await page.locator('#live-summary').filter({ hasText: '1 login waiting' }).waitFor();
    assert.equal(await rows.count(), 1);
    assert.equal(await page.locator('#live-table .display-id').textContent(), gina.displayCode);
    await s.api('POST', `/api/v1/challenges/${gina.id}/cancel`, {});
    await page.locator('#live-empty').waitFor();
  });

  it('an admin approves or rejects a pending login from the live view, after confirming', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const erin = await open('erin');
    const gina = await open('gina');
    const page = await browserFor('ada');
    const erinRow = page.locator(`#live-table tr[data-id="${erin.id}"]`);
    await erinRow.waitFor();
    await erinRow.getByRole('button', { name: /^Approve/ }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Approve login' }).click();
    await erinRow.waitFor({ state: 'detached' });
    assert.equal((await s.api('GET', `/api/v1/challenges/${erin.id}`)).body.state, 'approved');

    const ginaRow = page.locator(`#live-table tr[data-id="${gina.id}"]`);
    await ginaRow.getByRole('button', { name: /^Reject/ }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await s.api('GET', `/api/v1/challenges/${gina.id}`)).body.state, 'pending', 'cancelled in the dialog: nothing happens');
    await ginaRow.getByRole('button', { name: /^Reject/ }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Reject login' }).click();
    await ginaRow.waitFor({ state: 'detached' });
    assert.equal((await s.api('GET', `/api/v1/challenges/${gina.id}`)).body.state, 'rejected');

    const events = (await s.api('GET', '/api/v1/audit?limit=200')).body.events as any[];
    const approval = events.find((e) => e.challengeId === erin.id && e.detail?.action === 'challenge.approve');
    assert.equal(approval?.actor, 'ada');
  });

  it('End all my sessions signs the administrator out in every browser', async (t) => {
    if (!requirePeer(t, haveChromium, 'chromium')) return;
    const here = await browserFor('olga');
    const there = await browserFor('olga');
    await here.getByRole('button', { name: 'End all my sessions' }).click();
    await here.locator('#confirm').getByRole('button', { name: 'End all sessions' }).click();
    await here.getByRole('heading', { name: 'Sign in to the console' }).waitFor();
    assert.match((await here.locator('#signin-msg').textContent())!, /signed out everywhere \(2 sessions ended\)/);
    await there.evaluate(() => {
      location.hash = '#/users';
    });
    await there.getByRole('heading', { name: 'Sign in to the console' }).waitFor();
    assert.deepEqual(problems, [], 'no script error and no CSP violation');
    for (const c of contexts) await c.close();
  });
});
