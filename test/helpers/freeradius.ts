import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import radius from 'radius';
import { spawnGroup } from './processes.js';

/**
 * Debian's FreeRADIUS 3 in a throwaway config directory: foreground, as root,
 * one auth listener on loopback and nothing else. Either a proxy in front of
 * Countersign (every request goes to one home server) or a PAP server
 * answering from its own users file (the reference for bench/radius).
 *
 * FreeRADIUS runs as `setpriv --pdeathsig SIGTERM timeout -k 5 <lifetime>
 * freeradius -f …`: it stops with stop(), when this process exits (exit hook),
 * when this process dies without running hooks (parent-death signal), and in
 * any case after `lifetimeSeconds`.
 */

/** A free UDP port on loopback (bound to port 0, then released). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, host, () => resolve());
  });
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface FreeRadiusOptions {
  /** UDP port to listen on (127.0.0.1); a free one when absent. */
  port?: number;
  /** The NAS allowed to talk to it: its address (default 127.0.0.1) and secret. */
  nasSecret: string;
  nasAddress?: string;
  /** Whether the NAS must send Message-Authenticator (default yes). */
  nasRequireMessageAuthenticator?: boolean;
  /** Proxy every request to this home server (Countersign) … */
  proxyTo?: {
    host?: string;
    port: number;
    secret: string;
    /** Seconds FreeRADIUS waits for the home server (1–60; FreeRADIUS clamps above 60). */
    responseWindow?: number;
    /** Add Message-Authenticator in pre-proxy (default yes). */
    addMessageAuthenticator?: boolean;
  };
  /**
   * … or answer PAP itself: users file lines `name Cleartext-Password := "pw"`
   * (or another known-good attribute of rlm_pap, e.g. PBKDF2-Password).
   */
  users?: {
    name: string;
    password: string;
    attribute?: 'Cleartext-Password' | 'PBKDF2-Password' | 'SSHA2-256-Password' | 'Crypt-Password';
    /** Reply attributes for this user's Access-Accept, e.g. ["Class", "0x6e7073"]. */
    reply?: [string, string][];
  }[];
  /**
   * Run as the upstream server of a Countersign (radius.upstreams): PAP, CHAP and MS-CHAP v1/v2
   * (with MPPE keys, rlm_mschap from the Cleartext-Password) from the users file, and every answer
   * signed with Message-Authenticator (FreeRADIUS 3.2.1 signs only EAP answers by itself; 3.2.5
   * and later, and NPS since the 2024 updates, sign all).
   */
  upstream?: boolean;
  /** radiusd.conf max_request_time (default 60: the most a proxied request can be held). */
  maxRequestTime?: number;
  /** Worker threads (default 4 to 16). */
  threads?: { start: number; max: number };
  /** Run with -X (full debug output in output(); slow). */
  debug?: boolean;
  /** Hard cap on FreeRADIUS's life, whatever happens to this process (default 600 s). */
  lifetimeSeconds?: number;
  /** How long to wait for the first Status-Server answer (default 15 s). */
  readyTimeoutMs?: number;
}

export interface FreeRadius {
  host: string;
  port: number;
  /** The throwaway raddb directory (removed by stop()). */
  dir: string;
  /** Process group of the wrapper and FreeRADIUS. */
  pgid: number;
  /** Everything FreeRADIUS printed so far. */
  output(): string;
  /** True while any process of the group is alive. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 3 s; removes the directory. Idempotent. */
  stop(): Promise<void>;
}

const isLoopback = (h: string) => (isIP(h) === 4 && h.startsWith('127.')) || h === '::1';
/** A double-quoted FreeRADIUS config / users-file string. */
const str = (s: string) => {
  if (/[\r\n\0]/.test(s)) throw new Error('FreeRADIUS strings cannot hold line breaks or NUL');
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
};
const safeName = (s: string) => {
  if (!/^[A-Za-z0-9._@+-]+$/.test(s)) throw new Error(`user name '${s}' needs quoting this helper does not do`);
  return s;
};

