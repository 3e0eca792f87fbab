/**
 * Bounded load: 10,000 concurrent pending challenges across two engines on
 * one Redis (in-process engines with their own connections, as two
 * instances would have), each resolved exactly once — a third approved, a
 * third rejected (both instances racing to do it), a third by their short
 * deadline — with the totals checked across instances.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Challenge, Outcome } from '../../src/core/challenge.js';
import { systemClock } from '../../src/core/clock.js';
import { ChallengeEngine } from '../../src/core/engine.js';
import { RedisStore } from '../../src/store/redis/index.js';
import { dropPrefix } from '../helpers/scale.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';

const N = Number(process.env.SCALE_LOAD_N ?? 10_000);
const SHORT_MS = 5000;
const LONG_MS = 120_000;
const up = await redisAvailable();

interface Instance {
  name: string;
  store: RedisStore;
  engine: ChallengeEngine;
  resolved: Challenge[];
}

describe(`${N} concurrent challenges on two engines sharing one Redis`, () => {
  const prefix = uniquePrefix('load');
  let a: Instance;
  let b: Instance;
  let raw: Redis;
  const make = (name: string): Instance => {
    const store = new RedisStore({ url: testRedisUrl(), prefix, auditLimit: 1000, commandTimeoutMs: 10_000 });
    const engine = new ChallengeEngine({ store, clock: systemClock, deadlineMs: LONG_MS, keepAfterMs: 60_000, displayCodeDigits: 4, sweepIntervalMs: 500 });
    const inst: Instance = { name, store, engine, resolved: [] };
    engine.on('resolved', (c) => inst.resolved.push(c));
    return inst;
  };
  before(async () => {
    if (!up) return;
    raw = new Redis(testRedisUrl());
    a = make('A');
    b = make('B');
    await a.engine.start();
    await b.engine.start();
  });
  after(async () => {
    if (!up) return;
    await a.engine.stop();
    await b.engine.stop();
    await a.store.close();
    await b.store.close();
    // Resolved challenges expire by themselves; the indexes and leftovers are removed here.
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  it('resolves each exactly once: approved, rejected or expired as asked', async (t) => {
    if (!requirePeer(t, up, `redis-server at ${testRedisUrl()}`)) return;
    const started = Date.now();
    const origin = { front: 'api', client: 'load', ip: '127.0.0.1' };
    const want = (i: number): Outcome => (['approved', 'rejected', 'expired'] as const)[i % 3]!;
    const usedBefore = Number(/used_memory:(\d+)/.exec(await raw.info('memory'))![1]);

    // Open all N, alternating instances, in batches that keep the pipeline full.
    const ids: string[] = new Array(N);
    const BATCH = 1000;
    for (let i = 0; i < N; i += BATCH) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => {
          const j = i + k;
          return (j % 2 ? a : b).engine.open(`user${j % 500}`, ['push'], origin, { deadlineMs: want(j) === 'expired' ? SHORT_MS : LONG_MS });
        }),
      );
      batch.forEach((c, k) => (ids[i + k] = c.id));
    }
    const openedIn = Date.now() - started;
    // Every challenge is waited on by one instance, half of them by the one that did not open it.
    const waits = ids.map((id, j) => ((j >> 1) % 2 ? a : b).engine.wait(id));
    assert.equal(a.engine.waiting + b.engine.waiting, N, 'every wait is held'); // before an await lets any end
    const pending = await a.store.challenges.countPending();
    // The long ones cannot have expired yet (short ones may, on a slow machine).
    assert.ok(pending >= N - Math.floor(N / 3), `${pending} pending in the deadline index`);
    const usedPerChallenge = (Number(/used_memory:(\d+)/.exec(await raw.info('memory'))![1]) - usedBefore) / N;

    // Approve and reject the long ones, both instances racing for each.
    const answered = Date.now();
    for (let i = 0; i < N; i += BATCH) {
      const work: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(N, i + BATCH); j++) {
        const w = want(j);
        if (w === 'approved') work.push(a.engine.approve(ids[j]!, 'push'), b.engine.approve(ids[j]!, 'push'));
        if (w === 'rejected') work.push(b.engine.reject(ids[j]!, 'push', 'no'), a.engine.reject(ids[j]!, 'push', 'no'));
      }
      await Promise.all(work);
    }

    // Every wait ends, with what was asked; the expired ones at their deadline.
    let timer: NodeJS.Timeout | undefined;
    const finals = await Promise.race([
      Promise.all(waits),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the waits did not all end within 30 s')), 30_000);
      }),
    ]);
    clearTimeout(timer);
    const settledIn = Date.now() - answered;
    finals.forEach((c, j) => {
      assert.equal(c.id, ids[j]);
      assert.equal(c.state, want(j), `challenge ${j}`);
      if (c.state === 'expired') assert.ok(c.resolvedAt! >= c.deadline, 'expired no earlier than its deadline');
    });

    // Exactly N 'resolved' events across both instances, one per challenge, in the asked state.
    // A waiter can hear an outcome (pub/sub) a moment before the instance that decided it has its
    // reply and emits: give the last events a moment, then a sweep interval more for any extra one.
    for (let i = 0; i < 100 && a.resolved.length + b.resolved.length < N; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    const all = [...a.resolved, ...b.resolved];
    assert.equal(all.length, N, `${a.resolved.length} on A + ${b.resolved.length} on B`);
    const byId = new Map(all.map((c) => [c.id, c]));
    assert.equal(byId.size, N, 'no challenge resolved twice');
    ids.forEach((id, j) => assert.equal(byId.get(id)?.state, want(j), `resolved event of ${j}`));
    const count = (s: Outcome) => all.filter((c) => c.state === s).length;
    assert.deepEqual(
      { approved: count('approved'), rejected: count('rejected'), expired: count('expired') },
      { approved: Math.ceil(N / 3), rejected: Math.ceil((N - 1) / 3), expired: Math.floor(N / 3) },
    );
    assert.ok(a.resolved.length > 0 && b.resolved.length > 0, 'both instances resolved some');

    // Nothing is left pending or waiting; a late answer changes nothing.
    assert.equal(a.engine.waiting + b.engine.waiting, 0);
    for (let i = 0; i < 100 && (await a.store.challenges.countPending()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await a.store.challenges.countPending(), 0, 'the deadline index drained');
    const late = await Promise.all(ids.slice(0, 300).map((id) => b.engine.approve(id, 'push')));
    assert.ok(late.every((r) => !r.changed));
    assert.equal(a.resolved.length + b.resolved.length, N);

    t.diagnostic(
      `opened ${N} in ${openedIn} ms; approvals/rejections + deadlines settled in ${settledIn} ms; ` +
        `A resolved ${a.resolved.length}, B ${b.resolved.length}; ~${usedPerChallenge.toFixed(0)} B of Redis per pending challenge`,
    );
  });
});
