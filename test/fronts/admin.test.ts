import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { oathTotp, startPairOnRedis, startTestServer, type TestServer } from '../helpers/server.js';

const hasOathtool = hasCommand('oathtool');

describe('admin API on the embedded default', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  it('requires the admin token, compared in constant time', async () => {
    assert.equal((await s.api('GET', '/api/v1/users', undefined, '')).status, 401);
    const wrong = await s.api('GET', '/api/v1/users', undefined, 'x'.repeat(40));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, 'unauthorized');
  });

  it('serves health, readiness, metrics and its OpenAPI description', async () => {
    assert.equal((await s.api('GET', '/healthz')).status, 200);
    assert.deepEqual((await s.api('GET', '/readyz')).body, { status: 'ready', store: 'memory', fronts: { http: 'up', oidc: 'up', radius: 'up' } });
    const metrics = await s.api('GET', '/metrics');
    assert.match(metrics.body, /countersign_challenges_opened_total/);
    const doc = await s.api('GET', '/api/v1/openapi.json', undefined, '');
    assert.equal(doc.status, 200);
    assert.equal(doc.body.openapi, '3.1.0');
    assert.ok(doc.body.paths['/api/v1/users/factors'].post.requestBody);
    assert.ok(doc.body.paths['/api/v1/challenges/{id}/otp'].post.responses['423']);
  });

  it('answers bad input with a clear 4xx and changes nothing', async () => {
    const cases: [string, string, unknown, number, RegExp][] = [
      ['POST', '/api/v1/users', { name: '../etc' }, 400, /user name/],
      ['POST', '/api/v1/users', { name: 'ok', extra: 1 }, 400, /extra/i],
      ['POST', '/api/v1/users', '{"name": ', 400, /JSON|Unexpected|parse/i],
      ['POST', '/api/v1/users', { name: 'ok', email: 'not-mail' }, 400, /email/i],
      ['POST', '/api/v1/users/factors', { users: [], factor: 'otp', enabled: true }, 400, /users/],
      ['POST', '/api/v1/users/factors', { users: ['a'], factor: 'sms', enabled: true }, 400, /factor/],
      ['GET', '/api/v1/users?limit=100000', undefined, 400, /limit/],
      ['GET', '/api/v1/users/nobody', undefined, 404, /nobody/],
      ['DELETE', '/api/v1/users/nobody', undefined, 404, /nobody/],
      ['POST', '/api/v1/challenges', { user: 'nobody' }, 404, /nobody/],
      ['GET', '/api/v1/challenges/not-an-id', undefined, 404, /challenge/],
      ['POST', '/api/v1/challenges/AAAAAAAAAAAAAAAAAAAAAAAA/otp', { code: '123456' }, 404, /challenge/],
      ['GET', '/api/v1/nothing-here', undefined, 404, /no route/],
    ];
    for (const [method, path, body, status, message] of cases) {
      const r = await s.api(method, path, body);
      assert.equal(r.status, status, `${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.error, 'string');
      assert.match(r.body.message, message);
    }
    assert.equal((await s.api('GET', '/api/v1/users')).body.total, 0, 'nothing was created');
  });

  it('manages users and turns factors on for many at once', async () => {
    const created = await s.api('POST', '/api/v1/users', { name: 'alice', password: 'correct horse', displayName: 'Alice' });
    assert.equal(created.status, 201);
    assert.equal(created.body.hasPassword, true);
    assert.equal(created.body.passwordHash, undefined, 'no hash in answers');
    assert.equal((await s.api('POST', '/api/v1/users', { name: 'alice' })).status, 409);
    for (const name of ['bob', 'carol']) await s.api('POST', '/api/v1/users', { name });

    const bulk = await s.api('POST', '/api/v1/users/factors', { users: ['alice', 'bob', 'carol', 'ghost'], factor: 'otp', enabled: true });
    assert.equal(bulk.status, 200);
    assert.equal(bulk.body.succeeded, 3);
    assert.equal(bulk.body.failed, 1);
    const ghost = bulk.body.results.find((r: any) => r.name === 'ghost');
    assert.match(ghost.error, /does not exist/);
    for (const r of bulk.body.results.filter((x: any) => x.ok)) {
      const uri = new URL(r.otp.uri);
      assert.equal(uri.protocol, 'otpauth:');
      assert.equal(uri.searchParams.get('issuer'), 'Countersign');
    }
    const again = await s.api('POST', '/api/v1/users/factors', { users: ['alice'], factor: 'otp', enabled: true });
    assert.equal(again.body.results[0].otp, undefined, 'an enrolled user keeps their seed');

    await s.api('POST', '/api/v1/users/factors', { users: ['alice', 'bob'], factor: 'push', enabled: true });
    const alice = (await s.api('GET', '/api/v1/users/alice')).body;
    assert.deepEqual(alice.factors, ['otp', 'push']);
    assert.equal((await s.api('POST', '/api/v1/users/factors', { users: ['bob'], factor: 'otp', enabled: false })).body.succeeded, 1);
    assert.deepEqual((await s.api('GET', '/api/v1/users/bob')).body.factors, ['push']);

    const page = await s.api('GET', '/api/v1/users?limit=2');
    assert.deepEqual(page.body.users.map((u: any) => u.name), ['alice', 'bob']);
    assert.equal(page.body.next, 'bob');
    assert.equal(page.body.total, 3);
    const rest = await s.api('GET', `/api/v1/users?limit=2&after=${page.body.next}`);
    assert.deepEqual(rest.body.users.map((u: any) => u.name), ['carol']);
  });

  it('re-enrolment returns an otpauth URI and an SVG QR code once', async () => {
    const r = await s.api('POST', '/api/v1/users/carol/otp', { type: 'hotp', digits: 8, algorithm: 'SHA256' });
    assert.equal(r.status, 200);
    assert.match(r.body.uri, /^otpauth:\/\/hotp\/Countersign:carol\?/);
    assert.match(r.body.qrSvg, /^<svg/);
    assert.match(r.body.qrPng, /^data:image\/png;base64,iVBOR/);
    assert.deepEqual(r.body.params, { type: 'hotp', algorithm: 'SHA256', digits: 8, period: 30 });
  });

  it('denies a wrong password without saying whether the user exists', async () => {
    const wrong = await s.api('POST', '/api/v1/challenges', { user: 'alice', password: 'nope' });
    const ghost = await s.api('POST', '/api/v1/challenges', { user: 'ghost', password: 'nope' });
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.body, ghost.body);
  });

  it('a user with no factor gets a clear answer, not a login', async () => {
    await s.api('POST', '/api/v1/users', { name: 'dave', password: 'pw-dave' });
    const r = await s.api('POST', '/api/v1/challenges', { user: 'dave', password: 'pw-dave' });
    assert.equal(r.status, 422);
    assert.equal(r.body.error, 'no_second_factor');
  });

  it('approves with a TOTP code from oathtool once, refuses it again, and audits the login', async (t) => {
    if (!requirePeer(t, hasOathtool, 'oathtool')) return;
    const enrol = await s.api('POST', '/api/v1/users/alice/otp', {});
    const secret = enrol.body.secret as string;
    const open = await s.api('POST', '/api/v1/challenges', {
      user: 'alice',
      password: 'correct horse',
      origin: { client: 'intranet', userAgent: 'test' },
    });
    assert.equal(open.status, 201);
    assert.match(open.body.displayCode, /^\d{4}$/);
    assert.equal(open.body.secondsLeft, 150);
    const code = oathTotp(secret);
    const ok = await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.state, 'approved');
    assert.equal(ok.body.method, 'otp');

    const second = await s.api('POST', '/api/v1/challenges', { user: 'alice', password: 'correct horse' });
    const replay = await s.api('POST', `/api/v1/challenges/${second.body.id}/otp`, { code });
    assert.equal(replay.status, 401);
    assert.equal(replay.body.error, 'otp_replayed');
    assert.equal((await s.api('GET', `/api/v1/challenges/${second.body.id}`)).body.state, 'pending', 'a wrong code leaves it pending');
    const decided = await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code: '000000' });
    assert.equal(decided.status, 409);
    assert.equal(decided.body.error, 'challenge_approved');

    await new Promise((r) => setTimeout(r, 20));
    const audit = await s.api('GET', '/api/v1/audit?user=alice&outcome=approved');
    const event = audit.body.events.find((e: any) => e.challengeId === open.body.id);
    assert.equal(event.type, 'login');
    assert.equal(event.front, 'api');
    assert.equal(event.client, 'intranet');
    assert.equal(event.method, 'otp');
    assert.equal(typeof event.durationMs, 'number');
    assert.ok(event.ip);
  });

  it('locks OTP after ten wrong codes, rejects the login, and unlocks by admin', async () => {
    // bob has push on but no device: push cannot be offered, and he has nothing else
    const bob = await s.api('POST', '/api/v1/challenges', { user: 'bob' });
    assert.equal(bob.status, 403);
    assert.equal(bob.body.error, 'no_device');
    await s.api('POST', '/api/v1/users/alice/unlock'); // the replay above counted as a failure
    const c = await s.api('POST', '/api/v1/challenges', { user: 'alice' });
    let last;
    for (let i = 0; i < 10; i++) last = await s.api('POST', `/api/v1/challenges/${c.body.id}/otp`, { code: '000000' });
    assert.equal(last!.status, 423);
    assert.equal(last!.body.error, 'otp_locked');
    assert.equal((await s.api('GET', `/api/v1/challenges/${c.body.id}`)).body.state, 'rejected');
    const verify = await s.api('POST', '/api/v1/otp/verify', { user: 'alice', code: '000000' });
    assert.equal(verify.status, 423, 'still locked');
    assert.ok((await s.api('GET', '/api/v1/users/alice')).body.otp.lockedUntil);
    const unlocked = await s.api('POST', '/api/v1/users/alice/unlock');
    assert.equal(unlocked.body.otp.lockedUntil, undefined);
    assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'alice', code: '000000' })).status, 401);
  });

  it('long-polls a challenge and wakes the moment it is decided', async () => {
    const open = await s.api('POST', '/api/v1/challenges', { user: 'carol' });
    const started = Date.now();
    const waiting = s.api('GET', `/api/v1/challenges/${open.body.id}/wait?timeout=20`);
    await new Promise((r) => setTimeout(r, 100));
    await s.api('POST', `/api/v1/challenges/${open.body.id}/reject`, { reason: 'help desk' });
    const r = await waiting;
    assert.equal(r.body.state, 'rejected');
    assert.ok(Date.now() - started < 2000);
    const short = await s.api('POST', '/api/v1/challenges', { user: 'carol' });
    const timedOut = await s.api('GET', `/api/v1/challenges/${short.body.id}/wait?timeout=0.2`);
    assert.equal(timedOut.body.state, 'pending');
  });
});

describe('admin API across two instances on one Redis', () => {
  let a: TestServer;
  let b: TestServer;
  let up = false;
  before(async () => {
    up = await redisAvailable();
    if (!up) return;
    [a, b] = await startPairOnRedis(testRedisUrl(), uniquePrefix('api'));
  });
  after(async () => {
    await a?.close();
    await b?.close();
  });

  it('a login opened on A is approved through B and released on A at once', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    await a.api('POST', '/api/v1/users', { name: 'erin', password: 'pw-erin' });
    await a.api('POST', '/api/v1/users/factors', { users: ['erin'], factor: 'otp', enabled: true });
    const open = await a.api('POST', '/api/v1/challenges', { user: 'erin', password: 'pw-erin' });
    const waiting = a.api('GET', `/api/v1/challenges/${open.body.id}/wait?timeout=20`);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const approved = await b.api('POST', `/api/v1/challenges/${open.body.id}/approve`, {});
    assert.equal(approved.body.state, 'approved');
    assert.equal((await waiting).body.state, 'approved');
    assert.ok(Date.now() - started < 1000);
  });

  it('an approval on A racing a rejection on B: one wins, the other gets 409, one audit entry', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    await a.api('POST', '/api/v1/users', { name: 'ivan' });
    await a.api('POST', '/api/v1/users/factors', { users: ['ivan'], factor: 'otp', enabled: true });
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const open = await a.api('POST', '/api/v1/challenges', { user: 'ivan' });
      const [x, y] = await Promise.all([
        a.api('POST', `/api/v1/challenges/${open.body.id}/approve`, {}),
        b.api('POST', `/api/v1/challenges/${open.body.id}/reject`, {}),
      ]);
      assert.deepEqual([x.status, y.status].sort(), [200, 409], `${x.status} ${JSON.stringify(x.body)} / ${y.status} ${JSON.stringify(y.body)}`);
      const [won, lost] = x.status === 200 ? [x, y] : [y, x];
      assert.equal(lost.body.error, `challenge_${won.body.state}`, 'the loser is told what the winner decided');
      outcomes.set(won.body.state, (outcomes.get(won.body.state) ?? 0) + 1);
      const audit = await a.api('GET', `/api/v1/audit?user=ivan&limit=200`);
      const decisions = audit.body.events.filter((e: { type: string; challengeId?: string }) => e.type === 'admin' && e.challengeId === open.body.id);
      assert.equal(decisions.length, 1, JSON.stringify(decisions));
    }
    t.diagnostic(`winners: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  });

  it('an OTP accepted on A is refused on B', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    if (!requirePeer(t, hasOathtool, 'oathtool')) return;
    await a.api('POST', '/api/v1/users', { name: 'frank', password: 'pw-frank' });
    const enrol = await a.api('POST', '/api/v1/users/frank/otp', {});
    const code = oathTotp(enrol.body.secret);
    const [r1, r2] = await Promise.all([
      a.api('POST', '/api/v1/otp/verify', { user: 'frank', code }),
      b.api('POST', '/api/v1/otp/verify', { user: 'frank', code }),
    ]);
    assert.deepEqual([r1.status, r2.status].sort(), [200, 401]);
  });

  it('a pending wait is answered, not dropped, when the instance shuts down', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    const c = await startTestServer({ COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: uniquePrefix('stop') });
    await c.api('POST', '/api/v1/users', { name: 'gina' });
    await c.api('POST', '/api/v1/users/factors', { users: ['gina'], factor: 'otp', enabled: true });
    const open = await c.api('POST', '/api/v1/challenges', { user: 'gina' });
    const waiting = c.api('GET', `/api/v1/challenges/${open.body.id}/wait?timeout=20`);
    await new Promise((r) => setTimeout(r, 100));
    await c.close();
    const r = await waiting;
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'shutting_down');
  });
});

describe('with Redis unreachable', () => {
  it('says not ready and denies, never approves', async () => {
    const s = await startTestServer({ COUNTERSIGN_REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      const ready = await s.api('GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'not ready');
      const open = await s.api('POST', '/api/v1/challenges', { user: 'alice', password: 'x' });
      assert.equal(open.status, 503);
      assert.equal(open.body.error, 'store_unavailable');
      const verify = await s.api('POST', '/api/v1/otp/verify', { user: 'alice', code: '123456' });
      assert.equal(verify.status, 503);
    } finally {
      await s.close();
    }
  });
});
