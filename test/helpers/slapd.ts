import type { LdapDirectoryConfig } from '../../src/config/schema.js';
/**
 * Debian's OpenLDAP slapd in a throwaway directory, for the LDAP directory plugin's tests and
 * bench/directory: slapd.conf (no cn=config), one mdb database for dc=example,dc=org with the
 * memberof and refint overlays (memberOf kept on users and on nested groups) and ppolicy (only
 * for the users given a policy), schemas core + cosine + inetorgperson + nis, on a free loopback
 * port; LDAPS too when asked, with a CA and a certificate for 127.0.0.1/localhost made by openssl.
 *
 * The fixture (slapadd, before slapd starts; groups added online afterwards so that the memberof
 * overlay fills memberOf):
 *   cn=service,ou=system          the service account (reads everything, paged total unlimited,
 *                                 at most 500 entries per unpaged search, like AD's MaxPageSize)
 *   uid=alice|bob|carol|dave,ou=people  inetOrgPerson (+ dave is the one with odd characters:
 *                                 uid "o(b*r\t)" – see ODD_UID)
 *   uid=locked|reset|expired,ou=people  under the strict password policy (ppolicy)
 *   uid=user0001…,ou=people       `bulkUsers` more users (same password), for paging
 *   groups (groupOfNames): staff = {alice, bob}; engineering = {staff, carol};
 *                          admins = {engineering}; ops = {dave}
 *
 * slapd runs as `setpriv --pdeathsig SIGKILL slapd -d …` (it dies with this process even when
 * this process is SIGKILLed) and is track()ed (killed on exit and on SIGTERM/SIGINT). stop()
 * ends it (SIGTERM, then SIGKILL); start() runs it again on the same ports with the same data.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change, Client } from 'ldapts';
import { hasCommand } from './peers.js';
import { freePort, stopChild, track } from './processes.js';

export const BASE_DN = 'dc=example,dc=org';
export const SERVICE_DN = `cn=service,ou=system,${BASE_DN}`;
export const SERVICE_PASSWORD = 'service-secret-1';
export const ROOT_DN = `cn=admin,${BASE_DN}`;
export const ROOT_PASSWORD = 'root-secret-1';
/** A uid made of filter metacharacters: a login equal to it must match it, and nothing else. */
export const ODD_UID = 'o(b*r\\t)';
export const BULK_PASSWORD = 'bulk-password-1';

export interface SlapdUser {
  uid: string;
  password: string;
  cn: string;
  mail: string;
  dn: string;
  /** Under the strict password policy (lockout after 3 failures, must change after reset, max age). */
  policy?: boolean;
  /** pwdChangedTime, for an expired password under the policy. */
  changedAt?: string;
}

export const USERS: SlapdUser[] = [
  { uid: 'alice', password: 'alice-pw-1', cn: 'Alice Liddell', mail: 'alice@example.org' },
  { uid: 'bob', password: 'bob-pw-1', cn: 'Bob Builder', mail: 'bob@example.org' },
  { uid: 'carol', password: 'carol-pw-1', cn: 'Carol Danvers', mail: 'carol@example.org' },
  { uid: ODD_UID, password: 'dave-pw-1', cn: 'Dave Odd', mail: 'dave@example.org' },
  { uid: 'locked', password: 'locked-pw-1', cn: 'Lou Locked', mail: 'locked@example.org', policy: true },
  { uid: 'reset', password: 'reset-pw-1', cn: 'Rita Reset', mail: 'reset@example.org', policy: true },
  { uid: 'expired', password: 'expired-pw-1', cn: 'Ed Expired', mail: 'expired@example.org', policy: true, changedAt: '20000101000000Z' },
].map((u) => ({ ...u, dn: `uid=${dnValue(u.uid)},ou=people,${BASE_DN}` }));

export const GROUPS: Record<string, string[]> = {
  staff: ['uid=alice', 'uid=bob'],
  engineering: ['cn=staff', 'uid=carol'],
  admins: ['cn=engineering'],
  ops: [`uid=${dnValue(ODD_UID)}`],
};

