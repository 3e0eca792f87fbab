import type { LdapDirectoryConfig } from '../../src/config/schema.js';
/**
 * A real Active Directory domain controller for the directory tests: Debian's
 * Samba 4.17, freshly provisioned per start in a temp dir, running in a
 * network namespace of its own (it binds the fixed AD ports) reached from this
 * process over a veth pair (test/helpers/netns.ts). Debian packages: samba
 * plus samba-ad-provision, samba-dsdb-modules and samba-vfs-modules (which
 * samba only recommends: without them provisioning fails), ldap-utils,
 * iproute2, openssl, util-linux (setpriv); run as root. sambaMissing() says
 * what is absent.
 *
 * What a start does (3 to 5 s on a 2-core machine, most of it
 * `samba-tool domain provision`; two at once, about twice that):
 * 1. deletes what a killed earlier run left: `cs-ad-<pid>-<n>` namespaces and
 *    `$TMPDIR/cs-ad-<pid>-*` directories whose pid is gone;
 * 2. creates the namespace and veth pair (10.231.x.y/30, unique per instance);
 * 3. makes a CA and the DC's certificate with openssl (SANs: the namespace's
 *    address and dc1.corp.example.org) while provisioning the domain inside the
 *    namespace (so nothing it looks up can leave the machine);
 * 4. rewrites smb.conf: only the LDAP server (389/636/3268/3269) runs, bound to
 *    the namespace's addresses, with our certificate, simple binds allowed
 *    without TLS, every path (pid files, sockets, logs) inside the temp dir;
 * 5. starts `samba -i -M single` in the namespace, as `setpriv --pdeathsig
 *    SIGKILL`, with a stdin pipe (interactive samba ends at EOF on stdin), so
 *    it dies with this process however that ends; then polls an
 *    Administrator bind over LDAPS until it answers;
 * 6. creates the service account CN=svc-countersign,CN=Users,….
 * The whole start is bounded (timeoutMs) and fails with the step, the reason
 * and the tail of samba's (or the provision's) output.
 *
 * Account changes go over LDAPS as Administrator with ldapmodify (ldap-utils),
 * except the backdating of pwdLastSet for expirePassword, which LDAP refuses
 * ("pwdLastSet must be 0 or -1 only") and which is written to the local
 * sam.ldb through Samba's Python bindings with the DSDB control that lets the
 * upgrade path set it (DSDB_CONTROL_PASSWORD_BYPASS_LAST_SET_OID).
 *
 * Samba answers a failed simple bind like Windows does: "80090308: LdapErr:
 * DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1".
 * It does not implement the WhoAmI extended operation: ldapwhoami binds, then
 * exits 1 with "Extended Operation(1.3.6.1.4.1.4203.1.11.3) not supported";
 * a bind that failed exits 49.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupStaleNetns, createNetns, pidAlive, type Netns } from './netns.js';
import { hasCommand } from './peers.js';
import { captureOutput, stopChild, track } from './processes.js';

export interface SambaDomain {
  /** ldaps://<ns address>:636 — use with caFile */
  ldapsUrl: string;
  /** ldap://<ns address>:389 — plain LDAP (simple binds without TLS are allowed too, so StartTLS and plain can be tested) */
  ldapUrl: string;
  /** PEM file of a CA the harness generated with openssl; the DC's certificate is signed by it, with SANs for the ns IP address and dc1.corp.example.org */
  caFile: string;
  realm: 'CORP.EXAMPLE.ORG';
  netbios: 'CORP';
  baseDn: 'DC=corp,DC=example,DC=org';
  /** A service account for searching, created by the harness: CN=svc-countersign,CN=Users,DC=corp,DC=example,DC=org (password never expires) */
  bindDn: string;
  bindPassword: string;
  /** the namespace's address, e.g. 10.231.x.2 */
  address: string;
  /** Domain Administrator (for tests that need to write to the directory themselves). */
  adminDn: string;
  adminPassword: string;
  /** The DN the harness gave an account or group (CN=<name>,CN=Users,<baseDn>), or a DN found by sAMAccountName. */
  dnOf(name: string): Promise<string>;
  /** Users are CN=<name>,CN=Users,<baseDn>, sAMAccountName <name>, userPrincipalName opts.upn or <name>@corp.example.org. */
  createUser(name: string, password: string, opts?: { givenName?: string; surname?: string; mail?: string; upn?: string }): Promise<void>;
  /** A global security group CN=<name>,CN=Users,<baseDn>, sAMAccountName <name>. */
  createGroup(name: string): Promise<void>;
  /** members: sAMAccountNames (or DNs) of users or groups (nesting). Already a member is fine. */
  addMembers(group: string, members: string[]): Promise<void>;
  /** Makes the user a member, then sets primaryGroupID to the group's RID (AD then drops the explicit member link and adds one to the old primary group, Domain Users). */
  setPrimaryGroup(user: string, group: string): Promise<void>;
  /** userAccountControl |= ACCOUNTDISABLE (2) → bind sub-code 533 */
  disable(user: string): Promise<void>;
  /** pwdLastSet = 0 → 773 */
  mustChangePassword(user: string): Promise<void>;
  /** pwdLastSet backdated past the effective maxPwdAge (local sam.ldb) → 532 */
  expirePassword(user: string): Promise<void>;
  /** accountExpires = a day ago → 701 */
  expireAccount(user: string): Promise<void>;
  /** A password settings object (lockout threshold 1, 30 min) applied to the user, then one wrong bind → 775 */
  lock(user: string): Promise<void>;
  /** sAMAccountName and CN change (and userPrincipalName when it was <old>@corp.example.org); objectGUID stays */
  rename(user: string, newName: string): Promise<void>;
  remove(user: string): Promise<void>;
  /**
   * The directory goes away until resume():
   * - 'stop' (default): samba is stopped (SIGTERM): connections are closed, new ones refused at once; resume() starts it again on the same database;
   * - 'freeze': SIGSTOP: connections are accepted by the kernel but nothing answers (timeouts); resume() sends SIGCONT;
   * - 'unplug': the namespace's end of the link goes down: packets vanish (connect timeouts, or EHOSTUNREACH once ARP gives up).
   * resume() returns once an Administrator bind answers again.
   */
  pause(mode?: 'stop' | 'freeze' | 'unplug'): Promise<void>;
  resume(): Promise<void>;
  /** The last lines samba wrote (stdout and stderr, all its runs). */
  logTail(): string;
  /** Milliseconds the start took, in all and per step (netns, tls, provision, samba, account). */
  startMs: number;
  startSteps: Record<string, number>;
  /** Kills samba, deletes the namespace (and veth) and the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const REALM = 'CORP.EXAMPLE.ORG' as const;
const NETBIOS = 'CORP' as const;
const BASE_DN = 'DC=corp,DC=example,DC=org' as const;
const DNS_DOMAIN = 'corp.example.org';
const DC_NAME = 'dc1';
const USERS = `CN=Users,${BASE_DN}`;
const ADMIN_DN = `CN=Administrator,${USERS}`;
const SVC_NAME = 'svc-countersign';
const NS_PREFIX = 'cs-ad';
const PYTHON = '/usr/bin/python3'; // Debian's, which has the samba module (not a pyenv one first on PATH)

const UF_ACCOUNTDISABLE = 0x2;
const UF_NORMAL_ACCOUNT = 0x200;
const UF_DONT_EXPIRE_PASSWD = 0x10000;
const UF_LOCKOUT = 0x10; // msDS-User-Account-Control-Computed
const UF_PASSWORD_EXPIRED = 0x800000; // msDS-User-Account-Control-Computed

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/* ------------------------------------------------------------- availability */

