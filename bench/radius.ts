/**
 * bench/radius — npm run bench:radius   (needs radclient, freeradius and a Redis
 * at COUNTERSIGN_TEST_REDIS_URL, default redis://127.0.0.1:6379)
 *
 * 1. Access-Request throughput in `append` mode (password + TOTP), driven by
 *    Debian's radclient with parallel requests, one packet per distinct user
 *    (each TOTP is used once), against Countersign on the Redis store; and in
 *    the same run against FreeRADIUS answering PAP from its users file for the
 *    same users: the ceiling for a RADIUS server on this machine.
 *    A third line gives FreeRADIUS a password hash too (PBKDF2-SHA256, with
 *    the iterations tuned to cost what Countersign's scrypt costs here), to
 *    tell the hash from the front.
 * 2. push-wait: the time from the phone sending its approval to the
 *    Access-Accept arriving at the NAS socket, on loopback (p50/p99).
 *
 * Countersign's scrypt cost is N=1024 here (startTestServer's); production's
 * default N is far higher, and then the password hash, not the RADIUS front,
 * sets the rate.
 *
 * Environment: BENCH_USERS (per round, default 1000), BENCH_ROUNDS (3),
 * BENCH_PARALLEL (radclient -p, default 64), BENCH_SAMPLES (push-wait, 200).
 */
import { spawn } from 'node:child_process';
import { createHmac, pbkdf2, pbkdf2Sync, randomBytes, scryptSync } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import radius from 'radius';
import { Authenticator } from '../src/cli/authenticator.js';
import { base32Decode, totp } from '../src/core/otp.js';
import { startFreeRadius, type FreeRadius } from '../test/helpers/freeradius.js';
import { hasCommand, redisAvailable, testRedisUrl, uniquePrefix } from '../test/helpers/peers.js';
import { startTestServer, type TestServer } from '../test/helpers/server.js';

const USERS = Number(process.env.BENCH_USERS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 64);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 200);
const WARMUP = 200;
const SECRET = 'bench-radius-secret';
const HARD_LIMIT_MS = 170_000;

// Whatever happens, this process ends (FreeRADIUS goes with it: see the helper).
setTimeout(() => {
  console.error(`bench/radius: still running after ${HARD_LIMIT_MS / 1000} s; giving up`);
  process.exit(2);
}, HARD_LIMIT_MS).unref();

