/**
 * A real Active Directory (Samba's AD DC, in a network namespace) as the user source, end to
 * end: RADIUS in append, push-wait and challenge modes with DOMAIN\user and UPN logins, the
 * OpenID sign-in page in Chromium for an expired password, the bridge, AD account states as
 * clear Reply-Messages, nested groups in the policy, and a rename that keeps the factors.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import * as client from 'openid-client';
import type { Browser } from 'playwright-core';
import { Authenticator } from '../../src/cli/authenticator.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { adDirectory, sambaAvailable, startSambaDomain, type SambaDomain } from '../helpers/samba.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const SECRET = 'ad-nas-secret-0123';
const REDIRECT = 'http://127.0.0.1:1/cb';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const up = sambaAvailable() && hasCommand('radclient') && hasCommand('oathtool');
const ready = (t: TestContext) => requirePeer(t, up, 'a Samba AD DC (root, samba, ip), radclient and oathtool');
const password = () => `Passw0rd!-${randomBytes(4).toString('hex')}`;
const code = (secret: string, steps = 0) => oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30 * steps}`]);

describe('Active Directory (Samba AD DC) through every front', () => {
  let ad: SambaDomain;
  const servers: Record<'append' | 'pushwait' | 'challenge', TestServer> = {} as never;
  const pw: Record<string, string> = {};
  const secrets: Record<string, string> = {};

  before(async () => {
    if (!up) return;
    ad = await startSambaDomain();
    for (const name of ['amy', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal']) {
      pw[name] = password();
      await ad.createUser(name, pw[name], { givenName: name, surname: 'Tester', mail: `${name}@corp.example.org`, upn: `${name}@corp.example.org` });
    }
    await ad.createGroup('VPN Users');
    await ad.createGroup('Engineering');
    await ad.addMembers('Engineering', ['amy', 'ben']);
    await ad.addMembers('VPN Users', ['Engineering', 'cat']);
    await ad.disable('dan');
    await ad.expirePassword('eve');
    await ad.mustChangePassword('fay');
    await ad.expireAccount('gus');
    const modes = { append: 'append', pushwait: 'push-wait', challenge: 'challenge' } as const;
    for (const [kind, mode] of Object.entries(modes) as [keyof typeof modes, (typeof modes)[keyof typeof modes]][]) {
      servers[kind] = await startTestServer({}, {}, (c) => {
        c.directories = [
          adDirectory(ad),
        ];
        c.radius.clients = [nasConfig(SECRET, { name: 'vpn', address: '127.0.0.1/32', mode, policy: { allowGroups: ['VPN Users'] } })];
        c.oidc.clients = [{ client_id: 'intranet', client_secret: 'intranet-secret-0123456789', redirect_uris: [REDIRECT] }];
        c.push.rateLimit.count = 100;
        c.otp.totpWindow = 2; // several codes a user types within one 30 s step each need a later step
      });
    }
    // OTP for the VPN group's nested members, on the append server.
    const r = await servers.append.api('POST', '/api/v1/users/factors', { group: 'VPN Users', factor: 'otp', enabled: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const x of r.body.results) if (x.otp) secrets[x.name] = x.otp.secret;
  });
  after(async () => {
    await Promise.all(Object.values(servers).map((s) => s.close()));
    await ad?.stop();
  });

  const send = (kind: keyof typeof servers, user: string, pass: string, extra: Record<string, string> = {}) =>
    radclient(servers[kind].radiusPort!, SECRET, { 'User-Name': q(user), 'User-Password': q(pass), ...extra }, { timeout: 10, retries: 1 });

  it('a group enablement finds nested members: records keyed by objectGUID', async (t) => {
    if (!ready(t)) return;
    assert.deepEqual(Object.keys(secrets).sort(), ['amy', 'ben', 'cat']);
    const amy = (await servers.append.api('GET', '/api/v1/users/amy')).body;
    assert.equal(amy.directory.name, 'corp');
    assert.ok(amy.directory.groups.includes('VPN Users') && amy.directory.groups.includes('Engineering'), JSON.stringify(amy.directory.groups));
    assert.ok(amy.directory.groups.includes('Domain Users'), 'the primary group');
  });

  it('RADIUS append with sAMAccountName, CORP\\user and the UPN; group policy refuses a non-member', async (t) => {
    if (!ready(t)) return;
    assert.equal((await send('append', 'amy', `${pw.amy},${code(secrets.amy!)}`)).code, 'Access-Accept');
    assert.equal((await send('append', 'CORP\\ben', `${pw.ben},${code(secrets.ben!)}`)).code, 'Access-Accept');
    assert.equal((await send('append', 'cat@corp.example.org', `${pw.cat},${code(secrets.cat!)}`)).code, 'Access-Accept');
    const wrong = await send('append', 'amy', `${pw.amy}x,${code(secrets.amy!, 1)}`);
    assert.equal(wrong.attributes['Reply-Message'], 'Wrong user name or password');
    const outsider = await send('append', 'hal', `${pw.hal},123456`);
    assert.equal(outsider.code, 'Access-Reject');
    assert.equal(outsider.attributes['Reply-Message'], 'This account may not sign in here');
  });

  it('AD account states reach the VPN user in words, with the right password only', async (t) => {
    if (!ready(t)) return;
    const said = async (user: string) => (await send('append', user, `${pw[user]},123456`)).attributes['Reply-Message'];
    assert.match((await said('dan'))!, /disabled/);
    assert.match((await said('eve'))!, /password has expired/);
    assert.match((await said('fay'))!, /must change your password/);
    assert.match((await said('gus'))!, /account has expired/);
    const guess = await send('append', 'eve', 'not-her-password,123456');
    assert.equal(guess.attributes['Reply-Message'], 'Wrong user name or password', 'a wrong password tells nothing more');
  });

  it('RADIUS push-wait and challenge modes for a directory user', async (t) => {
    if (!ready(t)) return;
    const s = servers.pushwait;
    await s.api('POST', '/api/v1/users/factors', { group: 'Engineering', factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/amy/enrolments')).body.uri, {});
    const held = send('pushwait', 'CORP\\amy', pw.amy!);
    let p;
    for (let i = 0; i < 100 && !p; i++) {
      [p] = await phone.pending();
      if (!p) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(p, 'a push arrived');
    await phone.answer(p.challengeId, 'approve');
    assert.equal((await held).code, 'Access-Accept');

    const c = servers.challenge;
    const otp = (await c.api('POST', '/api/v1/users/factors', { group: 'VPN Users', factor: 'otp', enabled: true })).body.results.find((x: any) => x.name === 'ben').otp.secret;
    const first = await send('challenge', 'ben@corp.example.org', pw.ben!);
    assert.equal(first.code, 'Access-Challenge', first.output);
    const done = await send('challenge', 'ben@corp.example.org', code(otp), { State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept', done.output);
  });

  it('the bridge: a logon with the domain password', async (t) => {
    if (!ready(t)) return;
    const s = servers.append;
    const token = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'ws-7', scope: 'workstation' })).body.token;
    const start = await s.api('POST', '/bridge/v1/logins', { user: 'CORP\\cat', password: pw.cat, workstation: 'ws-7', domain: 'CORP' }, token);
    assert.equal(start.status, 201, JSON.stringify(start.body));
    const ok = await s.api('POST', `/bridge/v1/logins/${start.body.challengeId}/otp`, { code: code(secrets.cat!, 1) }, token);
    assert.equal(ok.body.status, 'approved', JSON.stringify(ok.body));
    const expired = await s.api('POST', '/bridge/v1/logins', { user: 'eve', password: pw.eve, workstation: 'ws-7' }, token);
    assert.equal(expired.status, 403);
    assert.equal(expired.body.error, 'password_expired');
  });

  it('the OpenID sign-in page tells an expired password apart, in Chromium', async (t) => {
    if (!ready(t) || !requirePeer(t, haveChromium, 'chromium')) return;
    const s = servers.append;
    const rp = await client.discovery(new URL(s.issuer!), 'intranet', 'intranet-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
      await page.goto(url.toString());
      await page.getByLabel('User name').fill('CORP\\eve');
      await page.getByLabel('Password').fill(pw.eve!);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.getByText('Your password has expired').waitFor();
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: `${ARTIFACTS}oidc-ad-password-expired.png`, fullPage: true });
    } finally {
      await browser?.close();
    }
  });

  it('a rename in AD keeps the record, its factors and lockouts', async (t) => {
    if (!ready(t)) return;
    const s = servers.append;
    await ad.rename('cat', 'catherine');
    const r = await send('append', 'catherine', `${pw.cat},${code(secrets.cat!, 2)}`);
    assert.equal(r.code, 'Access-Accept', `${r.attributes['Reply-Message']}`);
    const cat = (await s.api('GET', '/api/v1/users/cat')).body;
    assert.equal(cat.directory.login, 'catherine');
    assert.equal((await s.api('GET', '/api/v1/users/catherine')).status, 404, 'no second record');
  });
});
