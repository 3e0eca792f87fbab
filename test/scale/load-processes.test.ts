/**
 * Bounded load through real processes: 10,000 users (seeded into the store),
 * each with one login
 * pending at the same time across two Countersign instances on one Redis,
 * each login long-polled over HTTP (half on the instance that did not open
 * it). A third are approved and a third rejected with both instances racing
 * to decide each one; a third run out their deadline. Every login must be
 * resolved exactly once, as asked: checked from the long-polls, from the
 * racing decisions (one 200 and one 409 each), and from both instances'
 * metrics, whose totals must add up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis/index.js';
import { dropPrefix } from '../helpers/scale.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { startInstances, type Group, type Instance } from '../helpers/processes.js';

const N = Number(process.env.SCALE_PROCESS_LOAD_N ?? 10_000);
/** The deadline of the third left to expire; they are opened last, so all N are pending together. */
const SHORT_S = 25;
const up = await redisAvailable();
type Want = 'approved' | 'rejected' | 'expired';
const want = (i: number): Want => (['approved', 'rejected', 'expired'] as const)[i % 3]!;

/** Runs `f` over `items` with at most `limit` in flight. */
async function pool<T, R>(items: T[], limit: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]!, i);
      }
    }),
  );
  return out;
}

describe(`${N} logins pending at once across two Countersign processes`, () => {
  const prefix = uniquePrefix('pload');
  let group: Group | undefined;
  let A: Instance;
  let B: Instance;
  const call = async (inst: Instance, method: string, path: string, body?: unknown) => {
    // Node's fetch opens as many connections per server as there are requests in flight.
    const res = await fetch(`${inst.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${group!.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    }).catch((err: Error) => {
      throw new Error(`${method} ${inst.name}${path}: ${err.message} (${String((err.cause as Error | undefined)?.message ?? err.cause)})`);
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  /** Sum of one counter's samples with these labels, over both instances. */
  const counter = async (name: string, labels: Record<string, string>) => {
    let sum = 0;
    for (const inst of [A, B]) {
      const text = (await inst.api<string>('GET', '/metrics')).body;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`)) continue;
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return sum;
  };

  before(async () => {
    if (!up) return;
    group = await startInstances(2, { redisUrl: testRedisUrl(), prefix, config: { challenge: { deadlineSeconds: 60 } } });
    [A, B] = group.instances as [Instance, Instance];
  });
  after(async () => {
    await group?.stop();
    if (!up) return;
    const raw = new Redis(testRedisUrl());
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  it('resolves each exactly once, as asked, and the instances\' totals add up', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const t0 = Date.now();
    const names = Array.from({ length: N }, (_, i) => `load${String(i).padStart(5, '0')}`);
    // The directory is seeded straight into the shared store (the subject is the logins, not user
    // creation); OTP is then enrolled for all of them through the API in one bulk call.
    const store = new RedisStore({ url: testRedisUrl(), prefix, auditLimit: 1000, commandTimeoutMs: 10_000 });
    try {
      const created = await pool(names, 256, (name) => store.users.create({ name, createdAt: Date.now(), otpEnabled: false, pushEnabled: false }));
      assert.ok(created.every(Boolean), 'every user created');
    } finally {
      await store.close();
    }
    assert.equal((await call(B, 'GET', `/api/v1/users/${names[N - 1]}`)).status, 200, 'the instances see them');
    const otp = await call(A, 'POST', '/api/v1/users/factors', { users: names, factor: 'otp', enabled: true });
    assert.equal(otp.status, 200, JSON.stringify(otp.body).slice(0, 300));
    assert.equal(otp.body.succeeded, N);
    const setupMs = Date.now() - t0;

    // Open one login per user, alternating instances; a third with a short deadline.
    const openedAt = Date.now();
    const order = [...names.keys()].sort((i, j) => Number(want(i) === 'expired') - Number(want(j) === 'expired'));
    const opened: { status: number; body: any }[] = new Array(N);
    await pool(order, 128, async (i) => {
      opened[i] = await call(i % 2 ? A : B, 'POST', '/api/v1/challenges', { user: names[i], ...(want(i) === 'expired' ? { deadlineSeconds: SHORT_S } : {}) });
    });
    const openMs = Date.now() - openedAt;
    t.diagnostic(`setup ${Date.now() - t0 - openMs} ms; opened ${N} in ${openMs} ms`);
    opened.forEach((r, i) => assert.equal(r.status, 201, `login ${i}: ${JSON.stringify(r.body)}`));
    const ids = opened.map((r) => r.body.id as string);
    assert.equal(new Set(ids).size, N);

    // All N long-polled at once; every second pair on the instance that did not open it.
    const polls = ids.map((id, i) => call((i >> 1) % 2 ? A : B, 'GET', `/api/v1/challenges/${id}/wait?timeout=60`));
    for (const p of polls) p.catch(() => {}); // awaited below; a failed assertion before must not leave them unhandled
    const parked = async () => (await Promise.all([A, B].map((inst) => inst.metric('countersign_waiting_requests')))).reduce((a, b) => a + b, 0);
    let waiting = 0;
    for (let i = 0; i < 300 && (waiting = await parked()) < N; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(waiting, N, 'all N long-polls parked across the instances at the same time');
    // (a long-poll parks only on a pending login, so N parked means N pending; the deadline index agrees)
    const index = new RedisStore({ url: testRedisUrl(), prefix, auditLimit: 1000, commandTimeoutMs: 10_000 });
    try {
      assert.equal(await index.challenges.countPending(), N, 'all N pending at once in the deadline index');
    } finally {
      await index.close();
    }
    t.diagnostic(`${N} pending and long-polled at once, ${Date.now() - openedAt} ms after the first opened`);
    const live = (await call(A, 'GET', '/api/v1/challenges?limit=500')).body.challenges as { id: string }[];
    assert.ok(live.length > 0 && live.every((c) => ids.includes(c.id)), 'the live view lists pending logins');

    // Decide two thirds, each one by both instances at once: exactly one wins.
    const decidedAt = Date.now();
    const decisions = await pool(
      ids.map((id, i) => ({ id, i })).filter(({ i }) => want(i) !== 'expired'),
      128,
      async ({ id, i }) => {
        const action = want(i) === 'approved' ? 'approve' : 'reject';
        const [x, y] = await Promise.all([call(A, 'POST', `/api/v1/challenges/${id}/${action}`, {}), call(B, 'POST', `/api/v1/challenges/${id}/${action}`, {})]);
        return [x.status, y.status].sort().join('+');
      },
    );
    const decideMs = Date.now() - decidedAt;
    const pairs = new Map<string, number>();
    for (const d of decisions) pairs.set(d, (pairs.get(d) ?? 0) + 1);
    assert.deepEqual([...pairs], [['200+409', decisions.length]], 'each decision won by exactly one instance');

    // Every long-poll ends with what was asked; the short ones at their deadline.
    const finals = await Promise.all(polls);
    const settledMs = Date.now() - decidedAt;
    finals.forEach((r, i) => {
      assert.equal(r.status, 200, `poll ${i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.id, ids[i]);
      assert.equal(r.body.state, want(i), `login ${i}`);
    });

    // The instances' own counts: N opened, N resolved, split as asked, none twice.
    const third = { approved: Math.ceil(N / 3), rejected: Math.ceil((N - 1) / 3), expired: Math.floor(N / 3) };
    assert.equal(await counter('countersign_challenges_opened_total', { front: 'api' }), N);
    let totals: Record<Want, number> = { approved: 0, rejected: 0, expired: 0 };
    for (let i = 0; i < 50; i++) {
      totals = {
        approved: await counter('countersign_challenges_resolved_total', { front: 'api', outcome: 'approved' }),
        rejected: await counter('countersign_challenges_resolved_total', { front: 'api', outcome: 'rejected' }),
        expired: await counter('countersign_challenges_resolved_total', { front: 'api', outcome: 'expired' }),
      };
      if (totals.approved + totals.rejected + totals.expired >= N) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(totals, third);
    assert.equal(await parked(), 0, 'no long-poll left parked');
    assert.equal((await call(B, 'GET', '/api/v1/challenges?limit=10')).body.challenges.length, 0, 'nothing left pending');
    // A late answer changes nothing.
    const late = await call(B, 'POST', `/api/v1/challenges/${ids[2]}/approve`, {});
    assert.equal(late.status, 409);
    assert.equal((await call(A, 'GET', `/api/v1/challenges/${ids[2]}`)).body.state, 'expired');

    t.diagnostic(
      `setup ${setupMs} ms; opened ${N} in ${openMs} ms (${((N / openMs) * 1000).toFixed(0)}/s); ` +
        `${decisions.length} raced decisions in ${decideMs} ms; all settled ${settledMs} ms after the first decision`,
    );
  });
});
