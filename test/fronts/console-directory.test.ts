/**
 * The console's directory views in headless Chromium, on a real OpenLDAP (Debian's slapd):
 * the Directories page (reachable, last sync, Sync now for admins only), enablement for a
 * directory group from the users page, a directory user's groups, state and attributes, the
 * accounts a sync finds locked or removed, and the group policy of each client.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Attribute, Change } from 'ldapts';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';
import { ldapDirectory, ODD_UID, slapdAvailable, startSlapd, USERS, type Slapd } from '../helpers/slapd.js';

const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const haveSlapd = slapdAvailable();
const haveOathtool = hasCommand('oathtool');
const up = haveChromium && haveSlapd && haveOathtool;
const ready = (t: TestContext) => requirePeer(t, haveChromium, 'chromium') && requirePeer(t, haveSlapd, 'slapd') && requirePeer(t, haveOathtool, 'oathtool');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dnOf = (uid: string) => USERS.find((u) => u.uid === uid)!.dn;

describe('console directory views in headless Chromium, on OpenLDAP', () => {
  let slapd: Slapd;
  let s: TestServer;
  let browser: Browser;
  let adminCtx: BrowserContext;
  let admin: Page;
  const secrets: Record<string, string> = {};
  /** CSP violations and uncaught errors in any page: there must be none. */
  const problems: string[] = [];

  before(async () => {
    if (!up) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    slapd = await startSlapd();
    s = await startTestServer({}, {}, (c) => {
      c.directories = [
        ldapDirectory(slapd, { realms: ['example.org'] }),
        { name: 'local', kind: 'local', realms: [] },
      ] as typeof c.directories;
      c.directorySyncMinutes = 0; // only the syncs the test asks for
    });
    // Console users in the local directory: an administrator and a help desk user, with OTP.
    for (const [name, role] of [['ada', 'admin'], ['hal', 'helpdesk']] as const) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, role, displayName: `${name[0]!.toUpperCase()}${name.slice(1)} Console` })).status, 201);
      secrets[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    // Clients with and without a group policy.
    const created = [
      await s.api('POST', '/api/v1/radius-clients', {
        name: 'vpn-staff',
        address: '10.0.0.0/24',
        secret: 'radius-secret-123',
        mode: 'challenge',
        policy: { allowGroups: ['staff'], mfaGroups: ['engineering'], noFactor: 'deny' },
      }),
      await s.api('POST', '/api/v1/radius-clients', { name: 'legacy-nas', address: '10.9.0.1', secret: 'radius-secret-456', mode: 'append' }),
      await s.api('POST', '/api/v1/bridge-credentials', { name: 'staff-pcs', scope: 'fleet', workstations: ['PC-*', 'LAB-1'], policy: { allowGroups: ['staff', 'admins'], noFactor: 'allow' } }),
      await s.api('POST', '/api/v1/bridge-credentials', { name: 'any-pc', scope: 'fleet' }),
      await s.api('POST', '/api/v1/oidc-clients', { client_id: 'wiki', client_name: 'Team wiki', redirect_uris: ['https://wiki.example.test/cb'], countersign_mfa_groups: ['admins'], countersign_no_factor: 'allow' }),
    ];
    for (const r of created) assert.equal(r.status, 201, JSON.stringify(r.body));

    browser = await launchChromium();
    adminCtx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    adminCtx.setDefaultTimeout(8000);
    admin = await adminCtx.newPage();
    watch(admin, 'ada');
  });

  after(async () => {
    await browser?.close();
    await s?.close();
    await slapd?.destroy();
  });

  function watch(page: Page, who: string) {
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`${who}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${who}: uncaught: ${e.message}`));
  }

  const signIn = async (page: Page, user: string) => {
    await page.goto(`${s.url}/console/`);
    await page.getByLabel('User name', { exact: true }).fill(user);
    await page.getByLabel('Password', { exact: true }).fill(`${user}-pw`);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Code from your authenticator app').fill(oathTotp(secrets[user]!));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.locator('#users-h').waitFor();
  };
  const goto = (page: Page, hash: string) =>
    page.evaluate((h) => {
      location.hash = h;
    }, hash);
  const corpRow = (page: Page) => page.locator('#directories-table tbody tr[data-name="corp"]');
  const userRow = (page: Page, name: string) => page.locator('#users-table tbody tr').filter({ has: page.locator('td.name a', { hasText: new RegExp(`^${name.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}$`) }) });

  it('signs the administrator in (a local user, past the LDAP directory)', async (t) => {
    if (!ready(t)) return;
    await signIn(admin, 'ada');
    assert.equal(await admin.locator('#who-role').textContent(), 'admin');
    assert.ok(await admin.getByRole('link', { name: 'Directories' }).isVisible(), 'Directories is in the navigation');
    const names = (await s.api('GET', '/api/v1/users?limit=100')).body.users.map((u: { name: string }) => u.name);
    assert.deepEqual(names.sort(), ['ada', 'hal'], 'no directory user has a record yet');
  });

  it('enables push for the group engineering: records made for alice, bob and carol, a result line each', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/users');
    const open = admin.getByRole('button', { name: 'Enable for a group…' });
    await open.waitFor();
    await open.click();
    const dialog = admin.getByRole('dialog', { name: 'Enable a factor for a group' });
    await dialog.waitFor();
    assert.ok(await dialog.getByLabel('Directory').isHidden(), 'one directory with groups: nothing to choose');
    assert.ok(await dialog.getByRole('radio', { name: 'Push' }).isChecked());
    await dialog.getByLabel('Group name').fill('engineering');
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-group-dialog.png` });

    // Hold the call a moment so the progress shows, and see what the page asks for.
    let sent: unknown;
    await admin.route('**/api/v1/users/factors', async (route) => {
      sent = route.request().postDataJSON();
      await sleep(700);
      await route.continue();
    });
    await dialog.getByRole('button', { name: 'Enable', exact: true }).click();
    const progress = admin.locator('#bulk-progress');
    await progress.waitFor();
    assert.equal(await progress.locator('#bulk-progress-text').textContent(), 'Enabling push for the members of “engineering”…');
    assert.ok(await open.isDisabled(), 'one bulk change at a time');
    await admin.locator('#bulk-result h2').filter({ hasText: 'Push enabled for 3 users of “engineering”' }).waitFor();
    await admin.unroute('**/api/v1/users/factors');
    assert.deepEqual(sent, { group: 'engineering', factor: 'push', enabled: true });
    assert.match((await admin.locator('#bulk-result .summary').textContent())!, /3 succeeded, 0 failed/);
    const lines = admin.locator('#bulk-result .result-lines li');
    assert.equal(await lines.count(), 3);
    for (const [i, name] of ['alice', 'bob', 'carol'].entries()) {
      assert.equal(await lines.nth(i).locator('a').textContent(), name);
      assert.match((await lines.nth(i).textContent())!, /push enabled/);
    }
    assert.ok(await lines.first().isVisible(), 'the per-user lines are open for a group');

    // The records exist now, from the directory, with push on; the list shows them with a marker.
    for (const name of ['alice', 'bob', 'carol']) {
      const u = (await s.api('GET', `/api/v1/users/${name}`)).body;
      assert.equal(u.push.enabled, true, name);
      assert.equal(u.directory.name, 'corp', name);
    }
    await userRow(admin, 'alice').waitFor();
    assert.equal(await userRow(admin, 'alice').locator('.dir-tag').textContent(), 'from directory corp');
    assert.equal(await userRow(admin, 'ada').locator('.dir-tag').count(), 0, 'a local user has no marker');
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-group-result.png` });

    // A group with no members (or no such group): said so, nothing changed.
    await open.click();
    await dialog.waitFor();
    await dialog.getByLabel('Group name').fill('no-such-group');
    await dialog.getByRole('radio', { name: 'One-time passwords (OTP)' }).check();
    await dialog.getByRole('button', { name: 'Enable', exact: true }).click();
    await admin.locator('#bulk-result h2').filter({ hasText: 'No members found in “no-such-group”' }).waitFor();
    assert.match((await admin.locator('#bulk-result').getAttribute('class'))!, /partial/);
    assert.equal(await admin.locator('#bulk-result .result-lines').count(), 0);
    assert.equal((await s.api('GET', '/api/v1/users?limit=100')).body.total, 5, 'ada, hal, alice, bob, carol');
  });

  it('alice’s page shows her directory, login, state, nested groups, attributes and last seen', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/users/alice');
    const box = admin.getByRole('region', { name: 'Directory', exact: true });
    await box.waitFor();
    const fact = (cls: string) => box.locator(`.fact.${cls} dd`);
    assert.equal(await fact('dir-name').textContent(), 'corp');
    assert.equal(await fact('dir-login').textContent(), 'alice');
    const state = fact('dir-state').locator('.badge');
    assert.equal(await state.textContent(), 'active');
    assert.match((await state.getAttribute('class'))!, /\bok\b/);
    assert.deepEqual(await fact('dir-groups').locator('li').allTextContents(), ['admins', 'engineering', 'staff'], 'staff ⊂ engineering ⊂ admins');
    const attrs = fact('dir-attrs').locator('tbody tr');
    const rows = await attrs.evaluateAll((trs) => trs.map((tr) => [tr.children[0]!.textContent, tr.children[1]!.textContent]));
    assert.ok(rows.some(([k, v]) => k === 'title' && v === 'Tester'), JSON.stringify(rows));
    assert.ok(rows.some(([k, v]) => k === 'dn' && v === dnOf('alice')), JSON.stringify(rows));
    assert.match((await fact('dir-seen').textContent())!, /just now/);
    await admin.setViewportSize({ width: 1280, height: 1100 });
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-user.png` });
    await admin.setViewportSize({ width: 1280, height: 860 });

    // A local user has no Directory section.
    await goto(admin, '#/users/hal');
    await admin.getByRole('heading', { name: 'hal', level: 1 }).waitFor();
    await admin.locator('#user-sub').filter({ hasText: 'Hal Console' }).waitFor();
    assert.ok(await admin.locator('#user-directory').isHidden());
  });

  it('the Directories page shows corp reachable, and Sync now shows progress, then the user count', async (t) => {
    if (!ready(t)) return;
    await admin.getByRole('link', { name: 'Directories' }).click();
    await admin.getByRole('heading', { name: 'Directories', level: 1 }).waitFor();
    const corp = corpRow(admin);
    await corp.waitFor();
    assert.equal(await admin.locator('#directories-table tbody tr').count(), 2);
    assert.equal(await corp.locator('td.reach .badge').textContent(), 'reachable');
    assert.match((await corp.locator('td.reach').textContent())!, new RegExp(slapd.url.replace(/[.]/g, '\\.')));
    assert.match((await corp.textContent())!, /example\.org/);
    assert.equal(await corp.locator('td.last-sync').textContent(), 'never');
    assert.equal(await admin.locator('#directories-summary').textContent(), '2 directories, all reachable');
    const local = admin.locator('#directories-table tbody tr[data-name="local"]');
    assert.equal(await local.getByRole('button').count(), 0, 'the local directory needs no sync');

    await admin.route('**/api/v1/directories/corp/sync', async (route) => {
      await sleep(700);
      await route.continue();
    });
    const button = admin.getByRole('button', { name: 'Sync now: corp' });
    await button.click();
    await admin.locator('#dir-progress').waitFor();
    assert.equal(await admin.locator('#dir-progress-text').textContent(), 'Syncing corp: reading every user and their groups…');
    assert.ok(await button.isDisabled());
    assert.match((await button.textContent())!, /Syncing…/);
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-syncing.png` });
    const result = admin.locator('#dir-result');
    await result.locator('h2').filter({ hasText: 'corp synchronised: 7 users' }).waitFor();
    await admin.unroute('**/api/v1/directories/corp/sync');
    assert.ok(await admin.locator('#dir-progress').isHidden());
    assert.match((await result.locator('.summary').textContent())!, /7 records made or brought up to date in .*; 0 not active; 0 removed\./);
    assert.ok(await result.evaluate((e) => e === document.activeElement), 'the result takes the focus');
    await corp.locator('td.users').filter({ hasText: /^7$/ }).waitFor();
    assert.equal(await corp.locator('td.inactive').textContent(), '0');
    assert.equal(await corp.locator('td.removed').textContent(), '0');
    assert.match((await corp.locator('td.last-sync').textContent())!, /just now · took \d+ ms/);
    assert.ok(await button.isEnabled());
    await admin.screenshot({ path: `${ARTIFACTS}console-directories.png` });
  });

  it('a second sync finds a locked and a removed account: counted, named, and in red on the users list', async (t) => {
    if (!ready(t)) return;
    const ldap = await slapd.admin();
    try {
      await ldap.modify(dnOf('locked'), [new Change({ operation: 'add', modification: new Attribute({ type: 'pwdAccountLockedTime', values: ['000001010000Z'] }) })]);
      await ldap.del(dnOf(ODD_UID)); // a name of filter metacharacters: the page must show it as text
    } finally {
      await ldap.unbind();
    }
    await goto(admin, '#/directories');
    await admin.getByRole('button', { name: 'Sync now: corp' }).click();
    const result = admin.locator('#dir-result');
    await result.locator('h2').filter({ hasText: 'corp synchronised: 6 users' }).waitFor();
    assert.match(await result.getAttribute('class') ?? '', /partial/);
    assert.equal(await result.getByRole('link', { name: ODD_UID, exact: true }).count(), 1, 'the removed user, by name');
    const corp = corpRow(admin);
    await corp.locator('td.users').filter({ hasText: /^6$/ }).waitFor();
    assert.equal(await corp.locator('td.inactive').textContent(), '1');
    assert.equal(await corp.locator('td.removed strong').textContent(), '1');
    assert.equal(await corp.locator('td.removed a').textContent(), ODD_UID);
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-removed.png` });

    // The users list: a red badge for each account that is not active.
    await goto(admin, '#/users');
    await admin.locator('#users-count').filter({ hasText: '9 users in total' }).waitFor();
    const locked = userRow(admin, 'locked').locator('td.status .badge.bad');
    assert.equal(await locked.textContent(), 'locked in corp');
    assert.equal(await userRow(admin, ODD_UID).locator('td.status .badge.bad').textContent(), 'removed in corp');
    assert.equal(await userRow(admin, 'alice').locator('td.status .badge.bad').count(), 0, 'alice is active');
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-users.png` });

    // The removed user's page, through the link (the odd name survives the URL).
    await userRow(admin, ODD_UID).locator('td.name a').click();
    await admin.getByRole('heading', { name: ODD_UID, level: 1 }).waitFor();
    const state = admin.locator('#user-directory .fact.dir-state .badge');
    await state.waitFor();
    assert.equal(await state.textContent(), 'removed');
    assert.match((await state.getAttribute('class'))!, /\bbad\b/);
    assert.match((await admin.locator('#user-directory .fact.dir-state').textContent())!, /no longer has this account/);
  });

  it('the clients page shows each client’s group policy, and the bridge credentials’ workstations', async (t) => {
    if (!ready(t)) return;
    await goto(admin, '#/clients');
    const radius = admin.locator('#radius-table tbody tr').filter({ hasText: 'vpn-staff' });
    await radius.waitFor();
    const policyOf = (row: ReturnType<Page['locator']>) =>
      row.locator('dl.policy > div').evaluateAll((divs) => Object.fromEntries(divs.map((d) => [d.querySelector('dt')!.textContent, d.querySelector('dd')!.textContent])));
    assert.deepEqual(await policyOf(radius), { Allow: 'staff', MFA: 'engineering', 'No factor': 'deny' });
    const legacy = admin.locator('#radius-table tbody tr').filter({ hasText: 'legacy-nas' });
    assert.equal(await legacy.locator('dl.policy').count(), 0);
    assert.match((await legacy.textContent())!, /default/);

    const pcs = admin.locator('#bridge-table tbody tr').filter({ hasText: 'staff-pcs' });
    await pcs.waitFor();
    assert.deepEqual(await pcs.locator('ul.chips li').allTextContents(), ['PC-*', 'LAB-1']);
    assert.deepEqual(await policyOf(pcs), { Allow: 'staff, admins', MFA: 'default', 'No factor': 'allow' });
    const anyPc = admin.locator('#bridge-table tbody tr').filter({ hasText: 'any-pc' });
    assert.match((await anyPc.textContent())!, /any.*default/);

    const wiki = admin.locator('#oidc-table tbody tr').filter({ hasText: 'wiki' });
    await wiki.waitFor();
    assert.deepEqual(await policyOf(wiki), { Allow: 'default', MFA: 'admins', 'No factor': 'allow' });
    assert.equal(await admin.locator('#view-clients button').count(), 0, 'still read-only');
    await admin.screenshot({ path: `${ARTIFACTS}console-directories-clients.png`, fullPage: true });
  });

  it('at phone width the new views fit the screen', async (t) => {
    if (!ready(t)) return;
    await admin.setViewportSize({ width: 390, height: 844 });
    try {
      const fits = () => admin.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
      /** The sections scroll sideways on a phone: the one on screen is in view, and a faded edge says there are more. */
      const tabInView = () =>
        admin.evaluate(() => {
          const nav = document.getElementById('nav')!;
          const a = nav.querySelector('a[aria-current="page"]')!.getBoundingClientRect();
          const n = nav.getBoundingClientRect();
          return a.left >= n.left - 1 && a.right <= n.right + 1 && /more-(left|right)/.test(nav.className);
        });
      await goto(admin, '#/directories');
      await corpRow(admin).locator('td.users').filter({ hasText: /^6$/ }).waitFor();
      assert.ok(await fits(), 'no sideways scrolling on the Directories page');
      assert.ok(await tabInView(), 'the Directories tab is in view');
      assert.equal(await admin.locator('#directories-table thead').evaluate((e) => getComputedStyle(e).position), 'absolute', 'one block per directory');
      await admin.screenshot({ path: `${ARTIFACTS}console-directories-phone.png`, fullPage: true });

      await goto(admin, '#/users/alice');
      await admin.locator('#user-directory .fact.dir-groups li').first().waitFor();
      assert.ok(await fits(), 'no sideways scrolling on a directory user’s page');
      await admin.locator('#user-directory').scrollIntoViewIfNeeded();
      await admin.screenshot({ path: `${ARTIFACTS}console-directories-user-phone.png` });

      await goto(admin, '#/users');
      await userRow(admin, 'locked').waitFor();
      await admin.getByRole('button', { name: 'Enable for a group…' }).click();
      const dialog = admin.getByRole('dialog', { name: 'Enable a factor for a group' });
      await dialog.waitFor();
      await admin.screenshot({ path: `${ARTIFACTS}console-directories-group-phone.png` });
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      assert.ok(await dialog.isHidden());
      assert.ok(await admin.locator('#bulk-progress').isHidden(), 'cancelled: nothing ran');

      await goto(admin, '#/clients');
      await admin.locator('#bridge-table tbody tr').filter({ hasText: 'staff-pcs' }).waitFor();
      assert.ok(await fits(), 'the clients tables read as blocks on a phone');
      assert.ok(await tabInView(), 'the Clients tab is in view');
      await admin.screenshot({ path: `${ARTIFACTS}console-directories-clients-phone.png`, fullPage: true });
    } finally {
      await admin.setViewportSize({ width: 1280, height: 860 });
    }
  });

  it('the help desk sees the directories, without Sync now and without group enablement', async (t) => {
    if (!ready(t)) return;
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    ctx.setDefaultTimeout(8000);
    const page = await ctx.newPage();
    watch(page, 'hal');
    try {
      await signIn(page, 'hal');
      assert.equal(await page.locator('#who-role').textContent(), 'helpdesk · read-only');
      assert.ok(await page.getByRole('button', { name: 'Enable for a group…' }).isHidden());
      await goto(page, '#/directories');
      await corpRow(page).locator('td.users').filter({ hasText: /^6$/ }).waitFor();
      assert.equal(await corpRow(page).locator('td.reach .badge').textContent(), 'reachable');
      assert.equal(await page.getByRole('button', { name: /Sync now/ }).count(), 0, 'no Sync now for the help desk');
      await page.screenshot({ path: `${ARTIFACTS}console-directories-helpdesk.png` });
      // Forced anyway, the API refuses.
      const forced = await page.evaluate(async () => {
        const { csrf } = (await (await fetch('/console/api/session')).json()) as { csrf: string };
        const res = await fetch('/api/v1/directories/corp/sync', { method: 'POST', headers: { 'x-csrf-token': csrf } });
        return { status: res.status, error: ((await res.json()) as { error: string }).error };
      });
      assert.deepEqual(forced, { status: 403, error: 'read_only' });
    } finally {
      await ctx.close();
    }
  });

  it('no CSP violation and no script error all along', (t) => {
    if (!ready(t)) return;
    assert.deepEqual(problems, []);
  });
});
