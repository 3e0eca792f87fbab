/**
 * bench/directory — npm run bench:directory   (needs Debian's slapd and openssl)
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
 * Environment: BENCH_SECONDS (per round, default 5), BENCH_ROUNDS (2), BENCH_CONCURRENCY (16),
 * BENCH_USERS (bulk users, default 500), BENCH_POOL (the plugin's poolSize, default 4).
 */
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Client, EqualityFilter } from 'ldapts';
import createLdapDirectory from '../plugins/directory-ldap/index.js';
import { ldapDirectorySchema } from '../src/config/schema.js';
import { BULK_PASSWORD, slapdAvailable, startSlapd } from '../test/helpers/slapd.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const USERS = Number(process.env.BENCH_USERS ?? 500);
const POOL = Number(process.env.BENCH_POOL ?? 4);
const HARD_LIMIT_MS = 60_000 + SECONDS * ROUNDS * 4 * 1000 * 2;

setTimeout(() => {
  console.error(`bench/directory: still running after ${HARD_LIMIT_MS / 1000} s; giving up`);
  process.exit(2);
}, HARD_LIMIT_MS).unref();

if (!slapdAvailable()) {
  console.error('bench/directory needs slapd (with its memberof, refint, ppolicy modules), slapadd and openssl');
  process.exit(1);
}

const loadAtStart = loadavg()[0]!;
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
process.exit(Object.values(totals).some((t) => t.failed) ? 1 : 0);
