/**
 * The first factor through every front, as an attacker meets it (issue 21, findings 0–3 and 6):
 * a production-like server (Redis, behind a proxy that sets X-Forwarded-For so each caller
 * speaks from its own address), Debian's radclient as the NAS, the privacyIDEA protocol as a
 * relying party's server speaks it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { dropPrefix } from '../helpers/scale.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const up = (await redisAvailable()) && hasCommand('oathtool') && hasCommand('radclient');
const ready = (t: TestContext) => requirePeer(t, up, 'redis-server, oathtool and radclient');
const SECRET = 'first-factor-secret';
/** The code of the next time step: not one an earlier call in this file used up. */
const nextTotp = (secret: string) => oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]);
/** A relying party's server that calls the privacyIDEA endpoints for its users (bridge.trustedCallers). */
const RP = '192.0.2.200';

describe('the first factor under attack, through every front', () => {
  let s: TestServer;
  const prefix = uniquePrefix('ff');
  const totp: Record<string, string> = {};
  /** Each directory check the server makes: [login, password]. */
  let checks: [string, string][] = [];
  let source = 0;
  /** A fresh address per caller. */
  const from = () => `198.51.100.${++source}`;

  before(async () => {
    if (!up) return;
    s = await startTestServer({}, {}, (c) => {
      c.store.kind = 'redis';
      c.store.redis.url = testRedisUrl();
      c.store.redis.prefix = prefix;
      c.http.trustProxy = true;
      c.bridge.trustedCallers = [RP];
      c.firstFactor.perAccountFailures = 20;
      c.firstFactor.knownSourceMaxDelaySeconds = 1;
      c.push.rateLimit.count = 100;
      c.radius.clients = [
        nasConfig(SECRET, { name: 'vpn', address: '127.0.0.1/32', mode: 'append' }),
        nasConfig(SECRET, { name: 'finance-vpn', address: '127.0.0.2/32', mode: 'append', policy: { allowGroups: ['finance'] } }),
        nasConfig(SECRET, { name: 'finance-challenge', address: '127.0.0.3/32', mode: 'challenge', policy: { allowGroups: ['finance'] } }),
        nasConfig(SECRET, { name: 'finance-sfo', address: '127.0.0.4/32', mode: 'append', secondFactorOnly: true, policy: { allowGroups: ['finance'] } }),
      ];
    });
    for (const name of ['victim', 'vicky', 'rita', 'bob', 'dora', 'eve', 'fred', 'hank', 'gina']) {
      await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` });
      totp[name] = (await s.api('POST', '/api/v1/users/' + name + '/otp', {})).body.secret;
    }
    // fred and hank are in finance (as a directory would have said at their last sign-in); gina is not.
    for (const member of ['fred', 'hank']) await s.ctx.store.users.update(member, { directoryGroups: JSON.stringify(['Finance']) });
    const verify = s.ctx.directory.verify.bind(s.ctx.directory);
    s.ctx.directory.verify = async (login, password) => {
      checks.push([login, password]);
      return verify(login, password);
    };
  });
  after(async () => {
    await s?.close();
    if (!up) return;
    const raw = new Redis(testRedisUrl());
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  const post = async (path: string, body: Record<string, string>, ip: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip, ...headers },
      body: new URLSearchParams(body).toString(),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const json = async (path: string, body: unknown, ip: string) => {
    const res = await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': ip }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  };
  const pi = (body: Record<string, string>, ip: string, headers: Record<string, string> = {}) => post('/validate/check', body, ip, headers);
  const auth = (r: { body: any }) => r.body?.result?.authentication as string | undefined;
  const rad = (user: string, password: string, station?: string, nas = '127.0.0.1') =>
    radclient(s.radiusPort!, SECRET, {
      'User-Name': q(user),
      'User-Password': q(password),
      ...(station ? { 'Calling-Station-Id': q(station) } : {}),
      'Packet-Src-IP-Address': nas,
    });

  describe('finding 0: a relying party speaking for its users cannot be used to lock one out', () => {
    it('strangers’ failures typed into the site’s form do not hold the user at their own address', async (t) => {
      if (!ready(t)) return;
      const attacker = '203.0.113.66';
      for (let i = 0; i < 10; i++) assert.equal(auth(await pi({ user: 'victim', pass: `guess${i}`, client: attacker }, RP)), 'REJECT');
      // The same site, the victim's own address, the right password: asked for the code, not 429.
      const real = await pi({ user: 'victim', pass: 'victim-pw', client: '198.51.100.250' }, RP);
      assert.equal(auth(real), 'CHALLENGE', JSON.stringify(real.body));
      // The stranger's address (as the site reported it) is the one that waits.
      assert.equal((await pi({ user: 'victim', pass: 'victim-pw', client: attacker }, RP)).status, 429);
    });

    it('a client address from a caller nobody trusts is ignored: it cannot spend someone else’s budget', async (t) => {
      if (!ready(t)) return;
      const direct = '203.0.113.67';
      for (let i = 0; i < 10; i++) await pi({ user: 'vicky', pass: `forged${i}`, client: '198.51.100.251' }, direct);
      assert.equal((await pi({ user: 'vicky', pass: 'vicky-pw' }, direct)).status, 429, 'the caller itself waits');
      assert.equal(auth(await pi({ user: 'vicky', pass: 'vicky-pw', client: '198.51.100.251' }, RP)), 'CHALLENGE', 'the named address was not charged');
    });

    it('without a client address the site is the user’s usual place: slowed by failures, never held', async (t) => {
      if (!ready(t)) return;
      assert.equal(auth(await pi({ user: 'dora', pass: 'dora-pw' }, RP)), 'CHALLENGE');
      for (let i = 0; i < 14; i++) assert.equal(auth(await pi({ user: 'dora', pass: `guess${i}` }, RP)), 'REJECT');
      assert.equal(auth(await pi({ user: 'dora', pass: 'dora-pw' }, RP)), 'CHALLENGE');
    });
  });

  describe('finding 1: RADIUS has a first-factor throttle', () => {
    it('a guesser at the VPN prompt waits after 10 failures and reaches the directory no more; the user elsewhere gets in', async (t) => {
      if (!ready(t)) return;
      const guesser = '203.0.113.50';
      for (let i = 0; i < 10; i++) {
        const r = await rad('rita', `wrong${i},123456`, guesser);
        assert.equal(r.code, 'Access-Reject');
        assert.match(r.attributes['Reply-Message'] ?? '', /Wrong user name or password/);
      }
      checks = [];
      const held = await rad('rita', `rita-pw,${nextTotp(totp.rita!)}`, guesser);
      assert.equal(held.code, 'Access-Reject', 'even the right password waits at that source');
      assert.match(held.attributes['Reply-Message'] ?? '', /too many failed sign-ins/i);
      assert.deepEqual(checks, [], 'no directory bind while held');
      const home = await rad('rita', `rita-pw,${nextTotp(totp.rita!)}`, '198.51.100.200');
      assert.equal(home.code, 'Access-Accept', home.output);
      // Operators see it: the first factor's outcomes by front.
      const metrics = (await s.api('GET', '/metrics')).body as string;
      assert.match(metrics, /countersign_first_factor_total\{front="radius",outcome="throttled"\} [1-9]/);
      assert.match(metrics, /countersign_first_factor_total\{front="radius",outcome="invalid"\} (1\d|[2-9]\d)/);
    });

    it('append mode’s three readings of one packet are one failure', async (t) => {
      if (!ready(t)) return;
      const station = '203.0.113.51';
      checks = [];
      assert.equal((await rad('bob', 'wrong1,123456', station)).code, 'Access-Reject');
      assert.deepEqual(checks.map(([, p]) => p), ['wrong1', 'wrong1,', 'wrong1,123456'], 'all three readings were tried');
      const state = await s.ctx.firstFactor.throttle.read('bob', { address: station });
      assert.equal(state.pairFailures, 1);
    });
  });

  describe('finding 2: the throttle counts the account, not the name as typed, across fronts', () => {
    it('failures under every spelling, on every front, add up for one account and source', async (t) => {
      if (!ready(t)) return;
      const place = '198.51.100.180';
      assert.equal((await json('/console/api/login', { user: 'BOB', password: 'x1' }, place)).status, 401);
      assert.equal((await json('/console/api/login', { user: 'Bob', password: 'x2' }, place)).status, 401);
      assert.equal((await json('/account/api/login', { user: 'CORP\\bob', password: 'x3' }, place)).status, 401);
      assert.equal((await json('/account/api/login', { user: 'bob', password: 'x4' }, place)).status, 401);
      assert.equal(auth(await pi({ user: 'bob@corp.example.org', pass: 'x5' }, place)), 'REJECT');
      assert.equal(auth(await pi({ user: 'BOB', pass: 'x6' }, place)), 'REJECT');
      for (const p of ['x7', 'x8']) assert.equal((await rad('bOb', p, place)).code, 'Access-Reject');
      assert.equal((await json('/account/api/login', { user: 'bob', password: 'x9' }, place)).status, 401);
      assert.equal((await json('/console/api/login', { user: 'bob', password: 'x10' }, place)).status, 401);
      // Ten failures for bob from this place, whichever front and spelling: the eleventh waits.
      assert.equal((await json('/account/api/login', { user: 'bob', password: 'bob-pw' }, place)).status, 429);
      assert.equal((await rad('bob', `bob-pw,${nextTotp(totp.bob!)}`, place)).code, 'Access-Reject');
    });

    it('one per-account budget across all fronts: past it, only the user’s usual places may try', async (t) => {
      if (!ready(t)) return;
      const usual = from();
      assert.equal(auth(await pi({ user: 'eve', pass: 'eve-pw' }, usual)), 'CHALLENGE');
      // 20 failures (this server's perAccountFailures), five on each of four fronts, each from its own address.
      for (let i = 0; i < 5; i++) {
        await json('/console/api/login', { user: 'eve', password: `c${i}` }, from());
        await json('/account/api/login', { user: 'EVE', password: `a${i}` }, from());
        await pi({ user: 'eve', pass: `p${i}` }, from());
        await rad('eve', `r${i}`, from());
      }
      assert.equal((await pi({ user: 'eve', pass: 'eve-pw' }, from())).status, 429, 'a new place waits');
      assert.equal(auth(await pi({ user: 'eve', pass: 'eve-pw' }, usual)), 'CHALLENGE', 'her usual place does not');
    });
  });

  describe('finding 6 and policy on every path: a client’s group policy holds whatever the request carries', () => {
    let finance: string;
    let open: string;
    before(async () => {
      if (!up) return;
      finance = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'finance-ws', policy: { allowGroups: ['finance'] } })).body.token;
      open = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'any-ws' })).body.token;
    });

    it('privacyIDEA with a credential: a code alone, the password and code, an empty pass, triggerchallenge', async (t) => {
      if (!ready(t)) return;
      const cred = (token: string) => ({ authorization: token });
      assert.equal(auth(await pi({ user: 'gina', pass: nextTotp(totp.gina!) }, RP, cred(finance))), 'REJECT', 'a code alone');
      assert.equal(auth(await pi({ user: 'gina', pass: `gina-pw${nextTotp(totp.gina!)}` }, RP, cred(finance))), 'REJECT', 'password and code');
      assert.equal(auth(await pi({ user: 'gina', pass: '' }, RP, cred(finance))), 'REJECT', 'an empty pass');
      assert.equal(auth(await post('/validate/triggerchallenge', { user: 'gina' }, RP, cred(finance))), 'REJECT', 'triggerchallenge');
      assert.equal(auth(await pi({ user: 'gina', pass: 'gina-pw' }, RP, cred(finance))), 'REJECT', 'the password');
      // A member, and the same user through a credential without a policy, get in.
      assert.equal(auth(await pi({ user: 'fred', pass: nextTotp(totp.fred!) }, RP, cred(finance))), 'ACCEPT');
      assert.equal(auth(await pi({ user: 'dora', pass: nextTotp(totp.dora!) }, RP, cred(open))), 'ACCEPT');
    });

    it('the bridge API: with and without a password', async (t) => {
      if (!ready(t)) return;
      const login = (body: Record<string, unknown>) => s.api('POST', '/bridge/v1/logins', { workstation: 'WS-9', ...body }, finance);
      assert.equal((await login({ user: 'gina' })).status, 403);
      assert.equal((await login({ user: 'gina', password: 'gina-pw' })).status, 403);
      assert.equal((await login({ user: 'fred' })).status, 201);
    });

    it('RADIUS: append with the code, append with the password alone (push), challenge, second-factor-only', async (t) => {
      if (!ready(t)) return;
      const refusedAt = async (nas: string, password: string) => {
        const r = await rad('gina', password, from(), nas);
        assert.equal(r.code, 'Access-Reject', `${nas}: ${r.output}`);
        assert.match(r.attributes['Reply-Message'] ?? '', /may not sign in here/);
      };
      await refusedAt('127.0.0.2', `gina-pw,${nextTotp(totp.gina!)}`);
      await refusedAt('127.0.0.2', 'gina-pw');
      await refusedAt('127.0.0.3', 'gina-pw');
      await refusedAt('127.0.0.4', nextTotp(totp.gina!));
      assert.equal((await rad('hank', `hank-pw,${nextTotp(totp.hank!)}`, from(), '127.0.0.2')).code, 'Access-Accept');
    });
  });
});

describe('finding 3: one address flooding the password check does not stall other logins', () => {
  let s: TestServer;
  before(async () => {
    if (!up) return;
    // The production password cost: a flood is only a flood when each check costs what it does.
    s = await startTestServer({}, {}, (c) => {
      c.http.trustProxy = true;
      c.passwords.scryptN = 32768;
      c.passwords.scryptP = 3;
    });
    await s.api('POST', '/api/v1/users', { name: 'real', password: 'real-pw' });
    await s.api('POST', '/api/v1/users/real/otp', {});
  });
  after(async () => {
    await s?.close();
  });

  it('a real login finishes in under 2 s while 150 anonymous requests from one address keep coming', async (t) => {
    if (!ready(t)) return;
    const check = (user: string, pass: string, ip: string) =>
      fetch(`${s.url}/validate/check`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip },
        body: new URLSearchParams({ user, pass }).toString(),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    // A server that has run a while: the decoy hash an unknown user costs is already made.
    await check('nobody-warm', 'guess', '203.0.113.151');
    let stop = false;
    let sent = 0;
    const statuses = new Map<number, number>();
    // 150 in flight at once from one address, each slot sending again when answered, until the
    // real login is done (at most 1,500 in all).
    const slot = async (i: number) => {
      while (!stop && sent < 1500) {
        sent++;
        const r = await check(`nobody${i}-${sent}`, 'guess', '203.0.113.150');
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }
    };
    const flood = Array.from({ length: 150 }, (_, i) => slot(i));
    await new Promise((r) => setTimeout(r, 200));
    const started = performance.now();
    const real = await check('real', 'real-pw', '198.51.100.77');
    const tookMs = performance.now() - started;
    stop = true;
    await Promise.all(flood);
    t.diagnostic(`the real login took ${Math.round(tookMs)} ms; the flood: ${JSON.stringify([...statuses])}`);
    assert.equal(real.body.result.authentication, 'CHALLENGE', JSON.stringify(real.body));
    assert.ok(tookMs < 2000, `the real login took ${Math.round(tookMs)} ms during the flood`);
    // The flood was answered, mostly at once: refused, not queued behind hashes.
    assert.ok((statuses.get(429) ?? 0) > 100, JSON.stringify([...statuses]));
  });
});
