import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis/index.js';
import { StoreUnavailableError } from '../../src/core/errors.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { challengeAt, storeContract } from './contract.js';

const up = await redisAvailable();
const opts = (prefix: string) => ({ url: testRedisUrl(), prefix, auditLimit: 1000, commandTimeoutMs: 2000 });
const contractPrefixes: string[] = [];

if (up) {
  storeContract('redis', async (limits) => {
    const prefix = uniquePrefix('contract');
    contractPrefixes.push(prefix);
    return new RedisStore({ ...opts(prefix), ...limits });
  });
  // The contract's audit streams keep no TTL: leave nothing behind.
  after(async () => {
    const raw = new Redis(testRedisUrl());
    for (const p of contractPrefixes) {
      const keys = await raw.keys(`${p}:*`);
      if (keys.length) await raw.del(...keys);
    }
    raw.disconnect();
  });
}

it('redis store is reachable for the contract suite', async (t) => {
  requirePeer(t, up, `redis-server at ${testRedisUrl()}`);
});

it('redis keys carry hash tags and TTLs, so nothing leaks and Cluster works', async (t) => {
  if (!requirePeer(t, up, 'redis-server')) return;
  const prefix = uniquePrefix('keys');
  const store = new RedisStore(opts(prefix));
  const raw = new Redis(testRedisUrl());
  try {
    const now = Date.now();
    const c = challengeAt('ttl-check-0000000000', { createdAt: now, deadline: now + 150_000 });
    await store.challenges.create(c, 60_000);
    const key = `${prefix}:ch:{${c.id}}`;
    const ttl = await raw.pttl(key);
    assert.ok(ttl > 200_000 && ttl <= 210_000, `pending TTL covers the deadline plus keepAfter (${ttl})`);
    await store.challenges.transition(c.id, 'approved', now + 1, { method: 'otp' }, 5_000);
    const after = await raw.pttl(key);
    assert.ok(after > 0 && after <= 5_000, `resolved TTL is keepAfter (${after})`);
    await store.guards.claimOnce('n1', 10_000);
    await store.guards.hit('h1', 10_000);
    const keys = await raw.keys(`${prefix}:*`);
    for (const k of keys) {
      assert.match(k, /\{[^}]+\}/, `${k} has a hash tag`);
      if (!k.endsWith(':{users}') && !k.endsWith(':{audit}') && !k.endsWith(':{audit-activity}') && !/:\{due-\d+\}$/.test(k)) {
        assert.ok((await raw.pttl(k)) > 0, `${k} expires`);
      }
    }
    // The memory per pending challenge stays small.
    const bytes = await raw.call('MEMORY', 'USAGE', key);
    assert.ok(Number(bytes) < 1024, `challenge uses ${bytes} bytes`);
  } finally {
    const keys = await raw.keys(`${prefix}:*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  }
});

it('the deadline index is spread over shards with their own hash tags, and still answers the earliest first', async (t) => {
  if (!requirePeer(t, await redisAvailable(), 'redis-server')) return;
  const prefix = uniquePrefix('due');
  const store = new RedisStore({ url: testRedisUrl(), prefix, auditLimit: 100, commandTimeoutMs: 2000 });
  const raw = new Redis(testRedisUrl());
  try {
    const now = Date.now();
    // 64 challenges whose deadlines are a shuffled 1..64 s ago.
    const offsets = Array.from({ length: 64 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    await Promise.all(offsets.map((o, i) => store.challenges.create(challengeAt(`due-${String(i).padStart(2, '0')}-00000000000`, { createdAt: now - 200_000, deadline: now - o * 1000 }), 60_000)));
    const shards = await raw.keys(`${prefix}:{due-*}`);
    assert.ok(shards.length >= 8, `spread over ${shards.length} shards`);
    const tags = new Set(shards.map((k) => /\{([^}]+)\}/.exec(k)![1]));
    assert.equal(tags.size, shards.length, 'each shard under its own hash tag');
    assert.equal(await store.challenges.countPending(), 64);
    const first = await store.challenges.due(now, 10);
    const expected = offsets.map((o, i) => [o, `due-${String(i).padStart(2, '0')}-00000000000`] as const).sort((a, b) => b[0] - a[0]).slice(0, 10).map(([, id]) => id);
    assert.deepEqual(first, expected, 'the ten earliest deadlines, earliest first');
    await store.challenges.forgetDue(first);
    assert.equal(await store.challenges.countPending(), 54);
    assert.deepEqual(await store.challenges.due(now - 54_500, 100), [], 'the forgotten ones are gone from every shard');
    assert.equal((await store.challenges.due(now, 100)).length, 54);
  } finally {
    const keys = await raw.keys(`${prefix}:*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  }
});

it('the one audit stream of earlier versions is read as the security stream after an upgrade', async (t) => {
  if (!requirePeer(t, up, 'redis-server')) return;
  const prefix = uniquePrefix('upgrade');
  const raw = new Redis(testRedisUrl());
  // What an earlier version left: every type in <prefix>:{audit}.
  await raw.xadd(`${prefix}:{audit}`, '*', 'e', JSON.stringify({ at: 1, type: 'login', user: 'old', outcome: 'approved' }));
  await raw.xadd(`${prefix}:{audit}`, '*', 'e', JSON.stringify({ at: 2, type: 'radius', user: 'old', outcome: 'reject' }));
  const store = new RedisStore({ ...opts(prefix), auditLimit: 100, auditActivityLimit: 100 });
  try {
    await store.audit.append({ at: 3, type: 'radius', user: 'old', outcome: 'accept' });
    assert.deepEqual((await store.audit.query({ user: 'old', limit: 10 })).map((e) => e.at), [3, 2, 1], 'old and new, merged');
    assert.deepEqual((await store.audit.query({ user: 'old', stream: 'security', limit: 10 })).map((e) => e.at), [2, 1], 'the old events where they were');
    assert.equal(await raw.xlen(`${prefix}:{audit-activity}`), 1, 'new activity goes to its own stream');
  } finally {
    const keys = await raw.keys(`${prefix}:*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  }
});

it('an unreachable redis fails with StoreUnavailableError, never an answer', async () => {
  const store = new RedisStore({ url: 'redis://127.0.0.1:1', prefix: 'x', auditLimit: 100, commandTimeoutMs: 300 });
  await assert.rejects(store.ping(), StoreUnavailableError);
  await assert.rejects(store.challenges.transition('abc', 'approved', Date.now(), {}, 1000), StoreUnavailableError);
  await assert.rejects(store.users.advanceOtp('alice', 1), StoreUnavailableError);
  await store.close();
});
