/**
 * bench/directory — npm run bench:directory   (needs Debian's slapd and openssl; part 2 radclient)
 *
 * First-factor checks per second against OpenLDAP (slapd started here by test/helpers/slapd,
 * loopback, no TLS, no operation log), with BENCH_CONCURRENCY (16) checks in flight:
 *
 *   plugin  directory-ldap's verify(): a search on a pooled service connection, a bind as the
 *           user on a connection of its own, then the user's nested groups (groupOfNames,
 *           one search per level: the bench users are in staff ⊂ engineering ⊂ admins, so
 *           four searches);
 *   bare    a plain ldapts loop doing the minimum for the same yes/no: a new connection,
 *           bind as the service account, search the uid, bind as the user's DN, unbind;
 *   bare/kept  the same, but each worker keeps one service connection bound for the whole run
 *           and binds the user on a new connection (what the plugin does, without its groups,
 *           failover and checks): the ceiling for this way of checking.
 *
 * Rounds alternate (plugin, bare, plugin, bare …) so that drift on a shared machine hits both;
 * each line is the sum over its rounds. The target is plugin/bare ≥ 0.8. A third line is the
 * plugin's verify() for a user in no group (one group search that finds nothing), to show what
 * the nesting walk costs.
 *
 * Part 2 (needs radclient): the RADIUS append rate with the directory as first factor. A second
 * slapd with BENCH_RADIUS_USERS × BENCH_RADIUS_ROUNDS bulk users (+ a warm-up set) in group
 * "bench", a Countersign test server (memory store) with directories [corp: that slapd, then
 * local] and one append-mode NAS on 127.0.0.1/32; OTP enabled for group "bench" through
 * POST /api/v1/users/factors (which returns every member's secret). Each round, Debian's
 * radclient -p BENCH_PARALLEL sends one Access-Request per distinct user (User-Password
 * "<password>,<current TOTP>", the code from src/core/otp's totp(): a code counts once per user
 * and step, so no user is used twice), and the rate is the accepted requests over the wall
 * time of the whole file. The reference, in the same run and interleaved with it: as many
 * users in the LOCAL directory (made through POST /api/v1/users with a password, scrypt N=1024
 * p=3 as startTestServer sets it, OTP enrolled the same way). The corp directory comes first,
 * so a local login also costs one LDAP search that finds nobody before the local check.
 *
 * Environment: BENCH_SECONDS (per round, default 5), BENCH_ROUNDS (2), BENCH_CONCURRENCY (16),
 * BENCH_USERS (bulk users, default 500), BENCH_POOL (the plugin's poolSize, default 4);
 * part 2: BENCH_RADIUS_USERS (per round and side, default 600), BENCH_RADIUS_ROUNDS (3),
 * BENCH_RADIUS_WARMUP (300), BENCH_PARALLEL (radclient -p, 32); BENCH_PART (both | checks | radius).
 */
import { spawn } from 'node:child_process';
import { randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, EqualityFilter } from 'ldapts';
import createLdapDirectory from '../plugins/directory-ldap/index.js';
import { ldapDirectorySchema } from '../src/config/schema.js';
import { base32Decode, totp, type OtpParams } from '../src/core/otp.js';
import { hasCommand } from '../test/helpers/peers.js';
import { track } from '../test/helpers/processes.js';
import { nasConfig } from '../test/helpers/radclient.js';
import { startTestServer, type TestServer } from '../test/helpers/server.js';
import { BULK_PASSWORD, ldapDirectory, slapdAvailable, startSlapd, type Slapd } from '../test/helpers/slapd.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const USERS = Number(process.env.BENCH_USERS ?? 500);
const POOL = Number(process.env.BENCH_POOL ?? 4);
const PART = process.env.BENCH_PART ?? 'both';
const RADIUS_USERS = Number(process.env.BENCH_RADIUS_USERS ?? 600);
const RADIUS_ROUNDS = Number(process.env.BENCH_RADIUS_ROUNDS ?? 3);
const RADIUS_WARMUP = Number(process.env.BENCH_RADIUS_WARMUP ?? 300);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 32);
const runChecks = PART !== 'radius';
const runRadius = PART !== 'checks';
const HARD_LIMIT_MS =
  (runChecks ? 60_000 + SECONDS * ROUNDS * 4 * 1000 * 2 : 0) +
  (runRadius ? 60_000 + 2 * (RADIUS_WARMUP + RADIUS_USERS * RADIUS_ROUNDS) * 15 : 0);

