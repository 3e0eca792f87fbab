/**
 * bench/engine — npm run bench:engine  (COUNTERSIGN_BENCH_REDIS_URL, default redis://127.0.0.1:6379)
 *
 * Measures, in one run against one Redis:
 *  1. wake-up latency: instance B resolves a challenge instance A waits on,
 *     from B's call to A's waiter waking, next to a bare PUBLISH → message
 *     round trip on two plain connections (the floor any pub/sub design has);
 *  2. throughput: open + resolve (from the other instance) + wake cycles per
 *     second, next to bare PUBLISH → message cycles at the same concurrency;
 *  3. memory: Redis bytes per pending challenge, Node heap per waiting request.
 * Ratios are what to compare across machines; absolute figures move with load.
 */
import { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { systemClock } from '../src/core/clock.js';
import { ChallengeEngine } from '../src/core/engine.js';
import { RedisStore } from '../src/store/redis/index.js';

const url = process.env.COUNTERSIGN_BENCH_REDIS_URL ?? process.env.COUNTERSIGN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `csbench-${process.pid}`;
const LATENCY_SAMPLES = Number(process.env.BENCH_SAMPLES ?? 2000);
const THROUGHPUT_MS = Number(process.env.BENCH_MS ?? 3000);
const CONCURRENCY = 64;
const PENDING = Number(process.env.BENCH_PENDING ?? 10_000);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

function makeEngine() {
  const store = new RedisStore({ url, prefix, auditLimit: 1000, commandTimeoutMs: 5000 });
  const engine = new ChallengeEngine({
    store,
    clock: systemClock,
    deadlineMs: 150_000,
    keepAfterMs: 10_000,
    displayCodeDigits: 4,
    sweepIntervalMs: 60_000,
  });
  return { store, engine };
}

async function barePubSub() {
  const pub = new Redis(url);
  const sub = new Redis(url);
  const channel = `${prefix}:bare`;
  const waiting = new Map<string, () => void>();
  sub.on('message', (_c, m) => waiting.get(m)?.());
  await sub.subscribe(channel);
  const once = (i: number) =>
    new Promise<void>((resolve) => {
      const id = `m${i}-${Math.random()}`;
      waiting.set(id, () => {
        waiting.delete(id);
        resolve();
      });
      void pub.publish(channel, id);
    });
  for (let i = 0; i < 200; i++) await once(i); // warm up
  const lat: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const t = performance.now();
    await once(i);
    lat.push(performance.now() - t);
  }
  let cycles = 0;
  const end = performance.now() + THROUGHPUT_MS;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++, cycles++) await once(w * 1e9 + i);
    }),
  );
  pub.disconnect();
  sub.disconnect();
  return { lat, perSecond: cycles / (THROUGHPUT_MS / 1000) };
}

async function engineRun() {
  const a = makeEngine();
  const b = makeEngine();
  await a.engine.start();
  await b.engine.start();
  const origin = { front: 'bench', client: 'bench', ip: '127.0.0.1' };
  const cycle = async (measure: boolean) => {
    const c = await a.engine.open('bench-user', ['push'], origin);
    const woke = a.engine.wait(c.id).then(() => performance.now());
    // Let A's wait register and read the record before B answers.
    await new Promise((r) => setImmediate(r));
    const t = performance.now();
    await b.engine.approve(c.id, 'push');
    const w = await woke;
    return measure ? w - t : 0;
  };
  for (let i = 0; i < 200; i++) await cycle(false);
  const lat: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) lat.push(await cycle(true));

  let cycles = 0;
  const end = performance.now() + THROUGHPUT_MS;
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await cycle(false);
        cycles++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  const cpuShare = (cpu.user + cpu.system) / 1000 / THROUGHPUT_MS;

  // Memory: Redis bytes per pending challenge, Node heap per waiting request.
  const raw = new Redis(url);
  const used = async () => Number(/used_memory:(\d+)/.exec(await raw.info('memory'))![1]);
  const ids: string[] = [];
  const before = await used();
  for (let i = 0; i < PENDING; i += 500) {
    const batch = await Promise.all(Array.from({ length: 500 }, () => a.engine.open('bench-user', ['push'], origin)));
    ids.push(...batch.map((c) => c.id));
  }
  const redisBytes = ((await used()) - before) / ids.length;
  global.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const waits = ids.map((id) => a.engine.wait(id).catch(() => {}));
  await new Promise((r) => setTimeout(r, 500));
  global.gc?.();
  const nodeBytes = (process.memoryUsage().heapUsed - heap0) / ids.length;
  await a.engine.stop();
  await Promise.all(waits);
  await b.engine.stop();

  const keys = await raw.keys(`${prefix}:*`);
  for (let i = 0; i < keys.length; i += 1000) await raw.del(...keys.slice(i, i + 1000));
  raw.disconnect();
  await a.store.close();
  await b.store.close();
  return { lat, perSecond: cycles / (THROUGHPUT_MS / 1000), cpuShare, redisBytes, nodeBytes };
}

const bare = await barePubSub();
const ours = await engineRun();
const rows = [
  ['', 'p50', 'p99'],
  ['bare PUBLISH → message', fmt(pct(bare.lat, 50)), fmt(pct(bare.lat, 99))],
  ['resolve → waiter wakes', fmt(pct(ours.lat, 50)), fmt(pct(ours.lat, 99))],
  ['ratio', (pct(ours.lat, 50) / pct(bare.lat, 50)).toFixed(2) + '×', (pct(ours.lat, 99) / pct(bare.lat, 99)).toFixed(2) + '×'],
];
console.log(`bench/engine against ${url}, ${LATENCY_SAMPLES} samples, ${THROUGHPUT_MS} ms throughput runs, concurrency ${CONCURRENCY}`);
for (const r of rows) console.log(`  ${r[0]!.padEnd(26)} ${r[1]!.padStart(10)} ${r[2]!.padStart(10)}`);
console.log(`  throughput: ${ours.perSecond.toFixed(0)} open+resolve+wake cycles/s (node process CPU ${(ours.cpuShare * 100).toFixed(0)}% of one core)`);
console.log(`              ${bare.perSecond.toFixed(0)} bare publish→message cycles/s; ratio ${(ours.perSecond / bare.perSecond).toFixed(2)}`);
console.log(`  memory: ${ours.redisBytes.toFixed(0)} B of Redis per pending challenge, ${ours.nodeBytes.toFixed(0)} B of Node heap per waiting request (${PENDING} pending)`);
const p99ok = pct(ours.lat, 99) <= 2 * pct(bare.lat, 99);
console.log(`  targets: p99 within 2× bare ${p99ok ? 'met' : 'MISSED'}; ≥ 5000 cycles/s ${ours.perSecond >= 5000 ? 'met' : 'MISSED'}; < 1 KB/challenge ${ours.redisBytes < 1024 ? 'met' : 'MISSED'}`);
process.exit(0);