export interface SlapdOptions {
  /** More users (uid user0001…, password BULK_PASSWORD), for paging (default 0). */
  bulkUsers?: number;
  /** Put the bulk users in this group too (created when absent). */
  bulkGroup?: string;
  /** Also listen on ldaps:// with a generated CA (caFile). */
  tls?: boolean;
  /** slapd's log level for output() (default 'stats': one line per operation; 'none' for the bench). */
  logLevel?: 'stats' | 'none';
  /** slapd worker threads (default 8). */
  threads?: number;
  /** Bound on each start (default 20 s). */
  startTimeoutMs?: number;
}

export interface Slapd {
  /** ldap://127.0.0.1:port */
  url: string;
  /** ldaps://127.0.0.1:port (with tls). */
  ldapsUrl?: string;
  /** PEM of the CA that signed slapd's certificate (with tls). */
  caFile?: string;
  port: number;
  dir: string;
  baseDn: string;
  bindDn: string;
  bindPassword: string;
  users: SlapdUser[];
  /** What slapd wrote (stderr; with logLevel stats, every operation), the last 4 MB. */
  output(): string;
  /** BIND operations slapd logged for this DN so far (logLevel stats). */
  binds(dn: string): number;
  /** A client bound as the rootdn (for changes the tests make); unbind it. */
  admin(): Promise<Client>;
  running(): boolean;
  /** SIGTERM (then SIGKILL); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  start(): Promise<void>;
  /** stop() and remove the directory; idempotent. */
  destroy(): Promise<void>;
}

const SLAPD = '/usr/sbin/slapd';
const MODULES = '/usr/lib/ldap';
const SCHEMA = '/etc/ldap/schema';

export function slapdAvailable(): boolean {
  return (
    existsSync(SLAPD) &&
    hasCommand('slapadd') &&
    hasCommand('openssl') &&
    ['back_mdb.so', 'memberof.so', 'refint.so', 'ppolicy.so'].every((m) => existsSync(join(MODULES, m))) &&
    ['core', 'cosine', 'inetorgperson', 'nis'].every((s) => existsSync(join(SCHEMA, `${s}.schema`)))
  );
}

