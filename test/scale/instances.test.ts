/**
 * Two real Countersign processes on one Redis: a long-poll on A woken by an
 * approval through B, and RADIUS failover — the NAS retransmits its request
 * to B after A died holding it, and B joins the same login (one push only).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { q, radclient } from '../helpers/radclient.js';
import { oathTotp } from '../helpers/server.js';
import { startInstances, type Group, type Instance } from '../helpers/processes.js';
import { dropPrefix, eventually, pendingOn, pushUser } from '../helpers/scale.js';
import { accessRequest, Nas } from './nas.js';

const SECRET = 'scale-radius-secret';
const LEASE_S = 3;
const up = await redisAvailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same phone, talking to another instance (its enrolment link named the first). */
const phoneOn = (phone: Authenticator, inst: Instance) => new Authenticator({ ...phone.file, server: inst.url });

describe('two Countersign processes on one Redis', () => {
  let group: Group | undefined;
  let raw: Redis;
  let A: Instance;
  let B: Instance;
  const prefix = uniquePrefix('procs');
  before(async () => {
    if (!up) return;
    raw = new Redis(testRedisUrl());
    group = await startInstances(2, {
      redisUrl: testRedisUrl(),
      prefix,
      config: {
        radius: { clients: [{ name: 'nas', address: '127.0.0.1/32', secret: SECRET, mode: 'push-wait' }], processingLeaseSeconds: LEASE_S },
        challenge: { deadlineSeconds: 30 },
      },
    });
    [A, B] = group.instances as [Instance, Instance];
  });
  after(async () => {
    await group?.stop();
    if (raw) {
      const keys = await raw.keys(`${prefix}:*`);
      if (keys.length) await raw.del(...keys);
      raw.disconnect();
    }
  });

  it('a long-poll on A returns within a second of the approval through B', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const phone = await pushUser(A, 'alice', 'alice-pw-2024');
    const opened = await A.api('POST', '/api/v1/challenges', { user: 'alice', password: 'alice-pw-2024' });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    assert.deepEqual(opened.body.factors, ['push']);
    const started = Date.now();
    const poll = A.api('GET', `/api/v1/challenges/${opened.body.id}/wait?timeout=20`);
    // B sees the login A opened, and the phone answers through B.
    const onB = phoneOn(phone, B);
    const [p] = await eventually('the push on B', () => pendingOn(onB));
    assert.equal(p!.challengeId, opened.body.id);
    await sleep(300); // the long-poll is surely parked on A by now
    const approvedAt = Date.now();
    assert.equal((await onB.answer(p!.challengeId, 'approve')).state, 'approved');
    const r = await poll;
    const woke = Date.now() - approvedAt;
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, 'approved');
    assert.equal(r.body.method, 'push');
    assert.ok(woke < 1000, `A's long-poll answered ${woke} ms after the approval through B`);
    assert.ok(Date.now() - started < 10_000, 'did not wait out the long-poll timeout');
  });

  it('RADIUS failover: the retransmit reaches B after A died; B joins the login, one push, Access-Accept', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const phone = await pushUser(A, 'bob', 'bob-pw-2024');
    const nas = await Nas.open(SECRET);
    try {
      const request = accessRequest(SECRET, 77, [
        ['User-Name', 'bob'],
        ['User-Password', 'bob-pw-2024'],
        ['NAS-Identifier', 'scale-nas'],
      ]);
      const seenLogins = new Set<string>();
      const openedBefore = await B.metric('countersign_challenges_opened_total{front="radius"}');
      await nas.send(request, A.radiusPort);

      // The push is pending and A holds the request (its dedupe entry says so).
      const [p] = await eventually('the push on the phone', () => pendingOn(phone));
      seenLogins.add(p!.challengeId);
      await eventually('A marks the request pending in the store', async () => {
        const keys = await raw.keys(`${prefix}:kv:{radius:*}`);
        const states = await Promise.all(keys.map((k) => raw.get(k)));
        return states.some((s) => s && JSON.parse(s).s === 'pending' && JSON.parse(s).cid === p!.challengeId);
      });

      await A.kill('SIGKILL');
      assert.equal(A.alive, false);
      assert.equal(nas.repliesTo(77).length, 0, 'A answered nothing before it died');

      const dupBefore = await B.metric('countersign_radius_duplicates_total{state="pending"}');
      await nas.send(request, B.radiusPort); // the NAS retransmits, now to B
      await eventually('B takes the retransmit as a duplicate of a pending login', async () =>
        (await B.metric('countersign_radius_duplicates_total{state="pending"}')) > dupBefore,
      );

      const onB = phoneOn(phone, B);
      const pending = await onB.pending();
      assert.equal(pending.length, 1);
      for (const x of pending) seenLogins.add(x.challengeId);
      assert.equal((await onB.answer(p!.challengeId, 'approve')).state, 'approved');

      const reply = await nas.reply(request, 5000);
      assert.ok(reply, 'B answered the retransmit');
      assert.equal(reply.code, 'Access-Accept');
      assert.equal(nas.repliesTo(77).length, 0, 'one answer only');

      // Exactly one login for all of it: the phone saw one, the store holds one, B opened none.
      assert.equal(seenLogins.size, 1);
      const challengeKeys = await raw.keys(`${prefix}:ch:*`);
      const forBob = (await Promise.all(challengeKeys.map((k) => raw.hget(k, 'user')))).filter((u) => u === 'bob');
      assert.equal(forBob.length, 1, 'one challenge for bob in the store');
      assert.equal(await B.metric('countersign_challenges_opened_total{front="radius"}'), openedBefore, 'B opened no challenge of its own');
      const logins = await eventually('the login in the audit trail', async () => {
        const audit = await B.api('GET', '/api/v1/audit?user=bob&limit=50');
        const l = audit.body.events.filter((e: { type: string }) => e.type === 'login');
        return l.length ? l : null;
      });
      await sleep(200); // a second one, were there one, would have been written by now
      const again = (await B.api('GET', '/api/v1/audit?user=bob&limit=50')).body.events.filter((e: { type: string }) => e.type === 'login');
      assert.equal(again.length, 1, JSON.stringify(again));
      assert.equal(logins[0].challengeId, p!.challengeId);
      assert.equal(logins[0].outcome, 'approved');

      // A third copy is answered from B's reply cache, unchanged.
      await nas.send(request, B.radiusPort);
      const cached = await nas.reply(request, 3000);
      assert.equal(cached?.code, 'Access-Accept');
      assert.ok(cached.raw.equals(reply.raw), 'the cached reply is byte for byte the first');
    } finally {
      await nas.close();
    }
  });

  it('an instance that died before it opened the login holds the NAS up for the processing lease only', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const phone = await pushUser(B, 'dan', 'dan-pw-2024');
    const nas = await Nas.open(SECRET);
    try {
      const request = accessRequest(SECRET, 31, [['User-Name', 'dan'], ['User-Password', 'dan-pw-2024']]);
      // What a dying instance leaves behind: the request marked 'processing' (it was checking the
      // password when it died), under the key every instance derives from the NAS's packet.
      const key = createHash('sha256').update(`nas|127.0.0.1|${nas.port}|31|`).update(request.subarray(4, 20)).digest('base64url');
      const mark = `${prefix}:kv:{radius:${key}}`;
      assert.equal(await raw.set(mark, JSON.stringify({ s: 'processing' }), 'PX', LEASE_S * 1000, 'NX'), 'OK');
      const dupBefore = await B.metric('countersign_radius_duplicates_total{state="processing"}');

      // While the lease holds, B leaves the retransmit alone: the first instance might still answer.
      await nas.send(request, B.radiusPort);
      await eventually('B sees the retransmit as in progress elsewhere', async () => (await B.metric('countersign_radius_duplicates_total{state="processing"}')) > dupBefore);
      assert.equal(await nas.reply(request, 300), null);
      assert.equal((await phone.pending()).length, 0, 'no login opened yet');

      // The lease runs out (nobody renews it): the next retransmit starts the login on B, which
      // takes the same short lease itself (seen on the wire with MONITOR), then holds the login.
      await eventually('the lease runs out', async () => (await raw.exists(mark)) === 0, LEASE_S * 1000 + 2000);
      const monitor = await raw.monitor();
      const sets: string[][] = [];
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args[0]?.toUpperCase() === 'SET' && args[1] === mark) sets.push(args);
      });
      await nas.send(request, B.radiusPort);
      const [p] = await eventually('the push', () => pendingOn(phone));
      monitor.disconnect();
      const taken = sets.find((a) => a[2]!.includes('processing'));
      assert.ok(taken, `B marked the request: ${JSON.stringify(sets)}`);
      assert.equal(Number(taken[taken.findIndex((x) => x.toUpperCase() === 'PX') + 1]), LEASE_S * 1000, 'with the processing lease as its lifetime');
      assert.ok(sets.some((a) => a[2]!.includes('"pending"')), 'then marked it pending for the login\'s life');
      assert.equal((await phone.answer(p!.challengeId, 'approve')).state, 'approved');
      const reply = await nas.reply(request, 5000);
      assert.equal(reply?.code, 'Access-Accept');
    } finally {
      await nas.close();
    }
  });

  it('graceful stop (SIGTERM): C denies its long-poll, leaves the held RADIUS request to B, exits 0', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const C = await group!.start('C');
    const phone = await pushUser(C, 'carol', 'carol-pw-2024');
    assert.equal((await C.api('POST', '/api/v1/users', { name: 'erin' })).status, 201);
    assert.equal((await C.api('POST', '/api/v1/users/erin/otp', {})).status, 200);
    const nas = await Nas.open(SECRET);
    try {
      const request = accessRequest(SECRET, 5, [['User-Name', 'carol'], ['User-Password', 'carol-pw-2024']]);
      await nas.send(request, C.radiusPort);
      const [p] = await eventually('carol\'s push', () => pendingOn(phone));
      const erin = await C.api('POST', '/api/v1/challenges', { user: 'erin' });
      assert.equal(erin.status, 201);
      const poll = C.api('GET', `/api/v1/challenges/${erin.body.id}/wait?timeout=20`).catch((err: Error) => ({ status: 0, body: { error: String(err) } }));
      await eventually('C holds the RADIUS request', async () => {
        const keys = await raw.keys(`${prefix}:kv:{radius:*}`);
        const states = await Promise.all(keys.map((k) => raw.get(k)));
        return states.some((s) => s && JSON.parse(s).cid === p!.challengeId);
      });
      await sleep(200);

      const stopping = Date.now();
      await C.kill('SIGTERM');
      t.diagnostic(`C stopped in ${Date.now() - stopping} ms`);
      assert.equal(C.child.exitCode, 0, `graceful exit:\n${C.output()}`);
      const polled = await poll;
      t.diagnostic(`C's long-poll ended ${polled.status} ${JSON.stringify(polled.body).slice(0, 120)}`);
      assert.notEqual(polled.body.state, 'approved');
      assert.ok(polled.status === 503 || polled.status === 0, `the long-poll is denied: ${polled.status} ${JSON.stringify(polled.body)}`);
      assert.equal(await nas.reply(request, 300), null, 'C left the held request unanswered (the NAS will retransmit)');

      await nas.send(request, B.radiusPort);
      const onB = phoneOn(phone, B);
      const [q] = await eventually('carol\'s push on B', () => pendingOn(onB));
      assert.equal(q!.challengeId, p!.challengeId, 'the same login, no second push');
      await onB.answer(q!.challengeId, 'approve');
      assert.equal((await nas.reply(request, 5000))?.code, 'Access-Accept');
    } finally {
      await nas.close();
    }
  });
});

