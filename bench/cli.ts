/**
 * bench/cli — npm run bench:cli
 *
 * Wall time of a CLI client command from this checkout, as a person runs it
 * (`node bin/countersign.js …`, a fresh process each time): `--help`, and
 * `user list` against a server this script starts (`countersign serve` in its
 * own process, memory store). Next to them, in the same run and interleaved
 * with them, a bare `node -e 0`: the floor no Node CLI goes under on this
 * machine, so the ratio says what the CLI itself costs. Target: a client
 * command under 300 ms. BENCH_RUNS (default 15) runs of each; the first
 * round is a warm-up and not counted (it may transpile the CLI's cached copy
 * after a source edit).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/countersign.js');
const token = randomBytes(24).toString('base64url');

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });

// Only our own COUNTERSIGN_* settings: the caller's must not point the server or the CLI elsewhere.
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COUNTERSIGN_') && k !== 'NODE_OPTIONS'));
const port = await freePort();
const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-cli-'));
const server = spawn(process.execPath, [bin, 'serve'], {
  cwd: root,
  env: {
    ...baseEnv,
    COUNTERSIGN_HTTP_HOST: '127.0.0.1',
    COUNTERSIGN_HTTP_PORT: String(port),
    COUNTERSIGN_RADIUS_HOST: '127.0.0.1',
    COUNTERSIGN_RADIUS_PORT: '0',
    COUNTERSIGN_RADIUS_ACCOUNTING_PORT: '0',
    COUNTERSIGN_SECRET_KEY: randomBytes(32).toString('base64'),
    COUNTERSIGN_ADMIN_TOKEN: token,
    COUNTERSIGN_DEMO: 'false',
    COUNTERSIGN_LOG_LEVEL: 'warn',
    COUNTERSIGN_DATA_DIR: dataDir,
  },
  stdio: ['ignore', 'ignore', 'pipe'],
});
let serverLog = '';
server.stderr!.on('data', (d) => (serverLog += d));
const url = `http://127.0.0.1:${port}`;
const stopServer = () => {
  server.kill('SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
};
process.on('exit', stopServer);

for (let ready = false, start = Date.now(); !ready; ) {
  if (server.exitCode !== null) throw new Error(`the server exited: ${serverLog}`);
  if (Date.now() - start > 60_000) throw new Error(`the server did not come up: ${serverLog}`);
  ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
  if (!ready) await new Promise((r) => setTimeout(r, 100));
}
await fetch(`${url}/api/v1/users`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  body: JSON.stringify({ name: 'alice' }),
});

const cliEnv = { ...baseEnv, COUNTERSIGN_URL: url, COUNTERSIGN_ADMIN_TOKEN: token };
const cases: [string, string[], RegExp][] = [
  ['node -e 0', ['-e', '0'], /^$/],
  ['countersign --help', [bin, '--help'], /^countersign — /],
  ['countersign user list', [bin, 'user', 'list'], /^alice\b/],
];

/** One run's wall time in ms, after checking it did what it should. */
function time(args: string[], expect: RegExp): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env: cliEnv, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0 || !expect.test(r.stdout) || r.stderr) {
    throw new Error(`node ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  }
  return ms;
}

const samples = new Map(cases.map(([name]) => [name, [] as number[]]));
const first = new Map<string, number>();
for (let round = 0; round <= RUNS; round++) {
  for (const [name, args, expect] of cases) {
    const ms = time(args, expect);
    if (round === 0) first.set(name, ms);
    else samples.get(name)!.push(ms);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const floor = median(samples.get('node -e 0')!);
console.log(`CLI start-up, node ${process.version}, ${RUNS} runs each (median; warm-up run apart)`);
for (const [name] of cases) {
  const xs = samples.get(name)!;
  const m = median(xs);
  console.log(
    `  ${name.padEnd(24)} median ${m.toFixed(1).padStart(7)} ms  min ${Math.min(...xs).toFixed(1).padStart(7)} ms  ` +
      `warm-up ${first.get(name)!.toFixed(1).padStart(7)} ms  ${(m / floor).toFixed(2)}× node -e 0`,
  );
}
const worst = Math.max(median(samples.get('countersign --help')!), median(samples.get('countersign user list')!));
console.log(`  target: a client command under 300 ms: ${worst < 300 ? 'met' : 'NOT met'} (${worst.toFixed(1)} ms)`);
process.exit(0);