const missing = ['radclient', 'freeradius'].filter((c) => !hasCommand(c));
if (!(await redisAvailable())) missing.push(`Redis at ${testRedisUrl()}`);
if (missing.length) {
  console.error(`bench/radius needs ${missing.join(', ')}`);
  process.exit(1);
}

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
  // -t 10: a slow answer is counted, never retransmitted (a retransmit is a duplicate, not a new login).
  const child = spawn('radclient', ['-q', '-s', '-p', String(PARALLEL), '-r', '1', '-t', '10', '-f', file, `127.0.0.1:${port}`, 'auth', SECRET]);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await new Promise((r) => child.on('close', r));
  clearTimeout(killer);
  const seconds = (performance.now() - t) / 1000;
  const num = (label: string) => Number(new RegExp(`${label}\\s*:\\s*(\\d+)`).exec(out)?.[1] ?? 0);
  const accepted = num('Accepted');
  return { seconds, accepted, rejected: num('Rejected'), lost: num('Lost'), rate: accepted / seconds, out };
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
/** PBKDF2-SHA256 iterations costing what one scrypt N=1024 (r=8, p=1) costs on this machine. */
function calibrateIterations(): { iterations: number; scryptMs: number } {
  const time = (f: () => void, n: number) => {
    f();
    const t = performance.now();
    for (let i = 0; i < n; i++) f();
    return (performance.now() - t) / n;
  };
  const salt = randomBytes(16);
  const scryptMs = time(() => scryptSync('calibrate-pw', salt, 32, { N: 1024, r: 8, p: 1 }), 30);
  const pbkdf2Ms = time(() => pbkdf2Sync('calibrate-pw', salt, 10_000, 32, 'sha256'), 30);
  return { iterations: Math.max(1000, Math.round((10_000 * scryptMs) / pbkdf2Ms)), scryptMs };
}
/** rlm_pap's PBKDF2-Password, 389-ds style: HMACSHA2+256:<iterations, 4 bytes BE>:<salt>:<hash>, base64. */
async function pbkdf2Entry(password: string, iterations: number): Promise<string> {
  const salt = randomBytes(16);
  const hash = await new Promise<Buffer>((resolve, reject) => pbkdf2(password, salt, iterations, 32, 'sha256', (e, k) => (e ? reject(e) : resolve(k))));
  const it = Buffer.alloc(4);
  it.writeUInt32BE(iterations);
  return `HMACSHA2+256:${it.toString('base64')}:${salt.toString('base64')}:${hash.toString('base64')}`;
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
  cs = await startTestServer({ COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: prefix }, {}, (c) => {
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
  const { iterations, scryptMs } = calibrateIterations();
  const hashed: { name: string; password: string; attribute: 'PBKDF2-Password' }[] = [];
  for (let i = 0; i < everyone.length; i += 200) {
    hashed.push(
      ...(await Promise.all(everyone.slice(i, i + 200).map(async (u) => ({ name: u.name, password: await pbkdf2Entry(u.password, iterations), attribute: 'PBKDF2-Password' as const })))),
    );
  }
  const threads = { start: 5, max: 32 }; // Debian's radiusd.conf

  // ------------------------------------------------ 1. throughput, interleaved
  type Run = Awaited<ReturnType<typeof radclientRun>>;
  const ours: Run[] = [];
  const theirs: Run[] = [];
  const theirsHashed: Run[] = [];
  fr = await startFreeRadius({ nasSecret: SECRET, users: everyone, threads, lifetimeSeconds: 200 });
  await radclientRun(cs.radiusPort!, appendPackets(warm), 'warm-cs');
  await radclientRun(fr.port, papPackets(warm), 'warm-fr');
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(await radclientRun(cs.radiusPort!, appendPackets(sets[r]!), `cs-${r}`));
    theirs.push(await radclientRun(fr.port, papPackets(sets[r]!), `fr-${r}`));
  }
  await fr.stop();
  // One worker: PBKDF2 in FreeRADIUS 3.2 (OpenSSL 3) gets slower with more threads
  // (measured here: ~300/s with 1, ~130/s with 2, ~75/s with 32), so this is its best case.
  fr = await startFreeRadius({ nasSecret: SECRET, users: hashed, threads: { start: 1, max: 1 }, lifetimeSeconds: 200 });
  await radclientRun(fr.port, papPackets(warm), 'warm-fr-hashed');
  for (let r = 0; r < ROUNDS; r++) theirsHashed.push(await radclientRun(fr.port, papPackets(sets[r]!), `fr-hashed-${r}`));
  await fr.stop();
  // Second-factor-only: the next time step's code (inside the ±1 window, after the one just used).
  const next = Date.now() + 30_000;
  const otpOnly = await radclientRun(
    cs.radiusPort!,
    sets[0]!.map((u) => `Packet-Src-IP-Address = 127.0.0.3, User-Name = ${u.name}, User-Password = "${totp(u.seed, next, u.params)}", Message-Authenticator = 0x00`),
    'cs-otp-only',
  );

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
  const ratio = rate / ceiling;
  const hashedCeiling = median(theirsHashed.map((o) => o.rate));
  const p99 = pct(fromApproval, 99);
  const row = (label: string, runs: typeof ours) =>
    `  ${label} ${n0(median(runs.map((o) => o.rate)))} req/s   runs: ${runs.map((o) => `${o.rate.toFixed(0)} (${o.accepted}/${USERS} accepted${o.lost ? `, ${o.lost} lost` : ''})`).join(', ')}`;
  lines.push(
    `bench/radius on ${process.version}: ${USERS} users × ${ROUNDS} rounds (+${WARMUP} warm-up), radclient -p ${PARALLEL}, one packet per user; setup ${setupSeconds.toFixed(1)} s`,
    `  load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on ${availableParallelism()} CPUs${Math.max(loadAtStart, loadavg()[0]!) > availableParallelism() ? ' — the machine is busy with other work: treat these numbers as rough' : ''}`,
    `  NOTE: Countersign's password hashing is scrypt N=1024 here (startTestServer lowers it for speed); production's default N makes the hash, not RADIUS, the limit.`,
    row('Countersign, Redis store, append (password + TOTP)    ', ours),
    row('FreeRADIUS 3, PAP from its users file (the ceiling)   ', theirs),
    `  ratio Countersign / FreeRADIUS                          ${ratio.toFixed(2)}   (target ≥ 0.50: ${ratio >= 0.5 ? 'met' : 'MISSED'})`,
    row(`FreeRADIUS 3, PAP, PBKDF2-SHA256 ×${iterations}, 1 thread`.padEnd(54), theirsHashed),
    `  ratio Countersign / FreeRADIUS with an equal hash cost  ${(rate / hashedCeiling).toFixed(2)}   (one scrypt N=1024 = ${scryptMs.toFixed(2)} ms of CPU here, ${availableParallelism()} CPUs)`,
    `  Countersign, second-factor-only (TOTP, no password)   ${n0(otpOnly.rate)} req/s   (${otpOnly.accepted}/${USERS} accepted; ratio ${(otpOnly.rate / ceiling).toFixed(2)})`,
    `  push-wait, Redis store, ${SAMPLES} samples (after ${WARM_SAMPLES} warm-up):`,
    `    phone sends approval → Access-Accept at the NAS     p50 ${pct(fromApproval, 50).toFixed(2)} ms   p99 ${p99.toFixed(2)} ms   max ${Math.max(...fromApproval).toFixed(2)} ms   (target p99 < 5 ms: ${p99 < 5 ? 'met' : 'MISSED'})`,
    `    approval recorded (engine) → Access-Accept at NAS   p50 ${pct(fromResolved, 50).toFixed(2)} ms   p99 ${pct(fromResolved, 99).toFixed(2)} ms`,
    `    (the first span is the approval's HTTP POST on loopback, its ES256 check and the store write, up to the reply datagram; the phone signs before the clock starts)`,
    `    (the bench's Access-Requests carried a correct Message-Authenticator: ${WARM_SAMPLES + SAMPLES - badMa}/${WARM_SAMPLES + SAMPLES})`,
  );
  const short = [...ours, ...theirs, ...theirsHashed, otpOnly].filter((o) => o.accepted !== USERS);
  if (short.length) lines.push(`  WARNING: ${short.length} run(s) had requests not accepted; last radclient output:\n${short.at(-1)!.out.slice(-1500)}`);
} catch (err) {
  lines.push(`bench/radius FAILED: ${(err as Error).stack ?? err}`);
  if (fr) lines.push(`--- FreeRADIUS output (last lines):\n${fr.output().slice(-2000)}`);
  process.exitCode = 1;
} finally {
  await fr?.stop().catch(() => {});
  await cs?.close().catch(() => {});
  const raw = new Redis(testRedisUrl(), { maxRetriesPerRequest: 1 });
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
}
console.log(lines.join('\n'));
process.exit(process.exitCode ?? 0);