setTimeout(() => {
  console.error(`bench/directory: still running after ${HARD_LIMIT_MS / 1000} s; giving up`);
  process.exit(2);
}, HARD_LIMIT_MS).unref();

if (!['both', 'checks', 'radius'].includes(PART)) {
  console.error(`BENCH_PART is both, checks or radius, not '${PART}'`);
  process.exit(1);
}
if (!slapdAvailable()) {
  console.error('bench/directory needs slapd (with its memberof, refint, ppolicy modules), slapadd and openssl');
  process.exit(1);
}
if (runRadius && !hasCommand('radclient')) {
  console.error("bench/directory's RADIUS part needs Debian's radclient (freeradius-utils); BENCH_PART=checks runs the rest");
  process.exit(1);
}

const loadAtStart = loadavg()[0]!;
/** Part 1: first-factor checks per second, plugin against bare ldapts. True when none failed. */
async function checksPart(): Promise<boolean> {
  // The bulk users go into staff (⊂ engineering ⊂ admins).
  const slapd = await startSlapd({ bulkUsers: USERS, bulkGroup: 'staff', logLevel: 'none' });
  const uid = (i: number) => `user${String(1 + (i % USERS)).padStart(4, '0')}`;

  const directory = createLdapDirectory(
    ldapDirectorySchema.parse({
      name: 'bench',
      kind: 'ldap',
      flavor: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.bindDn,
      bindPassword: slapd.bindPassword,
      baseDn: slapd.baseDn,
      timeoutMs: 5000,
      poolSize: POOL,
    }),
  );

  /** `CONCURRENCY` workers calling `check(n)` for `ms`; returns checks done and failures. */
  async function drive(ms: number, check: (n: number, worker: number) => Promise<boolean>): Promise<{ ok: number; failed: number; ms: number }> {
    const t0 = performance.now();
    const end = t0 + ms;
    let n = 0;
    let ok = 0;
    let failed = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, worker) => {
        while (performance.now() < end) {
          if (await check(n++, worker).catch(() => false)) ok++;
          else failed++;
        }
      }),
    );
    return { ok, failed, ms: performance.now() - t0 };
  }

  const pluginCheck = async (n: number) => (await directory.verify(uid(n), BULK_PASSWORD)).ok;

  const bareCheck = async (n: number): Promise<boolean> => {
    const c = new Client({ url: slapd.url, timeout: 5000, connectTimeout: 5000 });
    try {
      await c.bind(slapd.bindDn, slapd.bindPassword);
      const r = await c.search(slapd.baseDn, { filter: new EqualityFilter({ attribute: 'uid', value: uid(n) }), attributes: ['uid'], sizeLimit: 2 });
      if (r.searchEntries.length !== 1) return false;
      await c.bind(r.searchEntries[0]!.dn, BULK_PASSWORD);
      return true;
    } catch {
      return false;
    } finally {
      await c.unbind().catch(() => {});
    }
  };

  const kept = new Map<number, Client>();
  const bareKeptCheck = async (n: number, worker: number): Promise<boolean> => {
    let svc = kept.get(worker);
    if (!svc?.isBound) {
      svc = new Client({ url: slapd.url, timeout: 5000, connectTimeout: 5000 });
      await svc.bind(slapd.bindDn, slapd.bindPassword);
      kept.set(worker, svc);
    }
    const r = await svc.search(slapd.baseDn, { filter: new EqualityFilter({ attribute: 'uid', value: uid(n) }), attributes: ['uid'], sizeLimit: 2 });
    if (r.searchEntries.length !== 1) return false;
    const c = new Client({ url: slapd.url, timeout: 5000, connectTimeout: 5000 });
    try {
      await c.bind(r.searchEntries[0]!.dn, BULK_PASSWORD);
      return true;
    } catch {
      return false;
    } finally {
      await c.unbind().catch(() => {});
    }
  };

  // A check of a user in no group at all: the plugin's cost without the nesting walk.
  const groupless = slapd.users.find((u) => u.uid === 'reset')!; // in no group (its pwdReset is not set here)
  const pluginNoGroups = async () => (await directory.verify(groupless.uid, groupless.password)).ok;

  // Warm-up: connections, slapd's caches, the JIT.
  await drive(1000, pluginCheck);
  await drive(1000, bareCheck);
  await drive(1000, bareKeptCheck);

  const totals = {
    plugin: { ok: 0, failed: 0, ms: 0 },
    bare: { ok: 0, failed: 0, ms: 0 },
    kept: { ok: 0, failed: 0, ms: 0 },
    nogroups: { ok: 0, failed: 0, ms: 0 },
  };
  const add = (k: keyof typeof totals, r: { ok: number; failed: number; ms: number }) => {
    totals[k].ok += r.ok;
    totals[k].failed += r.failed;
    totals[k].ms += r.ms;
  };
  for (let round = 0; round < ROUNDS; round++) {
    add('plugin', await drive(SECONDS * 1000, pluginCheck));
    add('bare', await drive(SECONDS * 1000, bareCheck));
    add('kept', await drive(SECONDS * 1000, bareKeptCheck));
    add('nogroups', await drive(SECONDS * 1000, pluginNoGroups));
  }

  await directory.close();
  await Promise.all([...kept.values()].map((c) => c.unbind().catch(() => {})));
  await slapd.destroy();

  const rate = (k: keyof typeof totals) => (totals[k].ok / totals[k].ms) * 1000;
  const line = (label: string, k: keyof typeof totals) =>
    `${label.padEnd(46)} ${rate(k).toFixed(0).padStart(6)} checks/s  (${totals[k].ok} in ${(totals[k].ms / 1000).toFixed(1)} s${totals[k].failed ? `, ${totals[k].failed} FAILED` : ''})`;
  const ratio = rate('plugin') / rate('bare');
  console.log(
    [
      `bench/directory — OpenLDAP ${slapd.url}, ${USERS} users, concurrency ${CONCURRENCY}, pool ${POOL}, ${ROUNDS} × ${SECONDS} s rounds`,
      `machine: ${availableParallelism()} cores, load ${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
      line('plugin verify() (3 nested groups resolved)', 'plugin'),
      line('bare ldapts (service bind, search, user bind)', 'bare'),
      line('bare ldapts, service connection kept', 'kept'),
      line('plugin verify() (user in no group)', 'nogroups'),
      `ratio plugin/bare: ${ratio.toFixed(2)} (target ≥ 0.80) ${ratio >= 0.8 ? 'OK' : 'BELOW TARGET'}`,
      `ratio plugin/bare-kept: ${(rate('plugin') / rate('kept')).toFixed(2)}`,
    ].join('\n'),
  );
  return !Object.values(totals).some((t) => t.failed);
}

/* -------------------------------------------------------------------------------------------
 * Part 2: the RADIUS append rate with the directory as first factor, against local users.
 */

const SECRET = 'bench-directory-nas-secret';

interface BenchUser {
  name: string;
  password: string;
  seed: Buffer;
  params: Pick<OtpParams, 'algorithm' | 'digits' | 'period'>;
}
type Run = Awaited<ReturnType<typeof radclientRun>>;

/** radclient -p PARALLEL -f file (bench/radius's way): the wall time of the whole file, and what came back. */
async function radclientRun(dir: string, port: number, packets: string[], tag: string) {
  const file = join(dir, `${tag}.txt`);
  writeFileSync(file, packets.join('\n\n') + '\n');
  const t = performance.now();
  // -t 10: a slow answer is counted, never retransmitted (a retransmit is a duplicate, not a new login).
  const child = track(spawn('radclient', ['-q', '-s', '-p', String(PARALLEL), '-r', '1', '-t', '10', '-f', file, `127.0.0.1:${port}`, 'auth', SECRET]));
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await new Promise((r) => child.on('close', r));
  clearTimeout(killer);
  const seconds = (performance.now() - t) / 1000;
  const num = (label: string) => Number(new RegExp(`${label}\\s*:\\s*(\\d+)`).exec(out)?.[1] ?? 0);
  const accepted = num('Accepted');
  return { tag, sent: packets.length, seconds, accepted, rejected: num('Rejected'), lost: num('Lost'), rate: accepted / seconds, out };
}

/** One Access-Request per user, the password and the code of this moment. */
const appendPackets = (users: BenchUser[]) => {
  const now = Date.now();
  return users.map((u) => `User-Name = "${u.name}", User-Password = "${u.password},${totp(u.seed, now, u.params)}", Message-Authenticator = 0x00`);
};

/** Runs `fn` over `items`, `limit` at a time. */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** The OTP results of POST /users/factors as bench users (each must have been enrolled just now). */
function enrolled(body: { results: { name: string; ok: boolean; error?: string; otp?: { secret: string; params: OtpParams } }[] }, password: (name: string) => string): Map<string, BenchUser> {
  const out = new Map<string, BenchUser>();
  for (const r of body.results) {
    if (!r.ok || !r.otp) throw new Error(`OTP not enrolled for ${r.name}: ${r.error ?? 'no new secret'}`);
    out.set(r.name, { name: r.name, password: password(r.name), seed: base32Decode(r.otp.secret), params: r.otp.params });
  }
  return out;
}

async function radiusPart(): Promise<boolean> {
  const total = RADIUS_WARMUP + RADIUS_USERS * RADIUS_ROUNDS;
  const load0 = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'cs-bench-directory-'));
  let slapd: Slapd | undefined;
  let cs: TestServer | undefined;
  const lines: string[] = [];
  let ok = true;
  try {
    // ------------------------------------------------------------------------------ setup
    let t = performance.now();
    slapd = await startSlapd({ bulkUsers: total, bulkGroup: 'bench', logLevel: 'none' });
    const slapdSeconds = (performance.now() - t) / 1000;
    const ldap = slapd;
    cs = await startTestServer({}, {}, (c) => {
      c.directories = [
        ldapDirectory(ldap, { timeoutMs: 5000, poolSize: POOL }),
        { name: 'local', kind: 'local', realms: [] },
      ];
      c.radius.clients = [nasConfig(SECRET, { name: 'bench', address: '127.0.0.1/32', mode: 'append' })];
    });
    const server = cs;

    // Directory users: records and OTP seeds for every (nested) member of "bench", in one call.
    t = performance.now();
    const byGroup = await server.api('POST', '/api/v1/users/factors', { group: 'bench', factor: 'otp', enabled: true });
    if (byGroup.status !== 200) throw new Error(`enabling OTP for group bench: ${byGroup.status} ${JSON.stringify(byGroup.body).slice(0, 500)}`);
    const dirUsers = enrolled(byGroup.body, () => BULK_PASSWORD);
    const groupSeconds = (performance.now() - t) / 1000;
    const bulkUid = (i: number) => `user${String(i + 1).padStart(4, '0')}`;
    const dirList = Array.from({ length: total }, (_, i) => {
      const u = dirUsers.get(bulkUid(i));
      if (!u) throw new Error(`group bench: no OTP secret came back for ${bulkUid(i)} (${dirUsers.size} users enrolled)`);
      return u;
    });

    // Local users: made through the admin API with a password (scrypt), then OTP for all in one call.
    t = performance.now();
    const localName = (i: number) => `local${String(i + 1).padStart(4, '0')}`;
    const localPassword = (name: string) => `pw-${name}-bench`;
    const localNames = Array.from({ length: total }, (_, i) => localName(i));
    await eachLimit(localNames, 16, async (name) => {
      const r = await server.api('POST', '/api/v1/users', { name, password: localPassword(name) });
      if (r.status !== 201) throw new Error(`creating local user ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    });
    const localOtp = await server.api('POST', '/api/v1/users/factors', { users: localNames, factor: 'otp', enabled: true });
    if (localOtp.status !== 200) throw new Error(`enabling OTP for the local users: ${localOtp.status} ${JSON.stringify(localOtp.body).slice(0, 500)}`);
    const localUsers = enrolled(localOtp.body, localPassword);
    const localList = localNames.map((n) => localUsers.get(n)!);
    const localSeconds = (performance.now() - t) / 1000;
    // What one local password check costs in CPU here, at the server's settings.
    const { scryptN, scryptP } = server.ctx.config.passwords;
    const salt = randomBytes(16);
    const hashOnce = () => scryptSync('calibrate-pw', salt, 32, { N: scryptN, r: 8, p: scryptP, maxmem: 256 * scryptN * 8 + (1 << 20) });
    hashOnce();
    t = performance.now();
    for (let i = 0; i < 20; i++) hashOnce();
    const scryptMs = (performance.now() - t) / 20;

    // ------------------------------------------------------------------ warm-up, then rounds
    const port = server.radiusPort!;
    const slice = (list: BenchUser[], r: number) => list.slice(RADIUS_WARMUP + r * RADIUS_USERS, RADIUS_WARMUP + (r + 1) * RADIUS_USERS);
    const warm = [
      await radclientRun(dir, port, appendPackets(dirList.slice(0, RADIUS_WARMUP)), 'warm-directory'),
      await radclientRun(dir, port, appendPackets(localList.slice(0, RADIUS_WARMUP)), 'warm-local'),
    ];
    const viaDirectory: Run[] = [];
    const viaLocal: Run[] = [];
    for (let r = 0; r < RADIUS_ROUNDS; r++) {
      // Alternating which goes first, so drift on a shared machine hits both.
      const d = async () => viaDirectory.push(await radclientRun(dir, port, appendPackets(slice(dirList, r)), `directory-${r}`));
      const l = async () => viaLocal.push(await radclientRun(dir, port, appendPackets(slice(localList, r)), `local-${r}`));
      if (r % 2 === 0) {
        await d();
        await l();
      } else {
        await l();
        await d();
      }
    }

    // ------------------------------------------------------------------------------ report
    const sum = (runs: Run[]) => ({
      accepted: runs.reduce((a, o) => a + o.accepted, 0),
      sent: runs.reduce((a, o) => a + o.sent, 0),
      seconds: runs.reduce((a, o) => a + o.seconds, 0),
    });
    const d = sum(viaDirectory);
    const l = sum(viaLocal);
    const dRate = d.accepted / d.seconds;
    const lRate = l.accepted / l.seconds;
    const row = (label: string, runs: Run[], s: ReturnType<typeof sum>) =>
      `  ${label.padEnd(52)} ${(s.accepted / s.seconds).toFixed(0).padStart(6)} req/s  (${s.accepted}/${s.sent} accepted in ${s.seconds.toFixed(2)} s; rounds: ${runs
        .map((o) => `${o.rate.toFixed(0)}${o.accepted !== o.sent ? ` [${o.accepted}/${o.sent}${o.rejected ? `, ${o.rejected} rejected` : ''}${o.lost ? `, ${o.lost} lost` : ''}]` : ''}`)
        .join(', ')})`;
    lines.push(
      `bench/directory part 2 — RADIUS append (password,TOTP) through Countersign (memory store), radclient -p ${PARALLEL}, ${RADIUS_ROUNDS} rounds × ${RADIUS_USERS} distinct users per side (+${RADIUS_WARMUP} warm-up each), one packet per user`,
      `  machine: ${availableParallelism()} cores, load ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end; setup: slapd with ${total} users ${slapdSeconds.toFixed(1)} s, OTP for group bench ${groupSeconds.toFixed(1)} s, ${total} local users + OTP ${localSeconds.toFixed(1)} s`,
      row(`directory first factor (OpenLDAP, pool ${POOL}, group bench)`, viaDirectory, d),
      row(`local first factor (scrypt N=${scryptN}, r=8, p=${scryptP})`, viaLocal, l),
      `  ratio directory / local: ${(dRate / lRate).toFixed(2)}   (a local login also pays one LDAP search that finds nobody: corp is listed first)`,
      `  one scrypt N=${scryptN} r=8 p=${scryptP} = ${scryptMs.toFixed(2)} ms of CPU here (one thread): at most ${((availableParallelism() * 1000) / scryptMs).toFixed(0)} local checks/s on ${availableParallelism()} cores`,
      `  warm-up: directory ${warm[0]!.rate.toFixed(0)} req/s (${warm[0]!.accepted}/${warm[0]!.sent}), local ${warm[1]!.rate.toFixed(0)} req/s (${warm[1]!.accepted}/${warm[1]!.sent})`,
    );
    const short = [...warm, ...viaDirectory, ...viaLocal].filter((o) => o.accepted !== o.sent);
    if (short.length) {
      ok = false;
      lines.push(`  WARNING: not every request was accepted in ${short.map((o) => `${o.tag} (${o.accepted}/${o.sent})`).join(', ')}; radclient's last output for ${short.at(-1)!.tag}:\n${short.at(-1)!.out.slice(-1500)}`);
    }
  } catch (err) {
    ok = false;
    lines.push(`bench/directory part 2 FAILED: ${(err as Error).stack ?? err}`);
    if (slapd) lines.push(`--- slapd output (last lines):\n${slapd.output().slice(-2000)}`);
  } finally {
    await cs?.close().catch(() => {});
    await slapd?.destroy().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(lines.join('\n'));
  return ok;
}

let passed = true;
if (runChecks) passed = (await checksPart()) && passed;
if (runRadius) passed = (await radiusPart()) && passed;
process.exit(passed ? 0 : 1);
