// Runs every test file with node:test (Node 20 finds neither globs nor .ts
// files by itself), type-checks first, and fails when no test ran at all.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const find = (dir) =>
  readdirSync(join(root, dir)).flatMap((name) => {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) return find(rel);
    return name.endsWith('.test.ts') ? [rel] : [];
  });

/**
 * Run only when named (npm run test:load, npm run test:image; CI runs both as steps of their
 * own): the full 10,000-login process load, 100,000 fuzzed RADIUS packets, and the image build,
 * which need minutes of the machine. The default run keeps the load and the fuzz at sizes a busy
 * two-core machine holds (500 logins, 25,000 packets).
 */
const HEAVY = ['test/image/'];
const only = process.argv.slice(2);
const files = (only.length ? only : find('test').filter((f) => !HEAVY.some((h) => f.startsWith(h)))).sort();
if (!only.length) {
  process.env.SCALE_PROCESS_LOAD_N ??= '500';
  process.env.COUNTERSIGN_FUZZ_TOTAL ??= '25000';
}
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}

if (!process.env.SKIP_TYPECHECK) {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', root], { stdio: 'inherit' });
  if (tsc.status !== 0) {
    console.error('type check failed');
    process.exit(1);
  }
}

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=tap', `--test-concurrency=${process.env.COUNTERSIGN_TEST_CONCURRENCY ?? 2}`, '--test-timeout=120000', ...files],
  { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
);
const counts = {};
let buffered = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk;
  const lines = buffered.split('\n');
  buffered = lines.pop();
  for (const line of lines) {
    const m = /^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$/.exec(line);
    if (m) counts[m[1]] = Number(m[2]);
  }
});
child.on('close', (code) => {
  const tests = counts.tests ?? 0;
  const failed = (counts.fail ?? 0) + (counts.cancelled ?? 0);
  console.log(`${counts.pass ?? 0} passed, ${failed} failed, ${counts.skipped ?? 0} skipped`);
  if (tests === 0) {
    console.error('no test ran');
    process.exit(1);
  }
  if (process.env.CI === 'true' && (counts.skipped ?? 0) > 0) {
    console.error('tests were skipped under CI=true: every peer must be present');
    process.exit(1);
  }
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
