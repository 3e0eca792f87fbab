import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { dropPrefix } from '../helpers/scale.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const hotpCode = (secret: string, counter: number) =>
  execFileSync('oathtool', ['--hotp', '-b', '-c', String(counter), secret], { encoding: 'utf8' }).trim();
const up = (await redisAvailable()) && hasCommand('oathtool');
const ready = (t: TestContext) => requirePeer(t, up, 'redis-server and oathtool');
/** A TOTP code of the next step, so it is not one an earlier call used up (each user's TOTP is used once per test). */
const nextTotp = (secret: string) => oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]);

/**
 * The attacks of the security review against the privacyIDEA-compatible endpoints and the
 * bridge, on a production-like server (Redis store, behind a proxy that sets
 * X-Forwarded-For so each test can speak from its own address).
 */
describe('privacyIDEA endpoints and bridge credentials under attack', () => {
  let s: TestServer;
  let fleet: string;
  let ws1: string;
  let pcs: string;
  let carolPhone: Authenticator;
  let aliceTotp: string;
  let carolTotp: string;
  let samTotp: string;
  let olgaTotp: string;
  let hankHotp: string;
  let source = 0;
  /** A fresh client address for each caller, as a proxy reports it. */
  const from = () => `198.51.100.${++source}`;

  const prefix = uniquePrefix('sec');
  before(async () => {
    if (!up) return;
    s = await startTestServer({}, {}, (c) => {
      c.store.kind = 'redis';
      c.store.redis.url = testRedisUrl();
      c.store.redis.prefix = prefix;
      c.http.trustProxy = true;
      c.push.rejectLockout.count = 100;
    });
    fleet = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'fleet-all' })).body.token;
    ws1 = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'WS-1', scope: 'workstation' })).body.token;
    pcs = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'pc-fleet', workstations: ['PC-*'] })).body.token;
    for (const name of ['alice', 'carol', 'pwonly', 'hank', 'tina', 'sam', 'olga']) await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` });
    aliceTotp = (await s.api('POST', '/api/v1/users/alice/otp', {})).body.secret;
    samTotp = (await s.api('POST', '/api/v1/users/sam/otp', {})).body.secret;
    olgaTotp = (await s.api('POST', '/api/v1/users/olga/otp', {})).body.secret;
    carolTotp = (await s.api('POST', '/api/v1/users/carol/otp', {})).body.secret;
    await s.api('POST', '/api/v1/users/tina/otp', {});
    hankHotp = (await s.api('POST', '/api/v1/users/hank/otp', { type: 'hotp' })).body.secret;
    await s.api('POST', '/api/v1/users/factors', { users: ['carol'], factor: 'push', enabled: true });
    carolPhone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/carol/enrolments')).body.uri, {});
  });
  after(async () => {
    await s?.close();
    if (!up) return;
    const raw = new Redis(testRedisUrl());
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  const pi = async (path: string, fields: Record<string, string>, headers: Record<string, string> = {}, ip = from()) => {
    const res = await fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip, ...headers },
      body: new URLSearchParams(fields).toString(),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const auth = (r: { body: any }) => r.body.result.authentication as string;
  const pendingOf = async (user: string) =>
    ((await s.api('GET', '/api/v1/challenges?limit=500')).body.challenges as any[]).filter((c) => c.user === user);
  const bridge = (method: string, path: string, body: unknown, token: string) => s.api(method, `/bridge/v1${path}`, body, token);

  describe('/validate/check without a transaction needs the first factor or a credential', () => {
    it('an empty pass from a stranger opens nothing, cancels nothing and uses up no push allowance', async (t) => {
      if (!ready(t)) return;
      const vpn = await s.api('POST', '/api/v1/challenges', { user: 'carol', origin: { client: 'Corporate VPN' } });
      assert.equal(vpn.status, 201);
      for (let i = 0; i < 8; i++) {
        const r = await pi('/validate/check', { user: 'carol', pass: '' }, { 'x-countersign-workstation': 'Corporate VPN' });
        assert.equal(auth(r), 'REJECT');
        assert.equal(r.body.detail.transaction_id, undefined);
      }
      const pending = await pendingOf('carol');
      assert.deepEqual(pending.map((c) => c.id), [vpn.body.id], 'her VPN login is still the one pending, nothing new opened');
      assert.deepEqual((await carolPhone.pending()).map((p) => p.challengeId), [vpn.body.id]);
      await s.api('POST', `/api/v1/challenges/${vpn.body.id}/cancel`);
      // Her own next login (with her password) still gets a push: the allowance is intact.
      const own = await pi('/validate/check', { user: 'carol', pass: 'carol-pw' });
      assert.equal(auth(own), 'CHALLENGE');
      assert.ok(own.body.detail.multi_challenge.some((m: any) => m.type === 'push'));
      const [p] = await carolPhone.pending();
      assert.equal(p!.client, 'privacyIDEA client', 'the label is ours, never a request header');
      await carolPhone.answer(p!.challengeId, 'reject');
    });

    it('a bare code without a credential is not a login, and is not used up', async (t) => {
      if (!ready(t)) return;
      const code = nextTotp(aliceTotp);
      const r = await pi('/validate/check', { user: 'alice', pass: code });
      assert.equal(auth(r), 'REJECT');
      assert.equal(r.body.result.value, false);
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'alice', code })).status, 200, 'the code still works for alice');
    });

    it('anonymous wrong codes never lock the user out', async (t) => {
      if (!ready(t)) return;
      for (let i = 0; i < 15; i++) assert.equal(auth(await pi('/validate/check', { user: 'carol', pass: '000000' })), 'REJECT');
      for (let i = 0; i < 15; i++) assert.equal(auth(await pi('/validate/check', { user: 'carol', pass: 'wrong-pw000000' })), 'REJECT');
      const u = (await s.api('GET', '/api/v1/users/carol')).body;
      assert.equal(u.otp.lockedUntil, undefined);
      assert.equal(u.otp.failures, 0);
      const ok = await pi('/validate/check', { user: 'carol', pass: `carol-pw${nextTotp(carolTotp)}` });
      assert.equal(auth(ok), 'ACCEPT', 'password immediately followed by the code, as privacyIDEA accepts it');
    });

    it('one answer for an unknown user, a wrong password and a user without a second factor', async (t) => {
      if (!ready(t)) return;
      const answers = await Promise.all([
        pi('/validate/check', { user: 'nobody', pass: 'x-pw' }),
        pi('/validate/check', { user: 'alice', pass: 'wrong' }),
        pi('/validate/check', { user: 'pwonly', pass: 'pwonly-pw' }),
      ]);
      for (const a of answers) {
        assert.equal(a.status, 200);
        assert.deepEqual(a.body.result, { status: true, value: false, authentication: 'REJECT' });
        assert.equal(a.body.detail.message, 'wrong otp pin');
      }
    });

    it('throttles guessing per user and source; past the per-user limit only known sources may try', async (t) => {
      if (!ready(t)) return;
      const guesser = from();
      for (let i = 0; i < 10; i++) assert.equal(auth(await pi('/validate/check', { user: 'tina', pass: `guess${i}` }, {}, guesser)), 'REJECT');
      const held = await pi('/validate/check', { user: 'tina', pass: 'tina-pw' }, {}, guesser);
      assert.equal(held.status, 429, 'that source waits, even with the right password');
      const home = from();
      assert.equal(auth(await pi('/validate/check', { user: 'tina', pass: 'tina-pw' }, {}, home)), 'CHALLENGE', 'another source is not held');
      assert.equal(auth(await pi('/validate/check', { user: 'alice', pass: 'alice-pw' }, {}, from())), 'CHALLENGE', 'other users are not held');
      // The guesser's address has used its failures for the minute: it waits, whoever it names.
      assert.equal((await pi('/validate/check', { user: 'alice', pass: 'alice-pw' }, {}, guesser)).status, 429);
      // A guesser spread over many addresses: 100 failures hold every unknown source for tina...
      for (let batch = 0; batch < 95; batch += 19) {
        await Promise.all(Array.from({ length: 19 }, (_, i) => pi('/validate/check', { user: 'tina', pass: `spread${batch + i}` })));
      }
      assert.equal((await pi('/validate/check', { user: 'tina', pass: 'tina-pw' })).status, 429);
      // ...but not her own workstation, where she signed in before.
      assert.equal(auth(await pi('/validate/check', { user: 'tina', pass: 'tina-pw' }, {}, home)), 'CHALLENGE');
    });

    it('with a credential: an empty pass opens the challenge labelled by the credential, not a header', async (t) => {
      if (!ready(t)) return;
      const r = await pi('/validate/check', { user: 'carol', pass: '' }, { authorization: ws1, 'x-countersign-workstation': 'Corporate VPN' });
      assert.equal(auth(r), 'CHALLENGE');
      const [p] = await carolPhone.pending();
      assert.equal(p!.client, 'WS-1');
      await carolPhone.answer(p!.challengeId, 'reject');
      const forged = await pi('/validate/check', { user: 'carol', pass: '' }, { authorization: 'csb_forged' });
      assert.equal(forged.status, 401);
    });
  });

  describe("privacyIDEA's state parameter (the FreeRADIUS plugin)", () => {
    /** The plugin's request: user, pass, state (the Access-Challenge State, i.e. the transaction id), client, realm. */
    const plugin = (fields: Record<string, string>) => pi('/validate/check', { client: '192.0.2.10', realm: '', ...fields }, { 'user-agent': 'FreeRADIUS' });

    it('a code with an invented or missing password and an invented State is refused', async (t) => {
      if (!ready(t)) return;
      assert.equal(auth(await plugin({ user: 'sam', pass: nextTotp(samTotp), state: 'AAAAAAAAAAAAAAAAAAAAAAAA' })), 'REJECT');
      assert.equal(auth(await plugin({ user: 'sam', pass: nextTotp(samTotp), state: 'not-a-transaction' })), 'REJECT');
    });

    it('password → CHALLENGE; the code with its State → ACCEPT once; foreign and decided transactions are refused', async (t) => {
      if (!ready(t)) return;
      const first = await plugin({ user: 'sam', pass: 'sam-pw' });
      assert.equal(auth(first), 'CHALLENGE');
      const tid = first.body.detail.transaction_id as string;
      assert.equal(auth(await plugin({ user: 'carol', pass: nextTotp(carolTotp), state: tid })), 'REJECT', 'another user’s transaction');
      assert.equal(auth(await plugin({ user: 'sam', pass: '000000', state: tid })), 'REJECT', 'a wrong code');
      const code = nextTotp(samTotp);
      const ok = await plugin({ user: 'sam', pass: code, state: tid });
      assert.equal(auth(ok), 'ACCEPT', JSON.stringify(ok.body));
      assert.equal((await s.api('GET', `/api/v1/challenges/${tid}`)).body.state, 'approved');
      assert.equal(auth(await plugin({ user: 'sam', pass: nextTotp(samTotp), state: tid })), 'REJECT', 'a decided transaction');
    });
  });

  describe('bridge credentials are scoped', () => {
    it('a credential speaks only for its workstations', async (t) => {
      if (!ready(t)) return;
      assert.equal((await bridge('POST', '/logins', { user: 'alice', workstation: 'WS-1' }, ws1)).status, 201);
      const other = await bridge('POST', '/logins', { user: 'alice', workstation: 'WS-2' }, ws1);
      assert.equal(other.status, 403);
      assert.equal(other.body.error, 'workstation_not_allowed');
      assert.equal((await bridge('POST', '/logins', { user: 'alice', workstation: 'pc-17' }, pcs)).status, 201, 'names compare without case');
      assert.equal((await bridge('POST', '/logins', { user: 'alice', workstation: 'LAPTOP-1' }, pcs)).status, 403);
      assert.equal((await s.api('POST', '/api/v1/bridge-credentials', { name: 'bad', scope: 'workstation', workstations: ['PC-*'] })).status, 400);
    });

    it('a login can be polled, answered or cancelled only with the credential that opened it', async (t) => {
      if (!ready(t)) return;
      const mine = await bridge('POST', '/logins', { user: 'alice', workstation: 'PC-1' }, pcs);
      const id = mine.body.challengeId as string;
      assert.equal((await bridge('GET', `/logins/${id}`, undefined, fleet)).status, 404);
      assert.equal((await bridge('POST', `/logins/${id}/otp`, { code: '123456' }, fleet)).status, 404);
      assert.equal((await bridge('POST', `/logins/${id}/cancel`, undefined, fleet)).status, 404);
      assert.equal((await bridge('GET', `/logins/${id}`, undefined, pcs)).body.status, 'pending');
      // Nor through the privacyIDEA endpoints, which see only their own logins.
      const poll = await fetch(`${s.url}/validate/polltransaction?transaction_id=${id}`);
      assert.equal(((await poll.json()) as any).detail.challenge_status, 'none');
      assert.equal((await bridge('POST', `/logins/${id}/cancel`, undefined, pcs)).body.status, 'cancelled');
    });

    it('offline batches need an approved logon of that user at that workstation, once', async (t) => {
      if (!ready(t)) return;
      const noLogin = await bridge('POST', '/offline', { user: 'hank', workstation: 'WS-1', loginId: 'A'.repeat(24) }, ws1);
      assert.equal(noLogin.status, 403);
      const pending = await bridge('POST', '/logins', { user: 'hank', workstation: 'WS-1' }, ws1);
      assert.equal((await bridge('POST', '/offline', { user: 'hank', workstation: 'WS-1', loginId: pending.body.challengeId }, ws1)).status, 403, 'not approved yet');
      assert.equal((await bridge('POST', `/logins/${pending.body.challengeId}/otp`, { code: hotpCode(hankHotp, 0) }, ws1)).body.status, 'approved');
      const loginId = pending.body.challengeId;
      assert.equal((await bridge('POST', '/offline', { user: 'hank', workstation: 'PC-1', loginId }, pcs)).status, 403, 'another credential');
      assert.equal((await bridge('POST', '/offline', { user: 'alice', workstation: 'WS-1', loginId }, ws1)).status, 403, 'another user');
      const ok = await bridge('POST', '/offline', { user: 'hank', workstation: 'WS-1', loginId, count: 5 }, ws1);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.deepEqual(ok.body.values.map((v: any) => v.counter), [1, 2, 3, 4, 5]);
      assert.equal((await bridge('POST', '/offline', { user: 'hank', workstation: 'WS-1', loginId }, ws1)).status, 403, 'once per logon');
      // A TOTP user has nothing offline, even after an approved logon.
      const a = await bridge('POST', '/logins', { user: 'olga', workstation: 'WS-1' }, ws1);
      await bridge('POST', `/logins/${a.body.challengeId}/otp`, { code: oathTotp(olgaTotp) }, ws1);
      assert.equal((await bridge('POST', '/offline', { user: 'olga', workstation: 'WS-1', loginId: a.body.challengeId }, ws1)).body.error, 'offline_needs_hotp');
    });

    it('only counters handed out to that workstation can be retired; never a TOTP user’s future codes', async (t) => {
      if (!ready(t)) return;
      const code = nextTotp(olgaTotp);
      const kill = await bridge('POST', '/offline/used', { user: 'olga', workstation: 'WS-1', counters: [9007199254740000] }, ws1);
      assert.equal(kill.status, 409);
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'olga', code })).status, 200, 'her next code still works');
      const far = await bridge('POST', '/offline/used', { user: 'hank', workstation: 'WS-1', counters: [500] }, ws1);
      assert.equal(far.body.error, 'counter_not_issued');
      const elsewhere = await bridge('POST', '/offline/used', { user: 'hank', workstation: 'PC-9', counters: [2] }, pcs);
      assert.equal(elsewhere.body.error, 'counter_not_issued', 'counters handed to WS-1 are not PC-9’s to report');
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'hank', code: hotpCode(hankHotp, 2) })).status, 200, 'nothing was retired');
      assert.equal((await bridge('POST', '/offline/used', { user: 'hank', workstation: 'WS-1', counters: [4] }, ws1)).status, 200);
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'hank', code: hotpCode(hankHotp, 4) })).body.error, 'otp_replayed');
      await new Promise((r) => setTimeout(r, 50));
      const audit = (await s.api('GET', '/api/v1/audit?user=hank')).body.events as any[];
      const used = audit.find((e) => e.detail?.action === 'offline.used');
      assert.equal(used.type, 'admin', 'an administrative action, not a login');
      assert.equal(used.outcome, undefined);
      assert.equal(used.actor, 'bridge-credential:WS-1');
      assert.ok(audit.some((e) => e.detail?.action === 'offline.batch' && e.actor === 'bridge-credential:WS-1'));
    });

    it('batches are rate-limited per user', async (t) => {
      if (!ready(t)) return;
      let counter = 5;
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const l = await bridge('POST', '/logins', { user: 'hank', workstation: 'WS-1' }, ws1);
        await bridge('POST', `/logins/${l.body.challengeId}/otp`, { code: hotpCode(hankHotp, counter++) }, ws1);
        const b = await bridge('POST', '/offline', { user: 'hank', workstation: 'WS-1', loginId: l.body.challengeId, count: 1 }, ws1);
        statuses.push(b.status);
        counter = b.status === 200 ? b.body.values[0].counter + 1 : counter;
      }
      // One batch went to the earlier test; five per hour in all.
      assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
    });
  });
});
