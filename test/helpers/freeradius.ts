import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free UDP port on loopback. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface FreeRadiusOptions {
  port: number;
  /** The NAS allowed to talk to it (127.0.0.1) and its secret. */
  nasSecret: string;
  /** Proxy every request to this home server (Countersign) … */
  proxyTo?: { port: number; secret: string };
  /** … or answer PAP itself from a users file. */
  users?: { name: string; password: string }[];
}

/**
 * Debian's FreeRADIUS 3 in a throwaway config directory, in the foreground,
 * listening on loopback only: as a proxy in front of Countersign, or as the
 * PAP reference server for the RADIUS benchmark.
 */
export async function startFreeRadius(o: FreeRadiusOptions): Promise<{ stop(): Promise<void>; output(): string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-freeradius-'));
  const proxy = o.proxyTo
    ? `proxy_requests = yes
proxy server {
  default_fallback = no
}
home_server countersign {
  type = auth
  ipaddr = 127.0.0.1
  port = ${o.proxyTo.port}
  secret = ${o.proxyTo.secret}
  response_window = 30
  zombie_period = 40
  status_check = none
}
home_server_pool cs_pool {
  type = fail-over
  home_server = countersign
}
realm countersign {
  auth_pool = cs_pool
  nostrip
}`
    : 'proxy_requests = no';
  const authorize = o.proxyTo ? 'update control {\n      &Proxy-To-Realm := "countersign"\n    }' : 'files\n    pap';
  const authenticate = o.proxyTo ? '' : 'Auth-Type PAP {\n      pap\n    }';
  writeFileSync(join(dir, 'users'), (o.users ?? []).map((u) => `${u.name} Cleartext-Password := "${u.password}"\n`).join(''));
  writeFileSync(
    join(dir, 'radiusd.conf'),
    `prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
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
pidfile = ${dir}/radiusd.pid
max_request_time = 60
cleanup_delay = 2
max_requests = 65536
hostname_lookups = no
log {
  destination = stdout
  colourise = no
}
security {
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}
${proxy}
thread pool {
  start_servers = 4
  max_servers = 16
  min_spare_servers = 2
  max_spare_servers = 8
  max_requests_per_server = 0
}
client nas {
  ipaddr = 127.0.0.1
  secret = ${o.nasSecret}
  require_message_authenticator = yes
}
modules {
  pap {
    normalise = yes
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
    ${authorize}
  }
  authenticate {
    ${authenticate}
  }
  post-auth {
  }
  pre-proxy {
  }
  post-proxy {
  }
}
`,
  );
  let out = '';
  const child: ChildProcess = spawn('freeradius', ['-f', '-l', 'stdout', '-d', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let i = 0; i < 100 && !/Ready to process requests/.test(out); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!/Ready to process requests/.test(out)) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`FreeRADIUS did not start:\n${out}`);
  }
  return {
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
