/**
 * Countersign on a real 3-master Redis Cluster: the Store contract; two
 * engines waking each other through pub/sub published from Lua on whichever
 * node owns the challenge's slot, also across a lost subscriber connection;
 * processes configured with store.redis.cluster serving a login end to end,
 * saying not ready (promptly) while the cluster is down, and recovering.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { systemClock } from '../../src/core/clock.js';
import { StoreUnavailableError } from '../../src/core/errors.js';
import { ChallengeEngine } from '../../src/core/engine.js';
import { RedisStore } from '../../src/store/redis/index.js';
import { storeContract, type AuditLimits } from '../store/contract.js';
import { haveRedisBinaries, startRedisCluster, type RedisCluster } from '../helpers/cluster.js';
import { requirePeer, uniquePrefix } from '../helpers/peers.js';
import { freePort, startInstances, type Group, type Instance } from '../helpers/processes.js';
import { eventually } from '../helpers/scale.js';

const available = haveRedisBinaries();
let cluster: RedisCluster | undefined;
if (available) {
  cluster = await startRedisCluster(3);
  after(() => cluster?.stop());
}
const storeOn = (c: RedisCluster, prefix: string, limits?: AuditLimits) =>
  new RedisStore({ cluster: c.nodes, prefix, auditLimit: 1000, commandTimeoutMs: 2000, ...limits });

if (cluster) {
  const c = cluster;
  storeContract('redis cluster', async (limits) => storeOn(c, uniquePrefix('ccontract'), limits));
}

it('redis-server and redis-cli are available for the cluster tests', (t) => {
  requirePeer(t, available, 'redis-server and redis-cli');
});

describe('engines on a Redis Cluster', () => {
  const prefix = uniquePrefix('cengine');
  let a: { store: RedisStore; engine: ChallengeEngine };
  let b: { store: RedisStore; engine: ChallengeEngine };
  let raw: Cluster;
  const make = () => {
    const store = storeOn(cluster!, prefix);
    const engine = new ChallengeEngine({ store, clock: systemClock, deadlineMs: 30_000, keepAfterMs: 10_000, displayCodeDigits: 4, sweepIntervalMs: 1000 });
    return { store, engine };
  };
  before(async () => {
    if (!cluster) return;
    a = make();
    b = make();
    await a.engine.start();
    await b.engine.start();
    raw = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: Number(n.split(':')[1]) })));
  });
  after(async () => {
    if (!cluster) return;
    await a.engine.stop();
    await b.engine.stop();
    await a.store.close();
    await b.store.close();
    raw.disconnect();
  });

  it('opened on A, approved through B: A\'s wait wakes at once, for keys on every master', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const origin = { front: 'api', client: 'scale', ip: '127.0.0.1' };
    const owners = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const c = await a.engine.open('alice', ['push'], origin);
      const slot = Number(await raw.cluster('KEYSLOT', `${prefix}:ch:{${c.id}}`));
      const shards = (await raw.cluster('SHARDS')) as unknown[];
      owners.add(ownerOf(shards, slot));
      const woke = a.engine.wait(c.id);
      const t0 = performance.now();
      const r = i % 3 === 2 ? await b.engine.reject(c.id, 'push', 'no') : await b.engine.approve(c.id, 'push');
      assert.equal(r.changed, true);
      const done = await withTimeout(woke, 2000, `A's wait for ${c.id}`);
      assert.equal(done.state, i % 3 === 2 ? 'rejected' : 'approved');
      assert.ok(performance.now() - t0 < 1000, 'woken within a second');
    }
    assert.equal(owners.size, 3, 'challenges landed on all three masters');
  });

  it('an outcome published while the subscriber connection was down still wakes the waiter at once', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    // Regression: ioredis' Cluster re-subscribed silently, so waiters never re-read and heard at the deadline.
    const origin = { front: 'api', client: 'scale', ip: '127.0.0.1' };
    for (let round = 0; round < 3; round++) {
      const c = await a.engine.open('alice', ['push'], origin);
      const woke = a.engine.wait(c.id);
      await new Promise((r) => setTimeout(r, 50));
      // Every subscriber connection on every node is cut; the approval follows at once.
      await Promise.all(cluster!.ports.map(async (port) => {
        const node = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
        node.on('error', () => {});
        try {
          await node.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
        } finally {
          node.disconnect();
        }
      }));
      const t0 = performance.now();
      assert.equal((await b.engine.approve(c.id, 'push')).changed, true);
      const done = await withTimeout(woke, 3000, `round ${round}: A's wait (deadline 30 s)`);
      assert.equal(done.state, 'approved');
      t.diagnostic(`round ${round}: woken ${(performance.now() - t0).toFixed(0)} ms after the approval`);
    }
  });

  it('listens through the next seed node when the first one is down', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const dead = `127.0.0.1:${await freePort()}`;
    const store = new RedisStore({ cluster: [dead, ...cluster!.nodes], prefix, auditLimit: 1000, commandTimeoutMs: 2000 });
    const engine = new ChallengeEngine({ store, clock: systemClock, deadlineMs: 30_000, keepAfterMs: 10_000, displayCodeDigits: 4, sweepIntervalMs: 1000 });
    try {
      await withTimeout(engine.start(), 5000, 'subscribing with a dead first seed');
      const c = await b.engine.open('alice', ['push'], { front: 'api', client: 'scale', ip: '127.0.0.1' });
      const woke = engine.wait(c.id);
      await new Promise((r) => setTimeout(r, 50));
      await b.engine.approve(c.id, 'push');
      assert.equal((await withTimeout(woke, 2000, 'the wait')).state, 'approved');
    } finally {
      await engine.stop();
      await store.close();
    }
  });

  it('many waits on both instances, resolved crosswise, each exactly once', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const origin = { front: 'api', client: 'scale', ip: '127.0.0.1' };
    const resolved: string[] = [];
    const onA = (c: { id: string }) => resolved.push(c.id);
    a.engine.on('resolved', onA);
    b.engine.on('resolved', onA);
    try {
      const opened = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? a : b).engine.open(`u${i % 17}`, ['push'], origin)));
      const waits = opened.map((c, i) => (i % 2 ? b : a).engine.wait(c.id));
      // Both instances race to resolve every challenge; the store picks one winner.
      await Promise.all(opened.flatMap((c) => [a.engine.approve(c.id, 'push'), b.engine.reject(c.id, 'push')]));
      const finals = await withTimeout(Promise.all(waits), 5000, 'all waits');
      for (const f of finals) assert.ok(f.state === 'approved' || f.state === 'rejected');
      assert.equal(resolved.length, 300, 'one resolved event per challenge across both instances');
      assert.equal(new Set(resolved).size, 300);
    } finally {
      a.engine.off('resolved', onA);
      b.engine.off('resolved', onA);
    }
  });
});

describe('a Countersign process configured with store.redis.cluster', () => {
  let group: Group | undefined;
  before(async () => {
    if (!cluster) return;
    group = await startInstances(2, { prefix: uniquePrefix('cproc'), cluster: cluster.nodes });
  });
  after(() => group?.stop());

  it('opens on A, long-polls on A, approves on B', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const A = group!.instances[0]!;
    const B = group!.instances[1]!;
    assert.equal((await A.api('POST', '/api/v1/users', { name: 'carol' })).status, 201);
    assert.equal((await B.api('POST', '/api/v1/users/carol/otp', {})).status, 200, 'the user is visible on B');
    const opened = await A.api('POST', '/api/v1/challenges', { user: 'carol' });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    const poll = A.api('GET', `/api/v1/challenges/${opened.body.id}/wait?timeout=20`);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const approved = await B.api('POST', `/api/v1/challenges/${opened.body.id}/approve`, {});
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const r = await poll;
    assert.equal(r.body.state, 'approved');
    assert.ok(Date.now() - t0 < 1000, `woken in ${Date.now() - t0} ms`);
  });

  // Last in this file: it takes the cluster down, and brings it back.
  it('a master lost: /readyz says 503 (PING alone still answers), logins are denied; back when it returns', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const A = group!.instances[0]!;
    const B = group!.instances[1]!;
    const store = storeOn(cluster!, uniquePrefix('cdown'));
    const live = new Redis(cluster!.ports[0]!, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
    live.on('error', () => {});
    try {
      await store.ping();
      assert.equal((await A.api('GET', '/readyz')).status, 200);
      await cluster!.killNode(2);
      let state = '';
      const end = Date.now() + 15_000;
      while (Date.now() < end) {
        const info = await live.cluster('INFO').catch(() => '');
        state = /cluster_state:(\w+)/.exec(info)?.[1] ?? state;
        if (state === 'fail') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(state, 'fail', 'the surviving masters declared the cluster down');
      assert.equal(await live.ping(), 'PONG', 'a surviving node still answers PING');
      await assert.rejects(store.ping(), StoreUnavailableError);
      for (const inst of [A, B]) {
        const r = await inst.api('GET', '/readyz');
        assert.equal(r.status, 503, `${inst.name}: ${JSON.stringify(r.body)}`);
      }
      const login = await A.api('POST', '/api/v1/challenges', { user: 'carol' });
      assert.equal(login.status, 503, JSON.stringify(login.body));

      // The master returns (empty): ready again, and a login works end to end.
      await cluster!.restartNode(2);
      await cluster!.waitOk(20_000);
      const back = Date.now();
      await eventually('A and B ready again', async () => (await A.api('GET', '/readyz')).status === 200 && (await B.api('GET', '/readyz')).status === 200, 15_000);
      t.diagnostic(`ready ${Date.now() - back} ms after cluster_state:ok`);
      await loginWorks(A, B, 'frank');
    } finally {
      live.disconnect();
      await store.close();
    }
  });

  it('every node away: /readyz and logins answer 503 at once instead of hanging; back when they return', async (t) => {
    if (!requirePeer(t, available, 'redis-server and redis-cli')) return;
    const A = group!.instances[0]!;
    const B = group!.instances[1]!;
    for (let i = 0; i < 3; i++) await cluster!.killNode(i);
    await eventually('A says not ready', async () => (await A.api('GET', '/readyz')).status === 503, 10_000);
    for (const [what, call] of [
      ['readyz', () => A.api('GET', '/readyz')],
      ['a login', () => B.api('POST', '/api/v1/challenges', { user: 'frank' })],
    ] as const) {
      const t0 = Date.now();
      const r = await call();
      assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`);
      assert.ok(Date.now() - t0 < 3000, `${what} answered in ${Date.now() - t0} ms`);
    }
    // An instance started now, with no node to reach, still comes up: it serves HTTP, says not
    // ready, and denies at once rather than queueing commands until the cluster is back.
    const started = Date.now();
    const C = await group!.start('C', { untilListening: true });
    t.diagnostic(`C served HTTP ${Date.now() - started} ms after its start with the cluster down`);
    for (const [what, call] of [
      ['C readyz', () => C.api('GET', '/readyz')],
      ['a login on C', () => C.api('POST', '/api/v1/challenges', { user: 'frank' })],
    ] as const) {
      const t0 = Date.now();
      const r = await call();
      assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`);
      assert.ok(Date.now() - t0 < 3000, `${what} answered in ${Date.now() - t0} ms`);
    }
    for (let i = 0; i < 3; i++) await cluster!.restartNode(i);
    await cluster!.waitOk(30_000);
    await eventually('A, B and C ready', async () => (await Promise.all([A, B, C].map(async (i) => (await i.api('GET', '/readyz')).status))).every((s) => s === 200), 20_000);
    await loginWorks(A, B, 'grace');
    // C, which never saw the cluster up before, hears outcomes published through A.
    await loginWorks(C, A, 'heidi');
  });
});

/** A user with OTP, a login opened and long-polled on A, approved through B: A hears it at once. */
async function loginWorks(A: Instance, B: Instance, name: string): Promise<void> {
  const created = await A.api('POST', '/api/v1/users', { name });
  assert.equal(created.status, 201, `${A.name}: ${JSON.stringify(created.body)}\n${A.output().slice(-3000)}`);
  assert.equal((await A.api('POST', `/api/v1/users/${name}/otp`, {})).status, 200);
  const opened = await A.api('POST', '/api/v1/challenges', { user: name });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const poll = A.api('GET', `/api/v1/challenges/${opened.body.id}/wait?timeout=20`);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  assert.equal((await B.api('POST', `/api/v1/challenges/${opened.body.id}/approve`, {})).status, 200);
  assert.equal((await poll).body.state, 'approved');
  assert.ok(Date.now() - t0 < 1000, `A heard the approval through B after ${Date.now() - t0} ms`);
}

/** The "host:port" of the master that serves `slot`, from CLUSTER SHARDS. */
function ownerOf(shards: unknown[], slot: number): string {
  for (const shard of shards as unknown[][]) {
    const fields = toMap(shard);
    const slots = fields.slots as number[];
    for (let i = 0; i + 1 < slots.length; i += 2) {
      if (slot >= slots[i]! && slot <= slots[i + 1]!) {
        const master = (fields.nodes as unknown[][]).map(toMap).find((n) => n.role === 'master')!;
        return `${master.ip}:${master.port}`;
      }
    }
  }
  throw new Error(`no owner for slot ${slot}`);
}

const toMap = (flat: unknown[]): Record<string, any> => {
  const m: Record<string, any> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) m[String(flat[i])] = flat[i + 1];
  return m;
};

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
    }),
  ]);
}
