/**
 * bench/radius — npm run bench:radius   (needs radclient, freeradius and redis-server)
 *
 * Redis: COUNTERSIGN_BENCH_REDIS_URL, else a private redis-server on a free port (no
 * persistence), stopped at the end: other users of the machine's Redis (tests running
 * meanwhile) must not stall the logins measured.
 *
 * 1. Access-Request throughput in `append` mode (password + TOTP), driven by
 *    Debian's radclient with parallel requests, one packet per distinct user
 *    (each TOTP is used once), against Countersign on the Redis store; and in
 *    the same run against FreeRADIUS answering PAP from its users file for the
 *    same users: the ceiling for a RADIUS server on this machine.
 *    A third line gives FreeRADIUS a password hash too, at the same cost as
 *    ours: a SHA-512 crypt (Crypt-Password, checked by rlm_pap through
 *    libcrypt) whose rounds are tuned, in this run, to cost what one of our
 *    scrypt checks costs (the server's own N, r, p), with FreeRADIUS's default
 *    thread pool; all users share one password there (one hash to make, the
 *    same check per request). Debian's FreeRADIUS checks crypt hashes one at a
 *    time whatever its threads, so a fourth line runs it with one thread and
 *    multiplies by the CPUs: what it would do if its check used every core.
 * 2. Second-factor-only (the NAS checked the password, the code alone comes
 *    in), in the same rounds, next to the cleartext PAP ceiling.
 * 3. push-wait: the time from the phone sending its approval to the
 *    Access-Accept arriving at the NAS socket, on loopback (p50/p99).
 *
 * Countersign's scrypt cost is N=1024, r=8, p=3 here (startTestServer's N); production's
 * default N is far higher, and then the password hash, not the RADIUS front,
 * sets the rate.
 *
 * Environment: BENCH_USERS (per round, default 1000), BENCH_ROUNDS (3),
 * BENCH_PARALLEL (radclient -p, default 64), BENCH_SAMPLES (push-wait, 200),
 * BENCH_PROFILE=<dir> (V8 CPU profiles of the server in the last round of each
 * of our runs, and their top frames by self time).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes, scryptSync } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import radius from 'radius';
import { Authenticator } from '../src/cli/authenticator.js';
import { base32Decode, totp } from '../src/core/otp.js';
import { startFreeRadius, type FreeRadius } from '../test/helpers/freeradius.js';
import { hasCommand, uniquePrefix } from '../test/helpers/peers.js';
import { freePort, spawnGroup, type ProcessGroup } from '../test/helpers/processes.js';
import { startTestServer, type TestServer } from '../test/helpers/server.js';

const USERS = Number(process.env.BENCH_USERS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 64);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 200);
const WARMUP = 200;
const SECRET = 'bench-radius-secret';
const HARD_LIMIT_MS = 300_000;
/** A directory: the server side's CPU profile of each Countersign run is written there, and its top frames printed. */
const PROFILE = process.env.BENCH_PROFILE;

// Whatever happens, this process ends (FreeRADIUS goes with it: see the helper).
setTimeout(() => {
  console.error(`bench/radius: still running after ${HARD_LIMIT_MS / 1000} s; giving up`);
  process.exit(2);
}, HARD_LIMIT_MS).unref();

const missing = ['radclient', 'freeradius', ...(process.env.COUNTERSIGN_BENCH_REDIS_URL ? [] : ['redis-server'])].filter((c) => !hasCommand(c));
if (missing.length) {
  console.error(`bench/radius needs ${missing.join(', ')}`);
  process.exit(1);
}

