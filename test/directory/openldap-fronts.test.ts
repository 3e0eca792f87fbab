/**
 * OpenLDAP (Debian's slapd) as the user source and first factor, end to end through the
 * fronts: records made at first sign-in or by group, keyed by entryUUID; group policy per
 * client; clear words for an expired password; injection, empty passwords and a directory
 * that goes away mid-way (denied, then back).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { Authenticator } from '../../src/cli/authenticator.js';
import { ScriptedBrowser, field } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';
import { ldapDirectory, slapdAvailable, startSlapd, USERS, type Slapd } from '../helpers/slapd.js';

const SECRET = 'directory-nas-secret';
const REDIRECT = 'http://127.0.0.1:1/cb';
const up = slapdAvailable() && hasCommand('radclient') && hasCommand('oathtool');
const ready = (t: TestContext) => requirePeer(t, up, 'slapd, radclient and oathtool');
const pw = (uid: string) => USERS.find((u) => u.uid === uid)!.password;
/** A TOTP code `steps` periods ahead, so codes used earlier in the file are not replays. */
const code = (secret: string, steps = 0) => oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30 * steps}`]);

describe('OpenLDAP as the directory, through every front', () => {
  let slapd: Slapd;
  let s: TestServer;
  const secrets: Record<string, string> = {};

  before(async () => {
    if (!up) return;
    slapd = await startSlapd();
    s = await startTestServer({}, {}, (c) => {
      c.directories = [
        ldapDirectory(slapd),
        { name: 'local', kind: 'local', realms: [] },
      ];
      c.radius.clients = [nasConfig(SECRET, { name: 'vpn', address: '127.0.0.1/32', mode: 'append' })];
      c.oidc.clients = [
        { client_id: 'intranet', client_secret: 'intranet-secret-0123456789', redirect_uris: [REDIRECT] },
        // CIBA for staff only: a helpdesk tool that may ask staff, and nobody else, to approve.
        {
          client_id: 'staff-desk', client_secret: 'staff-desk-secret-0123456789', redirect_uris: [REDIRECT], grant_types: ['urn:openid:params:grant-type:ciba'],
          response_types: [], backchannel_token_delivery_mode: 'poll', countersign_allow_groups: ['staff'],
        },
      ];
      c.push.rateLimit.count = 100;
    });
    // Enablement by group makes records for the members (nested) and enrols their OTP.
    const enabled = await s.api('POST', '/api/v1/users/factors', { group: 'engineering', factor: 'otp', enabled: true });
    assert.equal(enabled.status, 200, JSON.stringify(enabled.body));
    for (const r of enabled.body.results) if (r.otp) secrets[r.name] = r.otp.secret;
  });
  after(async () => {
    await s?.close();
    await slapd?.destroy();
  });

  const send = (user: string, password: string) => radclient(s.radiusPort!, SECRET, { 'User-Name': q(user), 'User-Password': q(password) });

  it('enabling a group makes records for its nested members, keyed by the directory', async (t) => {
    if (!ready(t)) return;
    assert.deepEqual(Object.keys(secrets).sort(), ['alice', 'bob', 'carol'], 'engineering = staff (alice, bob) + carol');
    const alice = (await s.api('GET', '/api/v1/users/alice')).body;
    assert.equal(alice.directory.name, 'corp');
    assert.equal(alice.directory.state, 'active');
    assert.deepEqual([...alice.directory.groups].sort(), ['admins', 'engineering', 'staff'], 'nested groups');
    // The group's enablement is an event of each member, naming the group.
    const enabled = (await s.api('GET', '/api/v1/audit?user=carol')).body.events.find((e: any) => e.detail?.action === 'otp.enable');
    assert.equal(enabled?.detail.group, 'engineering');
    assert.equal(enabled?.detail.enrolled, true);
    assert.equal(alice.email, 'alice@example.org');
    assert.equal(alice.hasPassword, false, 'the password stays in the directory');
  });

  it('RADIUS append: the directory password and a code, in each login-name form', async (t) => {
    if (!ready(t)) return;
    assert.equal((await send('alice', `${pw('alice')},${code(secrets.alice!)}`)).code, 'Access-Accept');
    assert.equal((await send('EXAMPLE\\bob', `${pw('bob')},${code(secrets.bob!)}`)).code, 'Access-Accept');
    assert.equal((await send('carol@example.org', `${pw('carol')},${code(secrets.carol!)}`)).code, 'Access-Accept');
    const wrong = await send('alice', `not-her-password,${code(secrets.alice!, 1)}`);
    assert.equal(wrong.code, 'Access-Reject');
    assert.equal(wrong.attributes['Reply-Message'], 'Wrong user name or password');
  });

  it('LDAP injection and empty passwords never pass, and make no records', async (t) => {
    if (!ready(t)) return;
    for (const user of ['*', 'alice)(uid=*', '*)(|(uid=*', 'al*', '\\2a']) {
      const r = await send(user, `${pw('alice')},123456`);
      assert.equal(r.code, 'Access-Reject', user);
      assert.equal(r.attributes['Reply-Message'], 'Wrong user name or password', user);
    }
    assert.equal((await send('alice', ',123456')).code, 'Access-Reject', 'empty password');
    const users = (await s.api('GET', '/api/v1/users?limit=100')).body.users.map((u: any) => u.name);
    assert.deepEqual(users.sort(), ['alice', 'bob', 'carol']);
  });

  it('an expired password is said as such, over RADIUS and on the sign-in page', async (t) => {
    if (!ready(t)) return;
    const r = await send('expired', `${pw('expired')},123456`);
    assert.equal(r.code, 'Access-Reject');
    assert.match(r.attributes['Reply-Message']!, /password has expired/);

    const rp = await client.discovery(new URL(s.issuer!), 'intranet', 'intranet-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const b = new ScriptedBrowser();
    const login = await b.follow(url.toString());
    const page = await b.follow(new URL(`${new URL(login.url).pathname}/login`, login.url).toString(), {
      form: { csrf: field(login.body, 'csrf'), user: 'expired', password: pw('expired') },
    });
    assert.equal(page.res.status, 403);
    assert.match(page.body, /Your password has expired/);
    assert.doesNotMatch(page.body, /Wrong user name or password/);
  });

  it('group policy: allowGroups refuses others (by default and per client); mfaGroups lets the rest in on the password', async (t) => {
    if (!ready(t)) return;
    s.ctx.config.policy.allowGroups = ['ops'];
    try {
      const refused = await send('alice', `${pw('alice')},${code(secrets.alice!, 1)}`);
      assert.equal(refused.code, 'Access-Reject');
      assert.equal(refused.attributes['Reply-Message'], 'This account may not sign in here');
    } finally {
      delete s.ctx.config.policy.allowGroups;
    }
    // Per client: a bridge credential for staff only.
    const token = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'staff-pcs', policy: { allowGroups: ['staff'] } })).body.token;
    const asCarol = await s.api('POST', '/bridge/v1/logins', { user: 'carol', password: pw('carol'), workstation: 'PC-1' }, token);
    assert.equal(asCarol.status, 403);
    assert.equal(asCarol.body.error, 'not_allowed');
    assert.equal((await s.api('POST', '/bridge/v1/logins', { user: 'EXAMPLE\\alice', password: pw('alice'), workstation: 'PC-1' }, token)).status, 201);
    // The default policy: a second factor only for staff. carol (engineering, not staff) passes on her password.
    s.ctx.config.policy.mfaGroups = ['staff'];
    try {
      assert.equal((await send('carol', pw('carol'))).code, 'Access-Accept', 'password alone, by policy');
      const audit = (await s.api('GET', '/api/v1/audit?user=carol&front=radius')).body.events;
      assert.ok(audit.some((e: any) => e.type === 'login' && e.method === 'first-factor' && e.outcome === 'approved'));
      assert.equal((await send('alice', pw('alice'))).code, 'Access-Reject', 'staff still need their code');
    } finally {
      delete s.ctx.config.policy.mfaGroups;
    }
  });

  it('CIBA: the relying party’s groups decide who may be asked, and a policy never lets CIBA in on no factor at all', async (t) => {
    if (!ready(t)) return;
    const rp = await client.discovery(new URL(s.issuer!), 'staff-desk', 'staff-desk-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    assert.equal((await s.api('POST', '/api/v1/users/factors', { users: ['alice', 'carol'], factor: 'push', enabled: true })).status, 200);
    const enrol = async (user: string) => Authenticator.enrol((await s.api('POST', `/api/v1/users/${user}/enrolments`)).body.uri, {});
    const alice = await enrol('alice');
    const carol = await enrol('carol');
    const ask = (user: string) => client.initiateBackchannelAuthentication(rp, { scope: 'openid', login_hint: user });

    // carol is in engineering, not staff: refused in the words every CIBA refusal uses, and not pushed.
    await assert.rejects(ask('carol'), { error: 'access_denied', error_description: 'this user cannot be asked to approve a sign-in' });
    assert.deepEqual(await carol.pending(), [], 'no push for a user the client may not sign in');

    const req = await ask('alice');
    const [p] = await alice.pending();
    assert.ok(p, 'staff are asked on their phone');
    await alice.answer(p!.challengeId, 'approve');
    const claims = (await client.pollBackchannelAuthenticationGrant(rp, { ...req, interval: 1 })).claims()!;
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.acr, 'urn:countersign:mfa');

    // A policy that lets alice in on her password elsewhere (a second factor only for ops): CIBA
    // checked no password, so her phone is still the only way in.
    s.ctx.config.policy.mfaGroups = ['ops'];
    try {
      const again = await ask('alice');
      const [p2] = await alice.pending();
      assert.ok(p2, 'asked on her phone, not approved on no factor at all');
      await alice.answer(p2!.challengeId, 'reject');
      await assert.rejects(client.pollBackchannelAuthenticationGrant(rp, { ...again, interval: 1 }), { error: 'access_denied' });
    } finally {
      delete s.ctx.config.policy.mfaGroups;
    }
  });

  it('a directory that stops answering denies logins with a clear message, and they work again when it returns', async (t) => {
    if (!ready(t)) return;
    await slapd.stop();
    try {
      const r = await send('bob', `${pw('bob')},${code(secrets.bob!, 1)}`);
      assert.equal(r.code, 'Access-Reject');
      assert.match(r.attributes['Reply-Message']!, /directory cannot be reached/);
      const dirs = (await s.api('GET', '/api/v1/directories')).body.directories;
      assert.equal(dirs.find((d: any) => d.name === 'corp').reachable, false);
    } finally {
      await slapd.start();
    }
    let answer = '';
    for (let i = 0; i < 20 && answer !== 'Access-Accept'; i++) {
      answer = (await send('bob', `${pw('bob')},${code(secrets.bob!, 1)}`)).code;
      if (answer !== 'Access-Accept') await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(answer, 'Access-Accept');
  });

  it('sync: a user removed from the directory is marked removed and logs in nowhere, not even where the first factor is vouched for', async (t) => {
    if (!ready(t)) return;
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/carol/enrolments')).body.uri, {});
    void phone;
    const admin = await slapd.admin();
    try {
      await admin.del(USERS.find((u) => u.uid === 'carol')!.dn);
    } finally {
      await admin.unbind();
    }
    const report = (await s.api('POST', '/api/v1/directories/corp/sync')).body;
    assert.deepEqual(report.removed, ['carol']);
    assert.equal((await s.api('GET', '/api/v1/users/carol')).body.directory.state, 'removed');
    const removedEvent = (await s.api('GET', '/api/v1/audit?user=carol')).body.events.find((e: any) => e.detail?.action === 'directory.user-removed');
    assert.equal(removedEvent?.client, 'corp', 'an event of the user the sync removed');
    const opened = await s.api('POST', '/api/v1/challenges', { user: 'carol' });
    assert.equal(opened.status, 403);
    assert.equal(opened.body.error, 'account_removed');
    const dirs = (await s.api('GET', '/api/v1/directories')).body.directories;
    const corp = dirs.find((d: any) => d.name === 'corp');
    assert.equal(corp.reachable, true);
    assert.equal(corp.lastSync.removed.length, 1);
  });
});