/** An RDN value escaped per RFC 4514. */
export function dnValue(v: string): string {
  return v.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`).replace(/^ | $/g, (c) => `\\${c}`);
}

const ssha = (password: string): string => {
  const salt = randomBytes(8);
  return `{SSHA}${Buffer.concat([createHash('sha1').update(password).update(salt).digest(), salt]).toString('base64')}`;
};

/** An LDIF attribute line, base64 when the value needs it. */
const line = (attr: string, value: string): string =>
  /^[\x21-\x39\x3b\x3d-\x7e][\x20-\x7e]*$/.test(value) && !value.endsWith(' ') ? `${attr}: ${value}` : `${attr}:: ${Buffer.from(value).toString('base64')}`;

function fixtureLdif(bulk: number): string {
  const entries: string[][] = [
    ['dn: ' + BASE_DN, 'objectClass: dcObject', 'objectClass: organization', 'dc: example', 'o: Example'],
    [`dn: ou=people,${BASE_DN}`, 'objectClass: organizationalUnit', 'ou: people'],
    [`dn: ou=groups,${BASE_DN}`, 'objectClass: organizationalUnit', 'ou: groups'],
    [`dn: ou=system,${BASE_DN}`, 'objectClass: organizationalUnit', 'ou: system'],
    [`dn: ou=policies,${BASE_DN}`, 'objectClass: organizationalUnit', 'ou: policies'],
    [
      `dn: ${SERVICE_DN}`,
      'objectClass: organizationalRole',
      'objectClass: simpleSecurityObject',
      'cn: service',
      line('userPassword', ssha(SERVICE_PASSWORD)),
    ],
    [
      `dn: cn=strict,ou=policies,${BASE_DN}`,
      'objectClass: organizationalRole',
      'objectClass: pwdPolicy',
      'cn: strict',
      'pwdAttribute: userPassword',
      'pwdLockout: TRUE',
      'pwdMaxFailure: 3',
      'pwdLockoutDuration: 0',
      'pwdMustChange: TRUE',
      'pwdMaxAge: 86400',
      'pwdGraceAuthNLimit: 0',
    ],
  ];
  for (const u of USERS) {
    const sn = u.cn.split(' ').at(-1)!;
    entries.push([
      line('dn', u.dn),
      'objectClass: inetOrgPerson',
      line('uid', u.uid),
      line('cn', u.cn),
      line('sn', sn),
      line('mail', u.mail),
      'title: Tester',
      line('userPassword', ssha(u.password)),
      ...(u.policy ? [`pwdPolicySubentry: cn=strict,ou=policies,${BASE_DN}`] : []),
      ...(u.changedAt ? [`pwdChangedTime: ${u.changedAt}`] : []),
    ]);
  }
  const bulkHash = ssha(BULK_PASSWORD);
  for (let i = 1; i <= bulk; i++) {
    const uid = `user${String(i).padStart(4, '0')}`;
    entries.push([`dn: uid=${uid},ou=people,${BASE_DN}`, 'objectClass: inetOrgPerson', `uid: ${uid}`, `cn: User ${i}`, `sn: ${i}`, `mail: ${uid}@example.org`, line('userPassword', bulkHash)]);
  }
  return entries.map((e) => e.join('\n')).join('\n\n') + '\n';
}

function slapdConf(dir: string, o: { tls: boolean; threads: number; logLevel: string }): string {
  return `# Written by test/helpers/slapd.ts; thrown away after the run.
include ${SCHEMA}/core.schema
include ${SCHEMA}/cosine.schema
include ${SCHEMA}/inetorgperson.schema
include ${SCHEMA}/nis.schema
modulepath ${MODULES}
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile ${dir}/slapd.pid
argsfile ${dir}/slapd.args
threads ${o.threads}
loglevel ${o.logLevel}
sizelimit 500
${
  o.tls
    ? `TLSCACertificateFile ${dir}/ca.pem
TLSCertificateFile ${dir}/server.pem
TLSCertificateKeyFile ${dir}/server.key`
    : ''
}

database mdb
suffix "${BASE_DN}"
rootdn "${ROOT_DN}"
rootpw ${ROOT_PASSWORD}
directory ${dir}/db
maxsize 268435456
index objectClass eq
index uid,mail,cn eq
index member,memberOf eq
index entryUUID eq
limits dn.exact="${SERVICE_DN}" size.soft=500 size.hard=500 size.prtotal=unlimited
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="${SERVICE_DN}" read
  by self read
  by * none

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay refint
refint_attributes member

overlay ppolicy
ppolicy_use_lockout
`;
}

function makeCerts(dir: string): void {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
  };
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Countersign test LDAP CA']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext']);
}

export async function startSlapd(opts: SlapdOptions = {}): Promise<Slapd> {
  if (!slapdAvailable()) throw new Error('slapd (with back_mdb, memberof, refint, ppolicy), slapadd and openssl are needed');
  const dir = mkdtempSync(join(tmpdir(), 'cs-slapd-'));
  const tls = opts.tls ?? false;
  const logLevel = opts.logLevel ?? 'stats';
  const bulk = opts.bulkUsers ?? 0;
  try {
    mkdirSync(join(dir, 'db'));
    if (tls) makeCerts(dir);
    writeFileSync(join(dir, 'slapd.conf'), slapdConf(dir, { tls, threads: opts.threads ?? 8, logLevel: logLevel === 'stats' ? 'stats' : '0' }));
    writeFileSync(join(dir, 'data.ldif'), fixtureLdif(bulk));
    const add = spawnSync('slapadd', ['-f', join(dir, 'slapd.conf'), '-l', join(dir, 'data.ldif')], { encoding: 'utf8', timeout: 60_000 });
    if (add.status !== 0) throw new Error(`slapadd failed (${add.status ?? add.signal}):\n${add.stdout}${add.stderr}`);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const port = await freePort();
  const ldapsPort = tls ? await freePort() : undefined;
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = ldapsPort ? `ldaps://127.0.0.1:${ldapsPort}` : undefined;
  const listen = [`${url}/`, ...(ldapsUrl ? [`${ldapsUrl}/`] : [])].join(' ');

  let child: ChildProcess | undefined;
  let out = '';
  const MAX_OUT = 4 << 20;
  const bindCounts = new Map<string, number>();
  let partial = '';
  const onData = (d: Buffer) => {
    const s = d.toString();
    out += s;
    if (out.length > MAX_OUT) out = out.slice(-MAX_OUT);
    if (logLevel !== 'stats') return;
    const lines = (partial + s).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      const m = / BIND dn="([^"]*)" method=/.exec(l);
      if (m) bindCounts.set(m[1]!.toLowerCase(), (bindCounts.get(m[1]!.toLowerCase()) ?? 0) + 1);
    }
  };

  const running = () => !!child && child.exitCode === null && child.signalCode === null;

  const probe = async (): Promise<boolean> => {
    const c = new Client({ url, connectTimeout: 500, timeout: 1000 });
    try {
      await c.bind(SERVICE_DN, SERVICE_PASSWORD);
      return true;
    } catch {
      return false;
    } finally {
      await c.unbind().catch(() => {});
    }
  };

  const start = async () => {
    if (running()) return;
    const args = ['--pdeathsig', 'SIGKILL', '--', SLAPD, '-d', logLevel === 'stats' ? 'stats' : '0', '-f', join(dir, 'slapd.conf'), '-h', listen];
    const c = track(spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    child = c;
    c.stdout!.on('data', onData);
    c.stderr!.on('data', onData);
    c.on('error', (err) => (out += `\nspawn failed: ${err.message}\n`));
    const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      if (c.exitCode !== null || c.signalCode !== null) break;
      if (await probe()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    await stopChild(c, 'SIGKILL');
    throw new Error(`slapd did not answer on ${url} within ${opts.startTimeoutMs ?? 20_000} ms (exit ${c.exitCode ?? c.signalCode}):\n${out.slice(-5000)}`);
  };

  const stop = async () => {
    if (child) await stopChild(child, 'SIGTERM', 5000);
  };

  let destroyed: Promise<void> | undefined;
  const slapd: Slapd = {
    url,
    ldapsUrl,
    caFile: tls ? join(dir, 'ca.pem') : undefined,
    port,
    dir,
    baseDn: BASE_DN,
    bindDn: SERVICE_DN,
    bindPassword: SERVICE_PASSWORD,
    users: USERS,
    output: () => out,
    binds: (dn) => bindCounts.get(dn.toLowerCase()) ?? 0,
    async admin() {
      const c = new Client({ url, connectTimeout: 2000, timeout: 10_000 });
      await c.bind(ROOT_DN, ROOT_PASSWORD);
      return c;
    },
    running,
    stop,
    start,
    destroy: () =>
      (destroyed ??= (async () => {
        await stop();
        rmSync(dir, { recursive: true, force: true });
      })()),
  };

  try {
    await start();
    // Groups online, so that the memberof overlay writes memberOf on their members.
    const admin = await slapd.admin();
    try {
      const groups: Record<string, string[]> = { ...GROUPS };
      if (opts.bulkGroup && bulk) {
        groups[opts.bulkGroup] = [...(groups[opts.bulkGroup] ?? []), ...Array.from({ length: bulk }, (_, i) => `uid=user${String(i + 1).padStart(4, '0')}`)];
      }
      for (const [cn, members] of Object.entries(groups)) {
        const dns = members.map((m) => `${m},${m.startsWith('cn=') ? 'ou=groups' : 'ou=people'},${BASE_DN}`);
        await admin.add(`cn=${cn},ou=groups,${BASE_DN}`, { objectClass: 'groupOfNames', cn, member: dns });
      }
    } finally {
      await admin.unbind().catch(() => {});
    }
  } catch (err) {
    await slapd.destroy();
    throw err;
  }
  return slapd;
}

/** Sets (or with null removes) one attribute of an entry as the rootdn. */
export async function setAttribute(slapd: Slapd, dn: string, type: string, values: string[] | null): Promise<void> {
  const admin = await slapd.admin();
  try {
    await admin.modify(
      dn,
      new Change({ operation: values === null ? 'delete' : 'replace', modification: new Attribute({ type, values: values ?? [] }) }),
    );
  } finally {
    await admin.unbind().catch(() => {});
  }
}

/** This server as a Countersign directory (the configuration an operator would write). */
export const ldapDirectory = (slapd: Slapd, over: Partial<LdapDirectoryConfig> = {}): LdapDirectoryConfig => ({
  name: 'corp',
  kind: 'ldap',
  flavor: 'openldap',
  realms: ['example.org', 'EXAMPLE'],
  urls: [slapd.url],
  startTls: false,
  bindDn: slapd.bindDn,
  bindPassword: slapd.bindPassword,
  baseDn: slapd.baseDn,
  timeoutMs: 1500,
  poolSize: 2,
  ...over,
});