let missingCache: string[] | undefined;

/** What is missing for startSambaDomain (empty when it can run): commands, Debian packages, root. */
export function sambaMissing(): string[] {
  if (missingCache) return missingCache;
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const cmd of ['samba', 'samba-tool', 'ip', 'openssl', 'ldapsearch', 'ldapmodify', 'ldapwhoami']) {
    if (!hasCommand(cmd)) missing.push(cmd);
  }
  if (!existsSync(PYTHON)) missing.push(PYTHON);
  if (!missing.includes('samba')) {
    // `samba` installed without its Recommends cannot provision: the DSDB ldb modules and the
    // acl_xattr VFS module (for the sysvol ACLs) come in packages of their own.
    const b = spawnSync('samba', ['-b'], { encoding: 'utf8', timeout: 10_000 });
    const modules = /MODULESDIR:\s*(\S+)/.exec(b.stdout ?? '')?.[1];
    if (!modules) missing.push('samba -b (MODULESDIR)');
    else {
      if (!existsSync(join(modules, 'ldb', 'samba_dsdb.so'))) missing.push('samba-dsdb-modules');
      if (!existsSync(join(modules, 'vfs', 'acl_xattr.so'))) missing.push('samba-vfs-modules');
    }
    if (!existsSync('/usr/share/samba/setup/provision.ldif')) missing.push('samba-ad-provision');
  }
  missingCache = missing;
  return missing;
}

/** samba, samba-tool, ip, openssl, ldap-utils present (with Samba's DC modules), and running as root. */
export function sambaAvailable(): boolean {
  return sambaMissing().length === 0;
}

/* ----------------------------------------------------------------- children */

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  stdout: string;
  timedOut: boolean;
}