export function radiusdConf(dir: string, o: FreeRadiusOptions & { port: number }): { radiusd: string; proxy: string; users: string } {
  const proxying = Boolean(o.proxyTo);
  const threads = o.threads ?? { start: 4, max: 16 };
  const radiusd = `# Written by test/helpers/freeradius.ts; thrown away after the run.
prefix = /usr
exec_prefix = /usr
sysconfdir = ${dir}
localstatedir = ${dir}
sbindir = /usr/sbin
logdir = ${dir}
raddbdir = ${dir}
radacctdir = ${dir}
name = freeradius
confdir = ${dir}
modconfdir = ${dir}
certdir = ${dir}
cadir = ${dir}
run_dir = ${dir}
db_dir = ${dir}
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
pidfile = ${dir}/radiusd.pid
# No user/group: stays root, as started. -f keeps it in the foreground.
max_request_time = ${o.maxRequestTime ?? 60}
cleanup_delay = 2
max_requests = 65536
hostname_lookups = no
log {
  destination = stdout
  colourise = no
  auth = no
}
security {
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}
proxy_requests = ${proxying ? 'yes' : 'no'}
${proxying ? '$INCLUDE proxy.conf' : ''}
${
  proxying
    ? `# The socket towards the home server, on loopback (else FreeRADIUS opens one on *).
listen {
  type = proxy
  ipaddr = ${isIP(o.proxyTo!.host ?? '127.0.0.1') === 6 ? '::1' : '127.0.0.1'}
  port = 0
}`
    : ''
}
thread pool {
  start_servers = ${threads.start}
  max_servers = ${threads.max}
  min_spare_servers = 1
  max_spare_servers = ${threads.max}
  max_requests_per_server = 0
  auto_limit_acct = no
}
client nas {
  ipaddr = ${o.nasAddress ?? '127.0.0.1'}
  secret = ${str(o.nasSecret)}
  require_message_authenticator = ${o.nasRequireMessageAuthenticator === false ? 'no' : 'yes'}
  nas_type = other
}
modules {
  pap {
    normalise = yes
  }
${
  o.upstream
    ? `  chap {
  }
  mschap {
    use_mppe = yes
    require_encryption = yes
    require_strong = yes
  }`
    : ''
}
  files {
    filename = ${dir}/users
  }
}
server default {
  listen {
    type = auth
    ipaddr = 127.0.0.1
    port = ${o.port}
  }
  authorize {
${
  proxying
    ? `    # Everything goes to Countersign, names unchanged (no realm stripping).
    update control {
      &Proxy-To-Realm := "countersign"
    }`
    : `    files
${o.upstream ? '    chap\n    mschap\n' : ''}    pap`
}
  }
  authenticate {
${proxying ? '' : '    Auth-Type PAP {\n      pap\n    }'}
${o.upstream ? '    Auth-Type CHAP {\n      chap\n    }\n    Auth-Type MS-CHAP {\n      mschap\n    }' : ''}
  }
  post-auth {
${
  o.upstream
    ? `    # Filled in when the answer is encoded (BlastRADIUS: Countersign requires it by default).
    update reply {
      &Message-Authenticator := 0x00000000000000000000000000000000
    }
    Post-Auth-Type REJECT {
      update reply {
        &Message-Authenticator := 0x00000000000000000000000000000000
      }
    }`
    : ''
}
  }
  pre-proxy {
${
  proxying && o.proxyTo!.addMessageAuthenticator !== false
    ? `    # Countersign requires Message-Authenticator (BlastRADIUS); FreeRADIUS
    # fills in the value when it encodes the proxied packet.
    update proxy-request {
      &Message-Authenticator := 0x00000000000000000000000000000000
    }`
    : ''
}
  }
  post-proxy {
  }
}
`;
  const p = o.proxyTo;
  const proxy = p
    ? `# Written by test/helpers/freeradius.ts.
proxy server {
  default_fallback = no
}
home_server countersign {
  type = auth
  ipaddr = ${p.host ?? '127.0.0.1'}
  port = ${p.port}
  # The proxy's own socket stays on loopback too.
  src_ipaddr = ${isIP(p.host ?? '127.0.0.1') === 6 ? '::1' : '127.0.0.1'}
  secret = ${str(p.secret)}
  # How long a proxied request may wait for Countersign (push-wait holds it).
  response_window = ${p.responseWindow ?? 30}
  response_timeouts = 1
  zombie_period = 40
  revive_interval = 10
  status_check = none
}
home_server_pool countersign {
  type = fail-over
  home_server = countersign
}
realm countersign {
  auth_pool = countersign
  nostrip
}
`
    : '';
  // rlm_pap 3.2 sets Auth-Type by itself for Cleartext-Password only (not for PBKDF2-Password).
  const users = (o.users ?? [])
    .map((u) => {
      const attribute = u.attribute ?? 'Cleartext-Password';
      const authType = attribute === 'Cleartext-Password' ? '' : 'Auth-Type := PAP, ';
      const reply = (u.reply ?? []).map(([n, v]) => `\n        ${n} := ${/^0x[0-9a-f]+$/i.test(v) ? v : str(v)}`).join(',');
      return `${safeName(u.name)} ${authType}${attribute} := ${str(u.password)}${reply}\n`;
    })
    .join('');
  return { radiusd, proxy, users };
}