describe('RADIUS challenge mode across instances, with radclient as the NAS', () => {
  let group: Group | undefined;
  let raw: Redis;
  const prefix = uniquePrefix('procs-chal');
  const peers = up && hasCommand('radclient') && hasCommand('oathtool');
  before(async () => {
    if (!peers) return;
    raw = new Redis(testRedisUrl());
    group = await startInstances(2, {
      redisUrl: testRedisUrl(),
      prefix,
      config: { radius: { clients: [{ name: 'vpn', address: '127.0.0.1/32', secret: SECRET, mode: 'challenge' }] }, challenge: { deadlineSeconds: 30 } },
    });
  });
  after(async () => {
    await group?.stop();
    if (raw) {
      await dropPrefix(raw, prefix);
      raw.disconnect();
    }
  });

  it('the Access-Challenge comes from A, the answer with its State goes to B; and on after A died', async (t) => {
    if (!requirePeer(t, peers, `redis-server at ${testRedisUrl()}, radclient and oathtool`)) return;
    const [A, B] = group!.instances as [Instance, Instance];
    const phone = await pushUser(A, 'hank', 'hank-pw-2024');
    assert.equal((await A.api('POST', '/api/v1/users/factors', { users: ['hank'], factor: 'otp', enabled: true })).body.succeeded, 1);
    const secret: string = (await B.api('POST', '/api/v1/users/hank/otp', {})).body.secret;

    // Push: challenged by A, approved on the phone through B, the NAS's follow-up answered by B.
    const first = await radclient(A.radiusPort, SECRET, { 'User-Name': 'hank', 'User-Password': q('hank-pw-2024') });
    assert.equal(first.code, 'Access-Challenge', first.output);
    const [p] = await eventually('the push', () => pendingOn(phoneOn(phone, B)));
    assert.match(first.attributes['Reply-Message']!, new RegExp(`\\(ID ${p!.displayCode}\\)`), 'the prompt shows the push\'s ID');
    await phoneOn(phone, B).answer(p!.challengeId, 'approve');
    const done = await radclient(B.radiusPort, SECRET, { 'User-Name': 'hank', 'User-Password': q(''), State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept', done.output);

    // OTP: challenged by A, then A dies; the NAS sends the code with the State to B.
    const second = await radclient(A.radiusPort, SECRET, { 'User-Name': 'hank', 'User-Password': q('hank-pw-2024') });
    assert.equal(second.code, 'Access-Challenge', second.output);
    await A.kill('SIGKILL');
    const code = oathTotp(secret);
    const answered = await radclient(B.radiusPort, SECRET, { 'User-Name': 'hank', 'User-Password': q(code), State: second.attributes.State! });
    assert.equal(answered.code, 'Access-Accept', answered.output);
    // The same State again, once decided: no second accept from a replayed answer with another code.
    const replay = await radclient(B.radiusPort, SECRET, { 'User-Name': 'hank', 'User-Password': q('000000'), State: second.attributes.State! });
    assert.notEqual(replay.code, 'Access-Accept', replay.output);
  });
});