/** The bench's Redis: the one named, or a private redis-server that answers PING. */
let redisServer: ProcessGroup | undefined;
async function benchRedis(): Promise<string> {
  if (process.env.COUNTERSIGN_BENCH_REDIS_URL) return process.env.COUNTERSIGN_BENCH_REDIS_URL;
  const port = await freePort();
  redisServer = spawnGroup(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], HARD_LIMIT_MS / 1000 + 30);
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    for (let i = 0; ; i++) {
      try {
        await probe.connect();
        await probe.ping();
        return url;
      } catch {
        probe.disconnect();
        if (i > 50) throw new Error(`redis-server did not start:\n${redisServer.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    probe.disconnect();
  }
}
const redisUrl = await benchRedis();

const dir = mkdtempSync(join(tmpdir(), 'cs-bench-radius-'));
const loadAtStart = loadavg()[0]!;
const prefix = uniquePrefix('bench-radius');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((q / 100) * xs.length) - 1)]!;
const n0 = (x: number) => x.toFixed(0).padStart(6);

/** radclient -p PARALLEL -f file: the wall time of the whole file, and what came back. */
async function radclientRun(port: number, packets: string[], tag: string) {
  const file = join(dir, `${tag}.txt`);
  writeFileSync(file, packets.join('\n\n') + '\n');
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  // -t 10: a slow answer is counted, never retransmitted (a retransmit is a duplicate, not a new login).
  const child = spawn('radclient', ['-q', '-s', '-p', String(PARALLEL), '-r', '1', '-t', '10', '-f', file, `127.0.0.1:${port}`, 'auth', SECRET]);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await new Promise((r) => child.on('close', r));
  clearTimeout(killer);
  const seconds = (performance.now() - t) / 1000;
  const { user, system } = process.cpuUsage(cpu0);
  const num = (label: string) => Number(new RegExp(`${label}\\s*:\\s*(\\d+)`).exec(out)?.[1] ?? 0);
  const accepted = num('Accepted');
  // This process's CPU (event loop and libuv threads: the server runs here, radclient does not) per request.
  const cpuUs = (user + system) / Math.max(1, packets.length);
  return { seconds, accepted, rejected: num('Rejected'), lost: num('Lost'), rate: accepted / seconds, cpuUs, out };
}

/**
 * With BENCH_PROFILE: run `f` under the V8 CPU profiler of this process (the server's event
 * loop), write <tag>.cpuprofile and keep the top frames by self time for the report.
 */
const profiles: string[] = [];
async function profiled<T>(tag: string, requests: number, f: () => Promise<T>): Promise<T> {
  if (!PROFILE) return f();
  mkdirSync(PROFILE, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  try {
    return await f();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    writeFileSync(join(PROFILE, `${tag}.cpuprofile`), JSON.stringify(profile));
    profiles.push(topFrames(tag, profile, requests));
  }
}

/** The frames with the most self time, in µs per request, idle left out. */
function topFrames(tag: string, profile: { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; samples?: number[]; timeDeltas?: number[] }, requests: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    const f = byId.get(samples[i]!)!;
    if (f.functionName === '(idle)' || f.functionName === '(program)') continue;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/|src\/|plugins\/)/, '$1')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    const us = deltas[i + 1] ?? deltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    busy += us;
  }
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 15);
  return [
    `  profile ${tag}: event loop busy ${(busy / requests).toFixed(0)} µs per request (${requests} requests); top frames by self time:`,
    ...top.map(([k, us]) => `    ${(us / requests).toFixed(1).padStart(7)} µs  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${k}`),
  ].join('\n');
}

/** Users bench-<set>-<i>, password and TOTP seed each, written straight through the services. */
async function createUsers(s: TestServer, set: string, count: number) {
  const users: { name: string; password: string; seed: Buffer; params: { algorithm: 'SHA1' | 'SHA256' | 'SHA512'; digits: number; period: number } }[] = [];
  const names = Array.from({ length: count }, (_, i) => `bench-${set}-${i}`);
  for (let i = 0; i < names.length; i += 200) {
    await Promise.all(
      names.slice(i, i + 200).map(async (name) => {
        const password = `pw-${name}`;
        await s.ctx.users.create({ name, password });
        const e = await s.ctx.users.enrolOtp(name);
        users.push({ name, password, seed: base32Decode(e.secret), params: e.params });
      }),
    );
  }
  return users;
}

type Users = Awaited<ReturnType<typeof createUsers>>;
const appendPackets = (users: Users) => {
  const now = Date.now();
  return users.map((u) => `User-Name = ${u.name}, User-Password = "${u.password},${totp(u.seed, now, u.params)}", Message-Authenticator = 0x00`);
};
/** Python's crypt module calls libcrypt, as FreeRADIUS's rlm_pap does: timing and hashing with the same code. */
const PY_CRYPT = `
import crypt, sys, time, warnings
warnings.simplefilter('ignore')
pw, setting, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = crypt.crypt(pw, setting)
t = time.perf_counter()
for _ in range(reps): crypt.crypt(pw, setting)
print(h)
print((time.perf_counter() - t) * 1000 / max(1, reps))
`;
function sha512Crypt(password: string, rounds: number, reps = 0): { hash: string; ms: number } {
  const salt = randomBytes(12).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 16);
  const [hash, ms] = execFileSync('python3', ['-W', 'ignore::DeprecationWarning', '-c', PY_CRYPT, password, `$6$rounds=${rounds}$${salt}`, String(reps)], { encoding: 'utf8' }).trim().split('\n');
  if (!hash?.startsWith('$6$')) throw new Error(`libcrypt made no SHA-512 crypt hash: ${hash}`);
  return { hash, ms: Number(ms) };
}
/**
 * SHA-512 crypt rounds costing what one of our password checks (scrypt with the server's
 * N, r, p) costs on this machine now: both timed here, interleaved, the median of five.
 */
function calibrateCrypt(cost: { N: number; r: number; p: number }): { rounds: number; scryptMs: number; cryptMs: number } {
  const PROBE = 20_000;
  const salt = randomBytes(16);
  const scryptOnce = () => {
    const t = performance.now();
    for (let i = 0; i < 3; i++) scryptSync('calibrate-pw', salt, 32, { ...cost, maxmem: 256 * cost.N * cost.r + 1024 * 1024 });
    return (performance.now() - t) / 3;
  };
  scryptOnce();
  const scrypts: number[] = [];
  const crypts: number[] = [];
  for (let i = 0; i < 5; i++) {
    scrypts.push(scryptOnce());
    crypts.push(sha512Crypt('calibrate-pw', PROBE, 3).ms);
  }
  const scryptMs = median(scrypts);
  const rounds = Math.max(1000, Math.round((PROBE * scryptMs) / median(crypts)));
  return { rounds, scryptMs, cryptMs: sha512Crypt('calibrate-pw', rounds, 3).ms };
}
const papPackets = (users: Users) => users.map((u) => `User-Name = ${u.name}, User-Password = "${u.password}", Message-Authenticator = 0x00`);


/** Message-Authenticator of a request, recomputed (RFC 3579 §3.2): does the packet carry a correct one? */
function messageAuthenticatorOk(packet: Buffer, secret: string): boolean {
  for (let off = 20; off + 2 <= packet.length; off += packet[off + 1]!) {
    if (packet[off] !== 80) continue;
    const zeroed = Buffer.from(packet);
    zeroed.fill(0, off + 2, off + 18);
    return createHmac('md5', secret).update(zeroed).digest().equals(packet.subarray(off + 2, off + 18));
  }
  return false;
}

let cs: TestServer | undefined;
let fr: FreeRadius | undefined;
const lines: string[] = [];
try {
  // ---------------------------------------------------------------- setup
  cs = await startTestServer({ COUNTERSIGN_REDIS_URL: redisUrl, COUNTERSIGN_REDIS_PREFIX: prefix }, {}, (c) => {
    c.radius.clients = [
      { name: 'bench-append', address: '127.0.0.1/32', secret: SECRET, mode: 'append', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      // The same, with the NAS doing the password: radclient sends from 127.0.0.3 (Packet-Src-IP-Address).
      { name: 'bench-otp-only', address: '127.0.0.3/32', secret: SECRET, mode: 'append', secondFactorOnly: true, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      // push-wait, from the bench's own NAS socket on 127.0.0.2.
      { name: 'bench-push', address: '127.0.0.2/32', secret: SECRET, mode: 'push-wait', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
    ];
    c.push.rateLimit.count = 1_000_000; // one user approves SAMPLES pushes
  });
  const t0 = performance.now();
  const warm = await createUsers(cs, 'warm', WARMUP);
  const sets: Users[] = [];
  for (let r = 0; r < ROUNDS; r++) sets.push(await createUsers(cs, `r${r}`, USERS));
  const setupSeconds = (performance.now() - t0) / 1000;

  const everyone = [...warm, ...sets.flat()];
  const cost = { N: cs.ctx.config.passwords.scryptN, r: 8, p: cs.ctx.config.passwords.scryptP };
  const { rounds, scryptMs, cryptMs } = calibrateCrypt(cost);
  const HASHED_PW = 'bench-hashed-password';
  const cryptHash = sha512Crypt(HASHED_PW, rounds).hash;
  const hashed = everyone.map((u) => ({ name: u.name, password: cryptHash, attribute: 'Crypt-Password' as const }));
  const hashedPackets = (users: Users) => users.map((u) => `User-Name = ${u.name}, User-Password = "${HASHED_PW}", Message-Authenticator = 0x00`);
  const threads = { start: 5, max: 32 }; // Debian's radiusd.conf

  // ------------------------------------------------ 1. throughput, interleaved
  type Run = Awaited<ReturnType<typeof radclientRun>>;
  const ours: Run[] = [];
  const theirs: Run[] = [];
  const theirsHashed: Run[] = [];
  const otpOnly: Run[] = [];
  // Second-factor-only: the next time step's code (inside the ±1 window, after the one the
  // append run just used), from the NAS at 127.0.0.3 (Packet-Src-IP-Address).
  const otpOnlyPackets = (users: Users) => {
    const next = Date.now() + 30_000;
    return users.map((u) => `Packet-Src-IP-Address = 127.0.0.3, User-Name = ${u.name}, User-Password = "${totp(u.seed, next, u.params)}", Message-Authenticator = 0x00`);
  };
  // The last round: past the process's first 10,000 Buffer() calls, whose deprecation check (node:buffer) walks the stack.
  const profileLast = <T>(r: number, tag: string, f: () => Promise<T>) => (r === ROUNDS - 1 ? profiled(tag, USERS, f) : f());
  fr = await startFreeRadius({ nasSecret: SECRET, users: everyone, threads, lifetimeSeconds: 320 });
  await radclientRun(cs.radiusPort!, appendPackets(warm), 'warm-cs');
  await radclientRun(cs.radiusPort!, otpOnlyPackets(warm), 'warm-cs-otp');
  await radclientRun(fr.port, papPackets(warm), 'warm-fr');
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(await profileLast(r, 'append', () => radclientRun(cs!.radiusPort!, appendPackets(sets[r]!), `cs-${r}`)));
    theirs.push(await radclientRun(fr.port, papPackets(sets[r]!), `fr-${r}`));
    otpOnly.push(await profileLast(r, 'otp-only', () => radclientRun(cs!.radiusPort!, otpOnlyPackets(sets[r]!), `cs-otp-${r}`)));
  }
  await fr.stop();
  // Its default thread pool (Debian's radiusd.conf), as an operator runs it.
  fr = await startFreeRadius({ nasSecret: SECRET, users: hashed, threads, lifetimeSeconds: 320 });
  await radclientRun(fr.port, hashedPackets(warm), 'warm-fr-hashed');
  for (let r = 0; r < ROUNDS; r++) theirsHashed.push(await radclientRun(fr.port, hashedPackets(sets[r]!), `fr-hashed-${r}`));
  await fr.stop();
  // And with one worker: Debian's FreeRADIUS checks a crypt hash no faster with 32 workers than
  // with one (measured here: the check is serialized), so one worker's rate times the CPUs is
  // what it would do if its check used every core: the stricter reference.
  fr = await startFreeRadius({ nasSecret: SECRET, users: hashed, threads: { start: 1, max: 1 }, lifetimeSeconds: 320 });
  await radclientRun(fr.port, hashedPackets(warm.slice(0, 50)), 'warm-fr-hashed-1');
  const oneThread = await radclientRun(fr.port, hashedPackets(sets[0]!), 'fr-hashed-1');
  await fr.stop();

  // ------------------------------------------- 2. push-wait approval → Accept
  await cs.ctx.users.create({ name: 'phoneuser', password: 'phone-pw' });
  await cs.ctx.users.setFactor(['phoneuser'], 'push', true);
  const link = await cs.api('POST', '/api/v1/users/phoneuser/enrolments', {});
  const phone = await Authenticator.enrol(link.body.uri);
  let resolvedAt = 0;
  cs.ctx.engine.on('resolved', () => (resolvedAt = performance.now()));
  const nas = dgram.createSocket('udp4');
  await new Promise<void>((r) => nas.bind(0, '127.0.0.2', r));
  let onReply: ((msg: Buffer, at: number) => void) | undefined;
  nas.on('message', (msg) => onReply?.(msg, performance.now()));
  const fromApproval: number[] = [];
  const fromResolved: number[] = [];
  let badMa = 0;
  const WARM_SAMPLES = 20;
  for (let i = 0; i < WARM_SAMPLES + SAMPLES; i++) {
    const identifier = i % 256;
    // Note: radius.encode leaves a Message-Authenticator given in `attributes`
    // as it is (zeros); only add_message_authenticator: true makes it compute one.
    const packet = radius.encode({
      code: 'Access-Request',
      secret: SECRET,
      identifier,
      attributes: [['User-Name', 'phoneuser'], ['User-Password', 'phone-pw']],
      add_message_authenticator: true,
    });
    if (!messageAuthenticatorOk(packet, SECRET)) badMa++;
    const reply = new Promise<{ msg: Buffer; at: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to push-wait sample ${i}`)), 10_000);
      onReply = (msg, at) => {
        if (msg[1] !== identifier) return;
        clearTimeout(timer);
        resolve({ msg, at });
      };
    });
    nas.send(packet, cs.radiusPort!, '127.0.0.1');
    let pending;
    for (let tries = 0; !(pending = (await phone.pending())[0]); tries++) {
      if (tries > 2000) throw new Error('the push never reached the phone');
      await new Promise((r) => setTimeout(r, 1));
    }
    // What Authenticator.answer() does, with the phone's signature made before the clock starts.
    const request = await phone.sign('answer', { cid: pending.challengeId, decision: 'approve' });
    const approvedAt = performance.now(); // just before the phone sends its approval
    const res = await fetch(`${phone.file.server}/device/v1/answer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ request }),
    });
    if (!res.ok) throw new Error(`push-wait sample ${i}: the approval failed: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    const { msg, at } = await reply;
    const code = radius.decode({ packet: msg, secret: SECRET }).code;
    if (code !== 'Access-Accept') throw new Error(`push-wait sample ${i}: ${code}`);
    if (i < WARM_SAMPLES) continue;
    fromApproval.push(at - approvedAt);
    fromResolved.push(at - resolvedAt);
  }
  nas.close();

  // ---------------------------------------------------------------- report
  const rate = median(ours.map((o) => o.rate));
  const ceiling = median(theirs.map((o) => o.rate));
  const otpRate = median(otpOnly.map((o) => o.rate));
  const otpRatio = otpRate / ceiling;
  const hashedCeiling = median(theirsHashed.map((o) => o.rate));
  const hashedRatio = rate / hashedCeiling;
  const p99 = pct(fromApproval, 99);
  const row = (label: string, runs: typeof ours, cpu = true) =>
    `  ${label.padEnd(56)} ${n0(median(runs.map((o) => o.rate)))} req/s  ${cpu ? `${n0(median(runs.map((o) => o.cpuUs)))} µs CPU/req` : '                  '}   runs: ${runs.map((o) => `${o.rate.toFixed(0)} (${o.accepted}/${USERS} accepted${o.lost ? `, ${o.lost} lost` : ''})`).join(', ')}`;
  lines.push(
    `bench/radius on ${process.version}: ${USERS} users × ${ROUNDS} rounds (+${WARMUP} warm-up), radclient -p ${PARALLEL}, one packet per user; setup ${setupSeconds.toFixed(1)} s; Redis ${redisServer ? 'a private redis-server' : redisUrl}`,
    `  load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on ${availableParallelism()} CPUs${Math.max(loadAtStart, loadavg()[0]!) > availableParallelism() ? ' — the machine is busy with other work: treat these numbers as rough' : ''}`,
    `  NOTE: Countersign hashes passwords with scrypt N=${cost.N}, r=8, p=${cost.p} here (startTestServer lowers N for speed); production's default N makes the hash, not RADIUS, the limit.`,
    `  (µs CPU/req: this process's CPU time, event loop and libuv threads, per request; the server runs here, radclient does not)`,
    row('Countersign, Redis store, second-factor-only (TOTP)', otpOnly),
    row('FreeRADIUS 3, PAP, Cleartext-Password (the ceiling)', theirs, false),
    `  ratio second-factor-only / FreeRADIUS PAP                ${otpRatio.toFixed(2)}   (target ≥ 0.50: ${otpRatio >= 0.5 ? 'met' : 'MISSED'})`,
    row('Countersign, Redis store, append (password + TOTP)', ours),
    row(`FreeRADIUS 3, PAP, Crypt-Password SHA-512 rounds=${rounds}`, theirsHashed, false),
    `    (its hash costs ${cryptMs.toFixed(2)} ms here, one of our scrypt checks ${scryptMs.toFixed(2)} ms; FreeRADIUS threads ${threads.start}–${threads.max}, ours on libuv's ${process.env.UV_THREADPOOL_SIZE ?? 4}, ${availableParallelism()} CPUs)`,
    `  ratio append / FreeRADIUS with the same hash cost        ${hashedRatio.toFixed(2)}   (target ≥ 1.00: ${hashedRatio >= 1 ? 'met' : 'MISSED'})`,
    `  FreeRADIUS, the same hash, 1 thread                       ${n0(oneThread.rate)} req/s; × ${availableParallelism()} CPUs = ${n0(oneThread.rate * availableParallelism())} req/s, what it would do if its crypt check used every core`,
    `  ratio append / that every-core FreeRADIUS                ${(rate / (oneThread.rate * availableParallelism())).toFixed(2)}   (stricter than the target)`,
    `  push-wait, Redis store, ${SAMPLES} samples (after ${WARM_SAMPLES} warm-up):`,
    `    phone sends approval → Access-Accept at the NAS     p50 ${pct(fromApproval, 50).toFixed(2)} ms   p99 ${p99.toFixed(2)} ms   max ${Math.max(...fromApproval).toFixed(2)} ms   (target p99 < 5 ms: ${p99 < 5 ? 'met' : 'MISSED'})`,
    `    approval recorded (engine) → Access-Accept at NAS   p50 ${pct(fromResolved, 50).toFixed(2)} ms   p99 ${pct(fromResolved, 99).toFixed(2)} ms`,
    `    (the first span is the approval's HTTP POST on loopback, its ES256 check and the store write, up to the reply datagram; the phone signs before the clock starts)`,
    `    (the bench's Access-Requests carried a correct Message-Authenticator: ${WARM_SAMPLES + SAMPLES - badMa}/${WARM_SAMPLES + SAMPLES})`,
  );
  lines.push(...profiles);
  const short = [...ours, ...theirs, ...theirsHashed, ...otpOnly, oneThread].filter((o) => o.accepted !== USERS);
  if (short.length) lines.push(`  WARNING: ${short.length} run(s) had requests not accepted; last radclient output:\n${short.at(-1)!.out.slice(-1500)}`);
} catch (err) {
  lines.push(`bench/radius FAILED: ${(err as Error).stack ?? err}`);
  if (fr) lines.push(`--- FreeRADIUS output (last lines):\n${fr.output().slice(-2000)}`);
  process.exitCode = 1;
} finally {
  await fr?.stop().catch(() => {});
  await cs?.close().catch(() => {});
  const raw = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  raw.on('error', () => {});
  let removed = 0;
  try {
    for (let cursor = '0'; ; ) {
      const [nextCursor, keys] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) removed += await raw.del(...keys);
      if ((cursor = nextCursor) === '0') break;
    }
    lines.push(`  cleaned up ${removed} Redis keys under ${prefix}:`);
  } catch (err) {
    lines.push(`  WARNING: could not remove Redis keys under ${prefix}: ${(err as Error).message}`);
  } finally {
    raw.disconnect();
  }
  rmSync(dir, { recursive: true, force: true });
  await redisServer?.stop();
}
console.log(lines.join('\n'));
process.exit(process.exitCode ?? 0);