/** One Status-Server (with Message-Authenticator) and its answer, or null after timeoutMs. */
export async function statusServer(host: string, port: number, secret: string, timeoutMs = 300): Promise<string | null> {
  const sock = dgram.createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
  try {
    const packet = radius.encode({ code: 'Status-Server', secret, attributes: [], add_message_authenticator: true });
    return await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      sock.on('error', () => {
        clearTimeout(timer);
        resolve(null);
      });
      sock.on('message', (msg) => {
        clearTimeout(timer);
        try {
          resolve(radius.decode({ packet: msg, secret }).code);
        } catch {
          resolve(null);
        }
      });
      sock.send(packet, port, host);
    });
  } finally {
    sock.close();
  }
}

export async function startFreeRadius(opts: FreeRadiusOptions): Promise<FreeRadius> {
  if (opts.proxyTo && !isLoopback(opts.proxyTo.host ?? '127.0.0.1')) throw new Error('the home server must be on loopback');
  if (!isLoopback(opts.nasAddress ?? '127.0.0.1')) throw new Error('the NAS must be on loopback');
  const host = '127.0.0.1';
  const port = opts.port ?? (await freeUdpPort(host));
  const dir = mkdtempSync(join(tmpdir(), 'cs-freeradius-'));
  const files = radiusdConf(dir, { ...opts, port });
  writeFileSync(join(dir, 'radiusd.conf'), files.radiusd);
  writeFileSync(join(dir, 'users'), files.users);
  if (files.proxy) writeFileSync(join(dir, 'proxy.conf'), files.proxy);

  // A config error is clearer from -C than from a server that never answers.
  const check = spawnSync('freeradius', ['-C', '-d', dir], { encoding: 'utf8', timeout: 15_000 });
  if (check.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`FreeRADIUS rejected the generated config (freeradius -C -d ${dir}):\n${check.stdout}${check.stderr}`);
  }

  const fr = ['freeradius', opts.debug ? '-X' : '-f', '-l', 'stdout', '-d', dir];
  const { child, pgid, output, alive, stop } = spawnGroup(fr, opts.lifetimeSeconds ?? 600, () => rmSync(dir, { recursive: true, force: true }), Infinity);

  // Ready when it answers a Status-Server, bounded.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  let answer: string | null = null;
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    answer = await statusServer(host, port, opts.nasSecret, 200);
    if (answer) break;
  }
  if (!answer) {
    await stop();
    throw new Error(`FreeRADIUS did not answer Status-Server on ${host}:${port}:\n${output().slice(-5000)}`);
  }
  return { host, port, dir, pgid, output, alive, stop };
}
