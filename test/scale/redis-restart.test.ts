/**
 * Redis dies with logins pending and comes back empty (no persistence):
 * nothing may be approved — the waiting long-poll and the held RADIUS request
 * end denied or with an error, an approval during the outage gets 503 —
 * /readyz says 503 while Redis is away and 200 within seconds of its return,
 * and a new login works afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { haveRedisBinaries, startRedisServer, type RedisServer } from '../helpers/cluster.js';
import { requirePeer, uniquePrefix } from '../helpers/peers.js';
import { startInstances, type Group, type Instance } from '../helpers/processes.js';
import { eventually, pendingOn, pushUser } from '../helpers/scale.js';
import { accessRequest, Nas } from './nas.js';

const SECRET = 'restart-radius-secret';
const available = haveRedisBinaries();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The /readyz status, 0 when it does not answer within 5 s. */
const readyz = async (i: Instance) =>
  fetch(`${i.url}/readyz`, { signal: AbortSignal.timeout(5000) }).then(
    (r) => r.status,
    () => 0,
  );

/** A signed answer posted by hand, to see the HTTP status the phone gets. */
async function answerStatus(phone: Authenticator, server: string, cid: string): Promise<{ status: number; body: any }> {
  const request = await phone.sign('answer', { cid, decision: 'approve' });
  const res = await fetch(`${server}/device/v1/answer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ request }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

describe('Redis restarts with logins pending', () => {
  let redis: RedisServer | undefined;
  let group: Group | undefined;
  let nas: Nas | undefined;
  before(async () => {
    if (!available) return;
    redis = await startRedisServer();
    group = await startInstances(2, {
      redisUrl: redis.url,
      prefix: uniquePrefix('restart'),
      config: {
        radius: { clients: [{ name: 'nas', address: '127.0.0.1/32', secret: SECRET, mode: 'push-wait' }] },
        challenge: { deadlineSeconds: 8 },
      },
    });
    nas = await Nas.open(SECRET);
  });
  after(async () => {
    await nas?.close();
    await group?.stop();
    await redis?.stop();
  });

  it('approves nothing, says not ready while Redis is away, recovers, and serves a new login', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const [A, B] = group!.instances as [Instance, Instance];

    // Pending: an API login long-polled on A (bob), and a RADIUS push-wait request held by B (dave).
    const bob = await pushUser(A, 'bob', 'bob-pw-2024');
    const dave = await pushUser(A, 'dave', 'dave-pw-2024');
    const opened = await A.api('POST', '/api/v1/challenges', { user: 'bob' });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    const cid: string = opened.body.id;
    const poll = A.api('GET', `/api/v1/challenges/${cid}/wait?timeout=30`);
    // And one whose deadline falls after Redis is back (empty), long-polled on B.
    assert.equal((await A.api('POST', '/api/v1/users', { name: 'erin' })).status, 201);
    assert.equal((await A.api('POST', '/api/v1/users/erin/otp', {})).status, 200);
    const late = await A.api('POST', '/api/v1/challenges', { user: 'erin', deadlineSeconds: 16 });
    assert.equal(late.status, 201, JSON.stringify(late.body));
    const lateOpened = Date.now();
    const latePoll = B.api('GET', `/api/v1/challenges/${late.body.id}/wait?timeout=40`).then((r) => ({ ...r, after: Date.now() - lateOpened }));
    const request = accessRequest(SECRET, 9, [['User-Name', 'dave'], ['User-Password', 'dave-pw-2024']]);
    await nas!.send(request, B.radiusPort);
    const [davesLogin] = await eventually('dave\'s push', () => pendingOn(dave));
    await eventually('bob\'s push', () => pendingOn(bob));
    await sleep(200);

    // Redis dies, and its data with it.
    await redis!.kill();
    const downAt = Date.now();
    await eventually('A and B say not ready', async () => (await readyz(A)) === 503 && (await readyz(B)) === 503, 8000);
    const notReadyAfter = Date.now() - downAt;

    // Approvals during the outage: the admin API and the phone both get 503.
    const adminApprove = await B.api('POST', `/api/v1/challenges/${cid}/approve`, {});
    assert.equal(adminApprove.status, 503, JSON.stringify(adminApprove.body));
    assert.equal(adminApprove.body.error, 'store_unavailable');
    const phoneApprove = await answerStatus(bob, B.url, cid);
    assert.equal(phoneApprove.status, 503, JSON.stringify(phoneApprove.body));
    const daveApprove = await answerStatus(dave, A.url, davesLogin!.challengeId);
    assert.equal(daveApprove.status, 503, JSON.stringify(daveApprove.body));
    assert.equal(await readyz(A), 503);

    // Redis returns, empty.
    await redis!.restart();
    const upAt = Date.now();
    // Each instance is probed on its own: reconnect backoff (ioredis: at most 2 s) plus a ping.
    const [readyA, readyB] = await Promise.all(
      [A, B].map(async (i) => {
        await eventually(`${i.name} ready again`, async () => (await readyz(i)) === 200, 15_000);
        return Date.now() - upAt;
      }),
    );
    const readyAfter = Math.max(readyA!, readyB!);
    assert.ok(readyAfter < 4000, `ready ${readyA} ms (A) and ${readyB} ms (B) after Redis returned`);

    // The logins that were pending end without an approval.
    const polled = await poll;
    assert.ok(
      polled.status !== 200 || polled.body.state !== 'approved',
      `the long-poll must not report an approval: ${polled.status} ${JSON.stringify(polled.body)}`,
    );
    const reply = await nas!.reply(request, 15_000);
    assert.notEqual(reply?.code, 'Access-Accept', 'the held RADIUS request is never accepted');
    assert.equal(reply?.code, 'Access-Reject', 'the held RADIUS request is answered, with a reject');
    assert.match(String(reply.attributes['Reply-Message']), /unavailable|lost/, 'and words the user can act on');
    assert.equal((await A.api('GET', `/api/v1/challenges/${cid}`)).status, 404, 'the old login is gone with the data');
    assert.equal(nas!.repliesTo(9).length, 0);
    t.diagnostic(`not ready ${notReadyAfter} ms after Redis died; ready ${readyA} ms (A) and ${readyB} ms (B) after it returned`);
    t.diagnostic(`long-poll ended ${polled.status} ${polled.body.state ?? polled.body.error}; RADIUS: ${reply?.code} "${reply?.attributes['Reply-Message'] ?? ''}"`);

    // A new login works: the users are gone too, so they are set up again.
    const bob2 = await pushUser(A, 'bob', 'bob-pw-2024');
    const fresh = await A.api('POST', '/api/v1/challenges', { user: 'bob' });
    assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
    const freshPoll = A.api('GET', `/api/v1/challenges/${fresh.body.id}/wait?timeout=20`);
    const onB = new Authenticator({ ...bob2.file, server: B.url });
    const [p] = await eventually('the new push on B', () => pendingOn(onB));
    assert.equal(p!.challengeId, fresh.body.id);
    await sleep(100);
    const approvedAt = Date.now();
    assert.equal((await onB.answer(p!.challengeId, 'approve')).state, 'approved');
    const done = await freshPoll;
    assert.equal(done.body.state, 'approved');
    assert.ok(Date.now() - approvedAt < 1000, 'A heard the approval through B at once: its subscription is back');

    const dave2 = await pushUser(B, 'dave', 'dave-pw-2024');
    const second = accessRequest(SECRET, 10, [['User-Name', 'dave'], ['User-Password', 'dave-pw-2024']]);
    await nas!.send(second, A.radiusPort);
    const [q] = await eventually('dave\'s new push', () => pendingOn(new Authenticator({ ...dave2.file, server: A.url })));
    await new Authenticator({ ...dave2.file, server: A.url }).answer(q!.challengeId, 'approve');
    assert.equal((await nas!.reply(second, 5000))?.code, 'Access-Accept');

    // The login Redis forgot while its waiter held on: B re-reads its waiters when its subscription
    // is back, finds it gone, and ends it then, as not found: not approved, and not at its deadline.
    const lateEnd = await latePoll;
    assert.ok(lateEnd.status !== 200 || lateEnd.body.state !== 'approved', `${lateEnd.status} ${JSON.stringify(lateEnd.body)}`);
    assert.equal(lateEnd.status, 404, `the login Redis forgot ends as not found: ${lateEnd.status} ${JSON.stringify(lateEnd.body)}`);
    assert.equal(lateEnd.body.error, 'challenge_not_found');
    assert.ok(lateEnd.after < 14_000, `it ended when Redis came back (${lateEnd.after} ms after it opened), well before its 16 s deadline`);
    t.diagnostic(`the login Redis forgot ended ${lateEnd.status} ${lateEnd.body.error ?? ''} ${lateEnd.after} ms after it opened (deadline 16000 ms)`);
  });
});
