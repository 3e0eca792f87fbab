import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand } from './peers.js';
import { freePort, spawnGroup, type ProcessGroup } from './processes.js';

/**
 * Debian's radsecproxy between a NAS (radclient, over UDP) and Countersign: foreground (-f),
 * a generated config in a temp dir, one client (the NAS on 127.0.0.1) and one server, reached
 * over TLS (RadSec, with a client certificate) or over UDP. Run through spawnGroup: it stops
 * with stop(), with this process, and in any case after its lifetime.
 */

export const RADSECPROXY = '/usr/sbin/radsecproxy';

export const radsecproxyAvailable = (): boolean => hasCommand(RADSECPROXY) && hasCommand('radclient') && hasCommand('openssl');

export interface RadsecproxyOptions {
  /** The secret radclient (the NAS) shares with radsecproxy. */
  nasSecret: string;
  /** Where radsecproxy sends every request: Countersign's RadSec listener or its UDP port. */
  server:
    | { type: 'tls'; port: number; ca: string; cert: string; key: string; statusServer?: boolean }
    | { type: 'udp'; port: number; secret: string };
  lifetimeSeconds?: number;
}

export interface Radsecproxy {
  /** The UDP port radclient sends to (127.0.0.1). */
  port: number;
  proc: ProcessGroup;
  output(): string;
  stop(): Promise<void>;
}

const quote = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

export function radsecproxyConf(listenPort: number, o: RadsecproxyOptions): string {
  const s = o.server;
  const tls =
    s.type === 'tls'
      ? `tls countersign {
    CACertificateFile ${s.ca}
    CertificateFile ${s.cert}
    CertificateKeyFile ${s.key}
    TlsVersion TLS1_2:
}
`
      : '';
  const server =
    s.type === 'tls'
      ? `server countersign {
    host 127.0.0.1
    port ${s.port}
    type tls
    tls countersign
    secret radsec
    StatusServer ${s.statusServer ? 'on' : 'off'}
}
`
      : `server countersign {
    host 127.0.0.1
    port ${s.port}
    type udp
    secret ${quote(s.secret)}
}
`;
  return `ListenUDP 127.0.0.1:${listenPort}
LogLevel 5
${tls}client nas {
    host 127.0.0.1
    type udp
    secret ${quote(o.nasSecret)}
}
${server}realm * {
    server countersign
}
`;
}

/** Starts radsecproxy and waits until it listens for the NAS (and, over TLS, until its connection is up). */
export async function startRadsecproxy(o: RadsecproxyOptions, waitConnected = o.server.type === 'tls'): Promise<Radsecproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-radsecproxy-'));
  const port = await freePort({ udp: true });
  const conf = join(dir, 'radsecproxy.conf');
  writeFileSync(conf, radsecproxyConf(port, o), { mode: 0o600 });
  const proc = spawnGroup([RADSECPROXY, '-f', '-c', conf], o.lifetimeSeconds ?? 60, () => rmSync(dir, { recursive: true, force: true }));
  const ready = waitConnected ? /TLS connection to countersign .* up/ : /createlistener: listening for udp/;
  const deadline = Date.now() + 10_000;
  while (!ready.test(proc.output())) {
    if (!proc.alive() || Date.now() > deadline) {
      await proc.stop();
      throw new Error(`radsecproxy did not get ready:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, proc, output: proc.output, stop: proc.stop };
}
