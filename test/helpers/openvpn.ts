import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand } from './peers.js';
import { spawnGroup, type ProcessGroup } from './processes.js';

/**
 * Debian's OpenVPN 2.6 with its RADIUS plugin (package openvpn-auth-radius) as a real VPN
 * in front of Countersign, all on loopback: a server whose radiusplugin authenticates and
 * accounts against Countersign, and a client that connects with a user name and password.
 *
 * The server needs a tun device (OpenVPN's server mode refuses --dev null): it gets one of
 * its own name, which OpenVPN leaves unconfigured (ifconfig-noexec, route-noexec), so the
 * host's addresses and routes are not touched; the kernel removes it when OpenVPN exits.
 * The client runs with --dev null. Each runs as `setpriv --pdeathsig SIGTERM timeout -k 5
 * <lifetime> openvpn …` in a process group of its own (the plugin forks a helper), ended
 * by stop(), when this process exits, or at the end of its lifetime.
 */

export const RADIUSPLUGIN = '/usr/lib/openvpn/radiusplugin.so';

/** Why OpenVPN with radiusplugin cannot run here, or null when it can. */
export function openVpnMissing(): string | null {
  if (!hasCommand('openvpn')) return 'openvpn (Debian package openvpn)';
  if (!existsSync(RADIUSPLUGIN)) return `${RADIUSPLUGIN} (Debian package openvpn-auth-radius)`;
  if (!hasCommand('openssl')) return 'openssl';
  if (!existsSync('/dev/net/tun')) return 'a tun device (/dev/net/tun) for the OpenVPN server';
  if (process.getuid?.() !== 0) return 'root (the OpenVPN server opens a tun device)';
  return null;
}

const tried = new Set<number>();
/**
 * Free loopback UDP ports of four digits: radiusplugin keeps only four digits of a port
 * number (authport=, acctport=), so Countersign must listen on one. Another process may
 * still take one before it is bound; the caller retries the start.
 */
export async function fourDigitUdpPorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; ports.length < n && i < 200; i++) {
    const port = 2000 + Math.floor(Math.random() * 8000);
    if (tried.has(port)) continue;
    tried.add(port);
    const s = dgram.createSocket('udp4');
    const free = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (free) ports.push(port);
  }
  if (ports.length < n) throw new Error('no free four-digit UDP ports on loopback');
  return ports;
}

type Group = ProcessGroup;

/** A wrapped OpenVPN in a process group of its own, with its output kept. */
const run = (configFile: string, lifetimeSeconds: number, cleanup: () => void): Group =>
  spawnGroup(['openvpn', '--config', configFile], lifetimeSeconds, cleanup);