/** Runs a command to its end (SIGKILL after timeoutMs), tracked so it dies with this process. */
function run(cmd: string, args: string[], o: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = track(spawn(cmd, args, { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] }));
    let stdout = '';
    let out = '';
    let timedOut = false;
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d;
      out += d;
    });
    child.stderr!.on('data', (d: Buffer) => (out += d));
    child.on('error', (err) => (out += `\nspawn ${cmd} failed: ${err.message}`));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, Math.max(1, o.timeoutMs));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, stdout, timedOut });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(o.input ?? '');
  });
}

const tail = (s: string, n = 4000) => (s.length > n ? `…${s.slice(-n)}` : s);

/* --------------------------------------------------------------- LDAP bits */

/** An LDIF line, base64 when the value is not a SAFE-STRING (RFC 2849). */
function ldifLine(attr: string, value: string | Buffer): string {
  const s = typeof value === 'string' ? value : undefined;
  if (s !== undefined && /^[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(s) && !s.endsWith(' ')) {
    return `${attr}: ${s}`;
  }
  if (s === '') return `${attr}:`;
  return `${attr}:: ${(typeof value === 'string' ? Buffer.from(value, 'utf8') : value).toString('base64')}`;
}

/** An RDN value escaped for a DN string (RFC 4514). */
function escapeRdn(v: string): string {
  let s = v.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (s.startsWith(' ') || s.startsWith('#')) s = `\\${s}`;
  if (s.endsWith(' ')) s = `${s.slice(0, -1)}\\ `;
  return s;
}

/** An assertion value escaped for a search filter (RFC 4515). */
export function escapeFilter(v: string): string {
  return v.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Splits "CN=a\,b,CN=Users,…" into its first RDN and the parent DN. */
function splitDn(dn: string): { rdn: string; parent: string } {
  for (let i = 0; i < dn.length; i++) {
    if (dn[i] === '\\') i++;
    else if (dn[i] === ',') return { rdn: dn.slice(0, i), parent: dn.slice(i + 1) };
  }
  return { rdn: dn, parent: '' };
}

/** unicodePwd value: the quoted password in UTF-16LE. */
const unicodePwd = (password: string) => Buffer.from(`"${password}"`, 'utf16le');

/** Windows FILETIME (100 ns since 1601) of a JS time. */
const filetime = (ms: number) => (BigInt(Math.round(ms)) + 11_644_473_600_000n) * 10_000n;

export interface LdifEntry {
  dn: string;
  /** Attribute names in lower case → raw values. */
  attrs: Map<string, Buffer[]>;
}

/** Parses `ldapsearch -LLL -o ldif_wrap=no` output. */
export function parseLdif(text: string): LdifEntry[] {
  const entries: LdifEntry[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l && !l.startsWith('#'));
    if (!lines.length) continue;
    let dn = '';
    const attrs = new Map<string, Buffer[]>();
    for (const line of lines) {
      const m = /^([^:]+)(::?)\s?(.*)$/.exec(line);
      if (!m) continue;
      const [, name, sep, raw] = m as unknown as [string, string, string, string];
      const value = sep === '::' ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
      if (name.toLowerCase() === 'dn') dn = value.toString('utf8');
      else {
        const k = name.toLowerCase();
        attrs.set(k, [...(attrs.get(k) ?? []), value]);
      }
    }
    if (dn) entries.push({ dn, attrs });
  }
  return entries;
}

const str = (e: LdifEntry | undefined, attr: string) => e?.attrs.get(attr.toLowerCase())?.[0]?.toString('utf8');

/** The RID of an objectSid (last sub-authority, little endian). */
const ridOf = (sid: Buffer) => sid.readUInt32LE(sid.length - 4);

/* ------------------------------------------------------------ cleanup hooks */

interface Live {
  ns: Netns;
  dir: string;
  child(): ChildProcess | undefined;
}
const live = new Set<Live>();
let hooked = false;

function cleanupLiveSync(): void {
  for (const l of live) {
    try {
      l.child()?.kill('SIGKILL');
    } catch {
      // gone
    }
    try {
      l.ns.destroy();
    } catch {
      // best effort while exiting
    }
    rmSync(l.dir, { recursive: true, force: true });
  }
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', cleanupLiveSync);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupLiveSync();
      // Others (processes.ts's track) may still want to act on it and re-raise; if we are the
      // last listener, do what the signal would have done.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** Removes `$TMPDIR/cs-ad-<pid>-*` left by processes that are gone (namespaces: cleanupStaleNetns). */
function cleanupStaleDirs(): void {
  const base = tmpdir();
  let names: string[] = [];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  const mine = new Set([...live].map((l) => l.dir));
  for (const name of names) {
    const m = /^cs-ad-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const path = join(base, name);
    if (pid === process.pid ? !mine.has(path) : !pidAlive(pid)) rmSync(path, { recursive: true, force: true });
  }
}

/* --------------------------------------------------------------- smb.conf */

/** Takes the provisioned smb.conf's [global] (paths, realm, roles) and makes it ours; no shares (no smbd). */
function rewriteSmbConf(file: string, o: { dir: string; address: string; tls: { cert: string; key: string; ca: string } }): void {
  const text = readFileSync(file, 'utf8');
  const global = /\[global\]\n([\s\S]*?)(?=\n\[|$)/.exec(text)?.[1] ?? '';
  const ours: Record<string, string> = {
    'interfaces': `lo ${o.address}`,
    'bind interfaces only': 'yes',
    // Only the LDAP server (389, 636, 3268, 3269): no smbd, KDC, DNS, NBT, winbindd, DNS updates.
    'server services': 'ldap',
    'dns forwarder': '',
    'pid directory': join(o.dir, 'run'),
    'ncalrpc dir': join(o.dir, 'run', 'ncalrpc'),
    'winbindd socket directory': join(o.dir, 'run', 'winbindd'),
    'ntp signd socket directory': join(o.dir, 'run', 'ntp_signd'),
    'log file': join(o.dir, 'log', 'samba.log'),
    'log level': '1',
    'panic action': '',
    'unix password sync': 'no',
    'tls enabled': 'yes',
    'tls certfile': o.tls.cert,
    'tls keyfile': o.tls.key,
    'tls cafile': o.tls.ca,
    // Simple binds over plain LDAP (the plain-LDAP and StartTLS tests); LDAPS is the main path.
    'ldap server require strong auth': 'no',
    'ldb:nosync': 'true',
  };
  const keep = global
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith(';'))
    .filter((l) => !(l.split('=')[0]!.trim().toLowerCase() in ours));
  const lines = [...keep, ...Object.entries(ours).filter(([, v]) => v !== '').map(([k, v]) => `${k} = ${v}`)];
  writeFileSync(file, `# Written by test/helpers/samba.ts from the provisioned one.\n[global]\n${lines.map((l) => `\t${l}`).join('\n')}\n`);
}

/* ----------------------------------------------------------- expirePassword */

// Sets pwdLastSet of argv[3] to one day more than the effective maximum password age ago, in the
// local sam.ldb. Over LDAP pwdLastSet takes only 0 or -1; the control below is the one Samba's
// own upgrade path uses to carry pwdLastSet over (DSDB_CONTROL_PASSWORD_BYPASS_LAST_SET_OID).
const BACKDATE_PY = String.raw`
import sys, time, ldb
from samba.samdb import SamDB
from samba.auth import system_session
from samba.param import LoadParm
conf, url, dn = sys.argv[1], sys.argv[2], sys.argv[3]
lp = LoadParm(); lp.load(conf)
db = SamDB(url=url, session_info=system_session(), lp=lp)
user = db.search(dn, scope=ldb.SCOPE_BASE, attrs=["msDS-ResultantPSO"])[0]
if "msDS-ResultantPSO" in user:
    pso = db.search(str(user["msDS-ResultantPSO"][0]), scope=ldb.SCOPE_BASE, attrs=["msDS-MaximumPasswordAge"])[0]
    max_age = int(pso["msDS-MaximumPasswordAge"][0])
else:
    max_age = int(db.search(db.domain_dn(), scope=ldb.SCOPE_BASE, attrs=["maxPwdAge"])[0]["maxPwdAge"][0])
# Negative 100 ns intervals; Samba treats anything from -1 day up (and INT64_MIN) as "never".
if max_age >= -864000000000 or max_age == -0x8000000000000000:
    sys.exit("the effective maxPwdAge (%d) never expires passwords" % max_age)
value = int((time.time() + 11644473600) * 10000000) + max_age - 864000000000
m = ldb.Message(); m.dn = ldb.Dn(db, dn)
m["pwdLastSet"] = ldb.MessageElement(str(value), ldb.FLAG_MOD_REPLACE, "pwdLastSet")
db.modify(m, controls=["local_oid:1.3.6.1.4.1.7165.4.3.20:0"])
print(value)
`;

/* -------------------------------------------------------------------- start */

const strongPassword = () => `Passw0rd!-${randomBytes(12).toString('base64url')}`;

export async function startSambaDomain(opts: { timeoutMs?: number } = {}): Promise<SambaDomain> {
  const missing = sambaMissing();
  if (missing.length) throw new Error(`cannot start a samba AD DC, missing: ${missing.join(', ')}`);
  const t0 = Date.now();
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const deadline = t0 + timeoutMs;
  const left = () => deadline - Date.now();

  const steps: Record<string, number> = {};
  let stepStart = t0;
  const mark = (name: string) => {
    const now = Date.now();
    steps[name] = now - stepStart;
    stepStart = now;
  };

  hookExit();
  cleanupStaleNetns(NS_PREFIX);
  cleanupStaleDirs();

  const dir = mkdtempSync(join(tmpdir(), `cs-ad-${process.pid}-`));
  let ns: Netns;
  try {
    ns = createNetns(NS_PREFIX);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  mark('netns');
  let samba: ChildProcess | undefined;
  const entry: Live = { ns, dir, child: () => samba };
  live.add(entry);

  const address = ns.address;
  const target = join(dir, 'dc');
  const tlsDir = join(dir, 'tls');
  const smbConf = join(target, 'etc', 'smb.conf');
  const samLdb = join(target, 'private', 'sam.ldb');
  const caFile = join(tlsDir, 'ca.pem');
  const adminPassword = strongPassword();
  const bindPassword = strongPassword();
  const bindDn = `CN=${SVC_NAME},${USERS}`;
  const ldapsUrl = `ldaps://${address}:636`;
  const ldapUrl = `ldap://${address}:389`;
  const ldapEnv: NodeJS.ProcessEnv = { ...process.env, LDAPTLS_CACERT: caFile, LDAPTLS_REQCERT: 'demand' };
  for (const k of Object.keys(ldapEnv)) if (/^LDAP(?!TLS_CACERT$|TLS_REQCERT$)/.test(k)) delete ldapEnv[k];

  // A throwaway database: no fsync (tdb's TDB_NO_FSYNC; ldb:nosync in smb.conf), which matters on a busy disk.
  const noSyncEnv: NodeJS.ProcessEnv = { ...process.env, TDB_NO_FSYNC: '1', PYTHONDONTWRITEBYTECODE: '1' };
  const earlierLogs: string[] = [];
  let samlog: () => string = () => '';
  const logTail = () => tail([...earlierLogs, samlog()].join('\n--- samba restarted ---\n'), 8000);

  let stopped = false;
  let paused: 'stop' | 'freeze' | 'unplug' | undefined;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (samba) await stopChild(samba, 'SIGKILL');
    ns.destroy();
    rmSync(dir, { recursive: true, force: true });
    live.delete(entry);
  };

  const fail = async (step: string, why: string, log: string): Promise<never> => {
    await stop();
    throw new Error(
      `samba AD DC: ${step} failed after ${Date.now() - t0} ms (start timeout ${timeoutMs} ms): ${why}\n` +
        `--- ${step === 'provision' ? 'samba-tool domain provision' : 'samba'} output (tail) ---\n${tail(log) || '(nothing)'}`,
    );
  };

  /* --- TLS: a CA and the DC's certificate (in parallel with the provision) */
  const makeTls = async (): Promise<string | undefined> => {
    mkdirSync(tlsDir, { recursive: true });
    const cmds: string[][] = [
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(tlsDir, 'ca.key'), '-out', caFile, '-days', '2', '-subj', '/CN=Countersign test CA ' + ns.name,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(tlsDir, 'dc.key'), '-out', join(tlsDir, 'dc.csr'), '-subj', `/CN=${DC_NAME}.${DNS_DOMAIN}`],
      ['x509', '-req', '-in', join(tlsDir, 'dc.csr'), '-CA', caFile, '-CAkey', join(tlsDir, 'ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-out', join(tlsDir, 'dc.pem'), '-days', '2', '-extfile', join(tlsDir, 'dc.ext')],
    ];
    writeFileSync(
      join(tlsDir, 'dc.ext'),
      `subjectAltName=DNS:${DC_NAME}.${DNS_DOMAIN},IP:${address}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n`,
    );
    for (const args of cmds) {
      const r = await run('openssl', args, { timeoutMs: left() });
      if (r.code !== 0) return `openssl ${args.slice(0, 2).join(' ')}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}\n${r.out}`;
    }
    chmodSync(join(tlsDir, 'dc.key'), 0o600); // samba refuses a key file others can read
    steps.tls = Date.now() - stepStart; // runs beside the provision
    return undefined;
  };

  /* --- provision, inside the namespace */
  const provision = () =>
    run(
      'ip',
      ['netns', 'exec', ns.name,
        'samba-tool', 'domain', 'provision', '--use-rfc2307', `--realm=${REALM}`, `--domain=${NETBIOS}`, '--server-role=dc',
        '--dns-backend=SAMBA_INTERNAL', `--targetdir=${target}`, `--adminpass=${adminPassword}`, `--host-name=${DC_NAME}`,
        `--host-ip=${address}`, '--option=ldb:nosync = true',
      ],
      { timeoutMs: left(), env: noSyncEnv },
    );

  mkdirSync(target, { recursive: true });
  const [tlsError, prov] = await Promise.all([makeTls(), provision()]);
  if (prov.code !== 0) return fail('provision', prov.timedOut ? 'timed out' : `exit ${prov.code ?? prov.signal}`, prov.out);
  if (tlsError) return fail('certificates', tlsError, '');
  mark('provision');
  for (const d of ['run', 'log']) mkdirSync(join(dir, d), { recursive: true });
  rewriteSmbConf(smbConf, { dir, address, tls: { cert: join(tlsDir, 'dc.pem'), key: join(tlsDir, 'dc.key'), ca: caFile } });

  /* --- samba */
  const hasSetpriv = hasCommand('setpriv');
  const spawnSamba = () => {
    const argv = ns.execArgs(['samba', '-i', '-M', 'single', '-s', smbConf]);
    const [cmd, ...args] = hasSetpriv ? ['setpriv', '--pdeathsig', 'SIGKILL', '--', ...argv] : argv;
    if (samba) earlierLogs.push(samlog());
    // stdin stays an open pipe: interactive samba exits at EOF there, i.e. when we are gone.
    samba = track(spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: noSyncEnv }));
    samba.stdin!.on('error', () => {});
    samba.on('error', () => {});
    samlog = captureOutput(samba);
  };

  const ldap = (tool: string, args: string[], o: { input?: string; timeoutMs?: number } = {}) =>
    run(tool, ['-o', 'nettimeout=5', ...args], { env: ldapEnv, input: o.input, timeoutMs: Math.min(o.timeoutMs ?? 20_000, 20_000) });

  const waitReady = async (until: number, what: string): Promise<void> => {
    let last = '';
    while (Date.now() < until) {
      if (samba && (samba.exitCode !== null || samba.signalCode !== null)) {
        throw new Error(`${what}: samba exited (${samba.exitCode ?? samba.signalCode}) before it answered`);
      }
      const r = await ldap('ldapsearch', ['-H', ldapsUrl, '-x', '-D', ADMIN_DN, '-w', adminPassword, '-b', '', '-s', 'base', '1.1'], {
        timeoutMs: Math.max(500, Math.min(5000, until - Date.now())),
      });
      if (r.code === 0) return;
      last = r.out.trim();
      await sleep(100);
    }
    throw new Error(`${what}: no LDAPS bind answered at ${ldapsUrl} in time (last: ${last || 'nothing'})`);
  };

  spawnSamba();
  try {
    await waitReady(deadline, 'start');
  } catch (err) {
    return fail('samba start', (err as Error).message, samlog());
  }
  mark('samba');

  /* --- the operations */
  const modify = async (ldif: string): Promise<void> => {
    const r = await ldap('ldapmodify', ['-H', ldapsUrl, '-x', '-D', ADMIN_DN, '-w', adminPassword], { input: ldif });
    if (r.code !== 0) throw Object.assign(new Error(`ldapmodify failed (exit ${r.code}): ${r.out.trim()}\nLDIF:\n${ldif.replace(/^(unicodePwd::).*$/gm, '$1 …')}`), { ldapCode: r.code });
  };

  const search = async (base: string, filter: string, attrs: string[], scope: 'base' | 'sub' = 'sub'): Promise<LdifEntry[]> => {
    const r = await ldap('ldapsearch', ['-LLL', '-o', 'ldif_wrap=no', '-H', ldapsUrl, '-x', '-D', ADMIN_DN, '-w', adminPassword, '-b', base, '-s', scope, filter, ...(attrs.length ? attrs : ['1.1'])]);
    if (r.code === 32) return []; // noSuchObject
    if (r.code !== 0) throw new Error(`ldapsearch -b '${base}' '${filter}' failed (exit ${r.code}): ${r.out.trim()}`);
    return parseLdif(r.stdout);
  };

  const dnOf = async (name: string): Promise<string> => {
    if (name.includes('=')) return name;
    const found = await search(BASE_DN, `(sAMAccountName=${escapeFilter(name)})`, []);
    if (!found[0]) throw new Error(`no account or group with sAMAccountName '${name}'`);
    return found[0].dn;
  };

  const one = async (dn: string, attrs: string[]): Promise<LdifEntry> => {
    const e = (await search(dn, '(objectClass=*)', attrs, 'base'))[0];
    if (!e) throw new Error(`no entry ${dn}`);
    return e;
  };

  const addUser = async (name: string, password: string, o: { givenName?: string; surname?: string; mail?: string; upn?: string } = {}, uac = UF_NORMAL_ACCOUNT) => {
    const lines = [
      ldifLine('dn', `CN=${escapeRdn(name)},${USERS}`),
      'changetype: add',
      'objectClass: user',
      ldifLine('sAMAccountName', name),
      ldifLine('userPrincipalName', o.upn ?? `${name}@${DNS_DOMAIN}`),
      ...(o.givenName ? [ldifLine('givenName', o.givenName)] : []),
      ...(o.surname ? [ldifLine('sn', o.surname)] : []),
      ...(o.givenName || o.surname ? [ldifLine('displayName', [o.givenName, o.surname].filter(Boolean).join(' '))] : []),
      ...(o.mail ? [ldifLine('mail', o.mail)] : []),
      ldifLine('unicodePwd', unicodePwd(password)),
      `userAccountControl: ${uac}`,
    ];
    await modify(`${lines.join('\n')}\n`);
  };

  const addMembers = async (group: string, members: string[]): Promise<void> => {
    if (!members.length) return;
    const groupDn = await dnOf(group);
    const dns = await Promise.all(members.map(dnOf));
    for (const m of dns) {
      try {
        await modify(`${ldifLine('dn', groupDn)}\nchangetype: modify\nadd: member\n${ldifLine('member', m)}\n-\n`);
      } catch (err) {
        // 20 attributeOrValueExists; Samba says 68 (entryAlreadyExists) for a link that is there.
        const code = (err as { ldapCode?: number }).ldapCode;
        if (code !== 20 && code !== 68) throw err;
      }
    }
  };

  const replace = async (dn: string, attr: string, value: string) =>
    modify(`${ldifLine('dn', dn)}\nchangetype: modify\nreplace: ${attr}\n${ldifLine(attr, value)}\n-\n`);

  const computedFlags = async (dn: string) => Number(str(await one(dn, ['msDS-User-Account-Control-Computed']), 'msDS-User-Account-Control-Computed') ?? 0);

  let lockoutPso: string | undefined;

  const domain: SambaDomain = {
    ldapsUrl,
    ldapUrl,
    caFile,
    realm: REALM,
    netbios: NETBIOS,
    baseDn: BASE_DN,
    bindDn,
    bindPassword,
    address,
    adminDn: ADMIN_DN,
    adminPassword,
    startMs: 0,
    startSteps: steps,
    dnOf,
    logTail,

    createUser: (name, password, o) => addUser(name, password, o),

    async createGroup(name) {
      // groupType: global security group (ADS_GROUP_TYPE_GLOBAL_GROUP | ADS_GROUP_TYPE_SECURITY_ENABLED)
      await modify(`${ldifLine('dn', `CN=${escapeRdn(name)},${USERS}`)}\nchangetype: add\nobjectClass: group\n${ldifLine('sAMAccountName', name)}\ngroupType: -2147483646\n`);
    },

    addMembers,

    async setPrimaryGroup(user, group) {
      await addMembers(group, [user]);
      const sid = (await one(await dnOf(group), ['objectSid'])).attrs.get('objectsid')?.[0];
      if (!sid) throw new Error(`group ${group} has no objectSid`);
      await replace(await dnOf(user), 'primaryGroupID', String(ridOf(sid)));
    },

    async disable(user) {
      const dn = await dnOf(user);
      const uac = Number(str(await one(dn, ['userAccountControl']), 'userAccountControl') ?? UF_NORMAL_ACCOUNT);
      await replace(dn, 'userAccountControl', String(uac | UF_ACCOUNTDISABLE));
    },

    async mustChangePassword(user) {
      await replace(await dnOf(user), 'pwdLastSet', '0');
    },

    async expirePassword(user) {
      const dn = await dnOf(user);
      const r = await run(PYTHON, ['-c', BACKDATE_PY, smbConf, samLdb, dn], { timeoutMs: 30_000, env: noSyncEnv });
      if (r.code !== 0) throw new Error(`expirePassword(${user}): backdating pwdLastSet in ${samLdb} failed (exit ${r.code}): ${r.out.trim()}`);
      if (!((await computedFlags(dn)) & UF_PASSWORD_EXPIRED)) throw new Error(`expirePassword(${user}): pwdLastSet was backdated but the DC does not compute the password as expired`);
    },

    async expireAccount(user) {
      await replace(await dnOf(user), 'accountExpires', String(filetime(Date.now() - 86_400_000)));
    },

    async lock(user) {
      const dn = await dnOf(user);
      if (!lockoutPso) {
        // A fine-grained password policy (Samba ≥ 4.9) so only the accounts locked here get a
        // lockout threshold; the rest mirrors the domain's policy. Wrong binds in other tests stay harmless.
        const d = await one(BASE_DN, ['maxPwdAge', 'minPwdAge', 'minPwdLength', 'pwdHistoryLength', 'pwdProperties']);
        const pso = `CN=cs-lockout,CN=Password Settings Container,CN=System,${BASE_DN}`;
        await modify(
          [
            ldifLine('dn', pso),
            'changetype: add',
            'objectClass: msDS-PasswordSettings',
            'msDS-PasswordSettingsPrecedence: 10',
            'msDS-PasswordReversibleEncryptionEnabled: FALSE',
            `msDS-PasswordHistoryLength: ${str(d, 'pwdHistoryLength') ?? 24}`,
            `msDS-PasswordComplexityEnabled: ${Number(str(d, 'pwdProperties') ?? 1) & 1 ? 'TRUE' : 'FALSE'}`,
            `msDS-MinimumPasswordLength: ${str(d, 'minPwdLength') ?? 7}`,
            `msDS-MinimumPasswordAge: ${str(d, 'minPwdAge') ?? 0}`,
            `msDS-MaximumPasswordAge: ${str(d, 'maxPwdAge') ?? -36288000000000}`,
            'msDS-LockoutThreshold: 1',
            'msDS-LockoutObservationWindow: -18000000000',
            'msDS-LockoutDuration: -18000000000',
            ldifLine('msDS-PSOAppliesTo', dn),
            '',
          ].join('\n'),
        );
        lockoutPso = pso;
      } else {
        try {
          await modify(`${ldifLine('dn', lockoutPso)}\nchangetype: modify\nadd: msDS-PSOAppliesTo\n${ldifLine('msDS-PSOAppliesTo', dn)}\n-\n`);
        } catch (err) {
          const code = (err as { ldapCode?: number }).ldapCode;
          if (code !== 20 && code !== 68) throw err;
        }
      }
      const wrong = await ldap('ldapwhoami', ['-H', ldapUrl, '-x', '-D', dn, '-w', `Wrong-${randomBytes(9).toString('base64url')}`]);
      if (wrong.code !== 49) throw new Error(`lock(${user}): the wrong bind did not fail as expected (exit ${wrong.code}): ${wrong.out.trim()}`);
      if (!((await computedFlags(dn)) & UF_LOCKOUT)) throw new Error(`lock(${user}): a wrong bind did not lock the account`);
    },

    async rename(user, newName) {
      const dn = await dnOf(user);
      const e = await one(dn, ['sAMAccountName', 'userPrincipalName']);
      const oldSam = str(e, 'sAMAccountName') ?? user;
      const upn = str(e, 'userPrincipalName');
      const { parent } = splitDn(dn);
      const newDn = `CN=${escapeRdn(newName)},${parent}`;
      const ldif = [
        ldifLine('dn', dn),
        'changetype: modrdn',
        ldifLine('newrdn', `CN=${escapeRdn(newName)}`),
        'deleteoldrdn: 1',
        '',
        ldifLine('dn', newDn),
        'changetype: modify',
        'replace: sAMAccountName',
        ldifLine('sAMAccountName', newName),
        '-',
        ...(upn && upn.toLowerCase() === `${oldSam}@${DNS_DOMAIN}`.toLowerCase()
          ? ['replace: userPrincipalName', ldifLine('userPrincipalName', `${newName}@${DNS_DOMAIN}`), '-']
          : []),
        '',
      ];
      await modify(ldif.join('\n'));
    },

    async remove(user) {
      await modify(`${ldifLine('dn', await dnOf(user))}\nchangetype: delete\n`);
    },

    async pause(mode = 'stop') {
      if (stopped) throw new Error('the domain is stopped');
      if (paused) throw new Error(`already paused (${paused})`);
      if (mode === 'stop') await stopChild(samba!, 'SIGTERM', 3000);
      else if (mode === 'freeze') samba!.kill('SIGSTOP');
      else ns.setLink(false);
      paused = mode;
    },

    async resume() {
      if (stopped) throw new Error('the domain is stopped');
      const mode = paused;
      if (!mode) return;
      if (mode === 'stop') spawnSamba();
      else if (mode === 'freeze') samba!.kill('SIGCONT');
      else ns.setLink(true);
      paused = undefined;
      try {
        await waitReady(Date.now() + 30_000, `resume after ${mode}`);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- samba output (tail) ---\n${logTail()}`);
      }
    },

    stop,
  };

  try {
    await addUser(SVC_NAME, bindPassword, { givenName: 'Countersign', surname: 'Service' }, UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD);
  } catch (err) {
    return fail('service account', (err as Error).message, samlog());
  }
  mark('account');
  domain.startMs = Date.now() - t0;
  return domain;
}

/** This domain as a Countersign directory over LDAPS (the configuration an operator would write). */
export const adDirectory = (ad: SambaDomain, over: Partial<LdapDirectoryConfig> = {}): LdapDirectoryConfig => ({
  name: 'corp',
  kind: 'ldap',
  flavor: 'ad',
  realms: ['corp.example.org', 'CORP'],
  urls: [ad.ldapsUrl],
  startTls: false,
  caFile: ad.caFile,
  bindDn: ad.bindDn,
  bindPassword: ad.bindPassword,
  baseDn: ad.baseDn,
  timeoutMs: 3000,
  poolSize: 2,
  ...over,
});
