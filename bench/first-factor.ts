/**
 * bench/first-factor — npm run bench:first-factor
 *
 * What one address flooding the password check does to everyone else's login (issue 21,
 * finding 3), in one run against one `countersign serve` process of its own (memory store,
 * the production password cost N=2^15, r=8, p=3, behind "a proxy": X-Forwarded-For names each
 * caller):
 * 1. The reference: a real login alone — `/validate/check` with the user's password, answered
 *    with the challenge (one full scrypt and the login opened) — BENCH_SAMPLES times.
 * 2. The same logins while a flood keeps BENCH_FLOOD (150) requests in flight from one other
 *    address, each for an unknown user (a decoy scrypt each on a server without the bound),
 *    sending again as each is answered.
 *    Once from the user's usual place, once from addresses that never signed the user in.
 * 3. The same, the real user at their usual place sharing the flooding address (an office
 *    behind one NAT with the attacker): served first, never held.
 * Prints p50 and the worst of each, the ratio to the reference, and how the flood was
 * answered. Stops by itself (BENCH_HARD_LIMIT_SECONDS, 240).
 */
import { performance } from 'node:perf_hooks';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { freePort, spawnGroup } from '../test/helpers/processes.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 5);
const FLOOD = Number(process.env.BENCH_FLOOD ?? 150);
const HARD_LIMIT_MS = Number(process.env.BENCH_HARD_LIMIT_SECONDS ?? 240) * 1000;
const TOKEN = 'bench-first-factor-admin-token-0123456789';
const bin = fileURLToPath(new URL('../bin/countersign.js', import.meta.url));

setTimeout(() => {
  console.error('bench/first-factor: gave up (hard limit)');
  process.exit(2);
}, HARD_LIMIT_MS).unref();

const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const env = {
  COUNTERSIGN_HTTP_HOST: '127.0.0.1',
  COUNTERSIGN_HTTP_PORT: String(port),
  COUNTERSIGN_HTTP_TRUST_PROXY: 'true',
  COUNTERSIGN_ADMIN_TOKEN: TOKEN,
  COUNTERSIGN_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'),
  COUNTERSIGN_DEMO: 'false',
  COUNTERSIGN_RADIUS_ENABLED: 'false',
  COUNTERSIGN_LOG_LEVEL: 'warn',
  COUNTERSIGN_DATA_DIR: `/tmp/countersign-bench-ff-${process.pid}`,
};
const child = spawnGroupWithEnv(env);

/** The server with its settings in its environment (spawnGroup passes this process's on). */
function spawnGroupWithEnv(extra: Record<string, string>) {
  const saved = { ...process.env };
  Object.assign(process.env, extra);
  try {
    return spawnGroup([process.execPath, bin, 'serve'], HARD_LIMIT_MS / 1000 + 30);
  } finally {
    for (const k of Object.keys(extra)) if (saved[k] === undefined) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

const api = async (method: string, path: string, body?: unknown) => {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: (await r.json().catch(() => ({}))) as any };
};
const check = async (user: string, pass: string, from: string) => {
  const r = await fetch(`${url}/validate/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': from },
    body: new URLSearchParams({ user, pass }).toString(),
  });
  const body = (await r.json().catch(() => ({}))) as any;
  return { status: r.status, auth: body?.result?.authentication as string | undefined };
};

try {
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`${url}/readyz`).then((r) => r.status).catch(() => 0)) === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await api('POST', '/api/v1/users', { name: 'real', password: 'real-password' });
  await api('POST', '/api/v1/users/real/otp', {});
  const HOME = '198.51.100.7';
  const OFFICE = '203.0.113.150';
  // A server that has run a while: the decoy hash for unknown users exists, the user has signed in at home and at the office.
  await check('nobody-warm', 'guess', '192.0.2.1');
  for (const from of [HOME, OFFICE]) {
    const r = await check('real', 'real-password', from);
    if (r.auth !== 'CHALLENGE') throw new Error(`the real login did not reach the challenge: ${JSON.stringify(r)}`);
  }

  /** One real login's time, from `from`. */
  const realLogin = async (from: string) => {
    const started = performance.now();
    const r = await check('real', 'real-password', from);
    const ms = performance.now() - started;
    return { ms, ok: r.auth === 'CHALLENGE', status: r.status };
  };
  const series = async (from: string) => {
    const out: { ms: number; ok: boolean; status: number }[] = [];
    for (let i = 0; i < SAMPLES; i++) out.push(await realLogin(from));
    return out;
  };
  /** A flood from OFFICE of unknown users, FLOOD in flight, while `during` runs. */
  const flooded = async <T>(during: () => Promise<T>) => {
    let stop = false;
    let n = 0;
    const statuses = new Map<number, number>();
    const slot = async (i: number) => {
      while (!stop) {
        const r = await check(`nobody-${i}-${n++}`, 'guess', OFFICE).catch(() => ({ status: 0 }));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }
    };
    const flood = Array.from({ length: FLOOD }, (_, i) => slot(i));
    await new Promise((r) => setTimeout(r, 500));
    const result = await during();
    stop = true;
    await Promise.all(flood);
    return { result, statuses, sent: n };
  };
  const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const worst = (xs: number[]) => Math.max(...xs);

  let fresh = 0;
  /** Logins from addresses that never signed the user in: the line, not the front of it. */
  const newPlaces = async () => {
    const out: { ms: number; ok: boolean; status: number }[] = [];
    for (let i = 0; i < SAMPLES; i++) out.push(await realLogin(`198.51.100.${100 + fresh++}`));
    return out;
  };
  const alone = await series(HOME);
  const during = await flooded(() => series(HOME));
  const duringNew = await flooded(newPlaces);
  const atOffice = await flooded(() => series(OFFICE));
  const row = (label: string, xs: { ms: number; ok: boolean; status: number }[]) =>
    `  ${label.padEnd(62)} p50 ${p50(xs.map((x) => x.ms)).toFixed(0).padStart(6)} ms   worst ${worst(xs.map((x) => x.ms)).toFixed(0).padStart(6)} ms   ${xs.every((x) => x.ok) ? 'all reached the challenge' : `answers ${xs.map((x) => x.status).join(',')}`}`;
  const ratio = p50(duringNew.result.map((x) => x.ms)) / p50(alone.map((x) => x.ms));
  console.log(
    [
      `bench/first-factor — one countersign serve, memory store, scrypt N=2^15 r=8 p=3, ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(2)}; ${SAMPLES} real logins per row, ${FLOOD} flood requests in flight`,
      row('a real login alone (reference)', alone),
      row(`during the flood, from the user's usual place`, during.result),
      row(`during the flood, from places the user never signed in from`, duringNew.result),
      row(`during the flood, at the usual place it shares with the flood`, atOffice.result),
      `  ratio flooded (new places) / alone, p50                    ${ratio.toFixed(2)}   (target: every flooded login under 2 s)`,
      `  the flood: ${[during, duringNew, atOffice].reduce((a, f) => a + f.sent, 0)} requests, answered ${[200, 429, 503, 0].map((k) => `${k}×${[during, duringNew, atOffice].reduce((a, f) => a + (f.statuses.get(k) ?? 0), 0)}`).join(' ')}`,
    ].join('\n'),
  );
} finally {
  await child.stop();
}