/** Waits until the output matches one of `patterns` (its index), the process ends (-1) or `ms` pass (-2). */
async function waitFor(g: Group, patterns: RegExp[], ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = patterns.findIndex((p) => p.test(g.output()));
    if (i >= 0) return i;
    if (g.child.exitCode !== null || g.child.signalCode !== null) return -1;
    if (Date.now() > deadline) return -2;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface OpenVpnServer {
  /** UDP port the VPN listens on (127.0.0.1). */
  port: number;
  dir: string;
  /** The CA clients verify the server with. */
  caFile: string;
  output(): string;
  stop(): Promise<void>;
}

export interface OpenVpnServerOptions {
  /** Countersign's RADIUS ports (four digits each) and the shared secret. */
  radius: { authPort: number; acctPort: number; secret: string };
  /** NAS-Identifier the plugin sends. */
  nasIdentifier: string;
  /** Hard cap on the server's life (default 120 s). */
  lifetimeSeconds?: number;
}

let devices = 0;

/** An OpenVPN server whose users are checked, and accounted, by radiusplugin against Countersign. */
export async function startOpenVpnServer(o: OpenVpnServerOptions): Promise<OpenVpnServer> {
  for (const p of [o.radius.authPort, o.radius.acctPort]) if (p < 1000 || p > 9999) throw new Error(`radiusplugin keeps four digits of a port: ${p}`);
  if (/[\s#;]/.test(o.radius.secret) || /[\s#;]/.test(o.nasIdentifier)) throw new Error('the plugin config takes no spaces, # or ; in values');
  const dir = mkdtempSync(join(tmpdir(), 'cs-openvpn-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  // A throwaway CA and server certificate (P-256, a day); clients present none (verify-client-cert none).
  const ssl = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 15_000 });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  try {
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=countersign-test-ca']);
    ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=server']);
    writeFileSync(join(dir, 'ext.cnf'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth\n');
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext.cnf']);
  } catch (err) {
    cleanup();
    throw err;
  }
  mkdirSync(join(dir, 'ccd'));
  mkdirSync(join(dir, 'tmp'));
  const port = (await fourDigitUdpPorts(1))[0]!;
  const serverConf = join(dir, 'server.conf');
  writeFileSync(
    join(dir, 'radiusplugin.cnf'),
    `NAS-Identifier=${o.nasIdentifier}
Service-Type=5
Framed-Protocol=1
NAS-Port-Type=5
NAS-IP-Address=127.0.0.1
OpenVPNConfig=${serverConf}
subnet=255.255.255.0
overwriteccfiles=true
nonfatalaccounting=false
server
{
	acctport=${o.radius.acctPort}
	authport=${o.radius.authPort}
	name=127.0.0.1
	retry=1
	wait=5
	sharedsecret=${o.radius.secret}
}
`,
  );
  // tun names are at most 15 characters.
  const dev = `csv${process.pid % 1_000_000}x${devices++ % 100}`;
  writeFileSync(
    serverConf,
    `mode server
tls-server
proto udp4
local 127.0.0.1
port ${port}
dev-type tun
dev ${dev}
topology subnet
ifconfig 10.99.0.1 255.255.255.0
ifconfig-pool 10.99.0.10 10.99.0.50 255.255.255.0
push "topology subnet"
ifconfig-noexec
route-noexec
# A client that leaves without a word (its exit notice lost on a busy machine) is dropped after
# 4 s of silence, so the plugin still sends its Stop.
keepalive 1 4
ca ${dir}/ca.crt
cert ${dir}/server.crt
key ${dir}/server.key
dh none
verify-client-cert none
username-as-common-name
client-config-dir ${dir}/ccd
status ${dir}/status.log 1
status-version 1
tmp-dir ${dir}/tmp
plugin ${RADIUSPLUGIN} ${dir}/radiusplugin.cnf
verb 4
`,
  );
  const g = run(serverConf, o.lifetimeSeconds ?? 120, cleanup);
  const ready = await waitFor(g, [/Initialization Sequence Completed/], 15_000);
  if (ready !== 0) {
    const out = g.output();
    await g.stop();
    throw new Error(`the OpenVPN server did not start:\n${out.slice(-5000)}`);
  }
  return { port, dir, caFile: join(dir, 'ca.crt'), output: g.output, stop: g.stop };
}

export interface OpenVpnClient {
  /** connected, auth-failed, or what else happened (exited, timeout). */
  result: 'connected' | 'auth-failed' | 'exited' | 'timeout';
  output(): string;
  /** SIGTERM: the client tells the server it leaves (explicit-exit-notify), then ends. */
  stop(): Promise<void>;
}

/** An OpenVPN client (--dev null) logging in with a user name and password; resolves once connected or refused. */
export async function connectOpenVpnClient(server: OpenVpnServer, user: string, password: string, timeoutMs = 20_000): Promise<OpenVpnClient> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-openvpn-client-'));
  writeFileSync(join(dir, 'creds'), `${user}\n${password}\n`, { mode: 0o600 });
  const conf = join(dir, 'client.conf');
  writeFileSync(
    conf,
    `client
tls-client
proto udp4
remote 127.0.0.1 ${server.port}
dev null
nobind
ifconfig-noexec
route-noexec
ca ${server.caFile}
verify-x509-name server name
remote-cert-tls server
auth-user-pass ${dir}/creds
auth-nocache
auth-retry none
connect-retry-max 1
explicit-exit-notify 3
verb 3
`,
  );
  const g = run(conf, 120, () => rmSync(dir, { recursive: true, force: true }));
  const i = await waitFor(g, [/Initialization Sequence Completed/, /AUTH_FAILED/], timeoutMs);
  const result = i === 0 ? 'connected' : i === 1 ? 'auth-failed' : i === -1 ? 'exited' : 'timeout';
  if (result !== 'connected') await g.stop();
  return { result, output: g.output, stop: g.stop };
}
