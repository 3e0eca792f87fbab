/**
 * A private Redis Sentinel deployment for failover tests: one master, one
 * replica and three Sentinels (quorum 2) on free loopback ports, nothing
 * persisted, everything in a temp dir. failover() is a planned switch
 * (SENTINEL FAILOVER) that waits until the old master serves as a replica of
 * the new one; killMaster() is the unplanned kind (SIGKILL) and waitPromoted()
 * waits for the Sentinels to elect the replica. Every process dies in stop()
 * and, whatever happens, when the test process exits (track()).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { captureOutput, freePort, stopChild, track } from './processes.js';

export { haveRedisBinaries } from './cluster.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One redis-cli call, bounded: a node that hangs fails the probe instead of the test. */
const cli = async (port: number, ...args: string[]): Promise<string> =>
  (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 3000 })).stdout;

/** A flat "field\nvalue\n…" reply (SENTINEL MASTER, in redis-cli's non-tty output) as a map. */
const pairs = (text: string): Record<string, string> => {
  const lines = text.split('\n');
  const m: Record<string, string> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) m[lines[i]!] = lines[i + 1]!;
  return m;
};

/** The "field:value" lines of INFO as a map. */
const info = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split(/\r?\n/)
      .filter((l) => l.includes(':') && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
  );

interface Proc {
  kind: 'redis' | 'sentinel';
  port: number;
  conf: string;
  child: ChildProcess;
  output: () => string;
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

export interface SentinelGroup {
  /** The Sentinels as "127.0.0.1:port", for store.redis.sentinels. */
  sentinels: string[];
  sentinelPorts: number[];
  masterName: 'mymaster';
  /** The two data nodes' ports (master first at start). */
  ports: number[];
  /** The current master's port, as the first Sentinel that answers reports it. */
  master(): Promise<number>;
  /** The port of the data node that is not `port`. */
  other(port: number): number;
  /**
   * Planned failover (SENTINEL FAILOVER mymaster). Resolves once every Sentinel
   * names the other node, that node says role:master, and the old master says
   * role:slave with master_link_status:up. Returns both ports and how long each step took.
   */
  failover(ms?: number): Promise<{ from: number; to: number; promotedMs: number; demotedMs: number }>;
  /**
   * The first half of failover(): resolves once every Sentinel names the other node and it
   * says role:master. The old master is still a master then: the Sentinels turn it into a
   * replica ~8-10 s later (+convert-to-slave), which waitDemoted() waits for.
   */
  promote(ms?: number): Promise<{ from: number; to: number; promotedMs: number }>;
  /** Resolves once `from` says role:slave of `to` with master_link_status:up. */
  waitDemoted(from: number, to: number, ms?: number): Promise<void>;
  /** INFO replication of a data node, as a map (role, master_port, master_link_status …). */
  replication(port: number): Promise<Record<string, string>>;
  /** SIGKILLs the current master (unplanned failover); returns its port. Nothing is restarted. */
  killMaster(): Promise<number>;
  /** After killMaster(): resolves once every Sentinel names the other node and it says role:master. */
  waitPromoted(from: number, ms?: number): Promise<number>;
  /** What every process wrote (last lines of each), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

const MASTER = 'mymaster' as const;

/** Polls `probe` every 100 ms until it is true; throws after `ms` with `detail()`. */
async function until(what: string, probe: () => Promise<boolean>, ms: number, detail: () => string): Promise<void> {
  const end = Date.now() + ms;
  let last = '';
  while (Date.now() < end) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = String((err as Error).message ?? err);
    }
    await sleep(100);
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${last})` : ''}\n${detail()}`);
}

export interface SentinelOptions {
  /**
   * sentinel down-after-milliseconds (default 1000): how long the master must be silent
   * before it is seen as down, i.e. most of the time without a master after killMaster().
   */
  downAfterMs?: number;
}

/** A master, a replica and three Sentinels that all know each other, before it returns. */
export async function startSentinelGroup(opts: SentinelOptions = {}): Promise<SentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-sentinel-'));
  const procs: Proc[] = [];
  const output = () =>
    procs
      .map((p) => `--- ${p.kind} ${p.port}${alive(p) ? '' : ` (exited ${p.child.exitCode ?? p.child.signalCode})`}\n${p.output().split('\n').slice(-25).join('\n')}`)
      .join('\n');
  const stop = async () => {
    await Promise.all(procs.map((p) => stopChild(p.child, 'SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };

  const launch = (kind: Proc['kind'], port: number, lines: string[]): Proc => {
    // A config file of its own, writable: Sentinels rewrite theirs, and a promoted or demoted
    // redis-server is sent CONFIG REWRITE.
    const conf = join(dir, `${kind}-${port}.conf`);
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', 'protected-mode no', 'daemonize no', `dir ${dir}`, 'logfile ""', ...lines, ''].join('\n'));
    const args = kind === 'sentinel' ? [conf, '--sentinel'] : [conf];
    const child = track(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const p: Proc = { kind, port, conf, child, output: captureOutput(child) };
    procs.push(p);
    return p;
  };

  const answering = (p: Proc) =>
    until(
      `${p.kind} on ${p.port} answering PING`,
      async () => {
        if (!alive(p)) throw new Error(`${p.kind} on ${p.port} exited`);
        return (await cli(p.port, 'ping')).trim() === 'PONG';
      },
      10_000,
      output,
    ).then(() => {
      if (!alive(p)) throw new Error(`${p.kind} on ${p.port} exited:\n${p.output()}`);
    });

  const dataNode = (port: number) => procs.find((p) => p.kind === 'redis' && p.port === port);
  const liveSentinels = () => procs.filter((p) => p.kind === 'sentinel' && alive(p));

  /** The master every live Sentinel names, or null while they differ (or one does not answer). */
  const agreedMaster = async (): Promise<number | null> => {
    const named = await Promise.all(
      liveSentinels().map(async (s) => {
        const [, port] = (await cli(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER)).trim().split('\n');
        return Number(port);
      }),
    );
    return named.length && named.every((p) => p === named[0]) ? named[0]! : null;
  };

  const role = async (port: number) => info(await cli(port, 'INFO', 'replication'));

  const replicaInSync = async (port: number, masterPort: number) => {
    const r = await role(port);
    return r.role === 'slave' && r.master_port === String(masterPort) && r.master_link_status === 'up';
  };

  try {
    const masterPort = await freePort();
    const replicaPort = await freePort();
    const base = [
      'save ""',
      'appendonly no',
      // Full syncs start at once (the default waits 5 s for more replicas to join).
      'repl-diskless-sync-delay 0',
    ];
    const master = launch('redis', masterPort, base);
    await answering(master);
    const replica = launch('redis', replicaPort, [...base, `replicaof 127.0.0.1 ${masterPort}`]);
    await answering(replica);
    await until(`replica ${replicaPort} in sync with ${masterPort}`, () => replicaInSync(replicaPort, masterPort), 10_000, output);

    // The Sentinels start once the replica is attached: their first INFO to the master lists it.
    const sentinels: Proc[] = [];
    for (let i = 0; i < 3; i++) {
      sentinels.push(
        launch('sentinel', await freePort(), [
          `sentinel monitor ${MASTER} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${MASTER} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${MASTER} 5000`,
          'sentinel resolve-hostnames no',
        ]),
      );
    }
    await Promise.all(sentinels.map(answering));
    // Every Sentinel knows the master, its replica (connected) and the two other Sentinels.
    await until(
      'every Sentinel knows the master, the replica and the two other Sentinels',
      async () => {
        for (const s of sentinels) {
          const m = pairs((await cli(s.port, 'SENTINEL', 'MASTER', MASTER)).trim());
          if (m.port !== String(masterPort) || m.flags !== 'master') return false;
          if (m['num-slaves'] !== '1' || m['num-other-sentinels'] !== '2') return false;
          const replicas = await cli(s.port, 'SENTINEL', 'REPLICAS', MASTER);
          // The replica's entry: its port, flags "slave" only (not s_down/disconnected), link ok.
          const r = pairs(replicas.trim());
          if (r.port !== String(replicaPort) || r.flags !== 'slave' || r['master-link-status'] !== 'ok') return false;
        }
        return true;
      },
      15_000,
      output,
    );

    const group: SentinelGroup = {
      sentinels: sentinels.map((s) => `127.0.0.1:${s.port}`),
      sentinelPorts: sentinels.map((s) => s.port),
      masterName: MASTER,
      ports: [masterPort, replicaPort],
      async master() {
        let last: unknown;
        for (const s of liveSentinels()) {
          try {
            const [, port] = (await cli(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER)).trim().split('\n');
            if (port) return Number(port);
          } catch (err) {
            last = err;
          }
        }
        throw new Error(`no Sentinel names a master (${String(last)})\n${output()}`);
      },
      other: (port) => (port === masterPort ? replicaPort : masterPort),
      async promote(ms = 20_000) {
        const from = await agreedMaster();
        if (from === null) throw new Error(`the Sentinels do not agree on the master before the failover\n${output()}`);
        const to = group.other(from);
        // The Sentinel must see the replica as a good candidate (it refuses with NOGOODSLAVE otherwise).
        await until(`replica ${to} in sync before the failover`, () => replicaInSync(to, from), 10_000, output);
        const t0 = Date.now();
        const reply = (await cli(sentinels[0]!.port, 'SENTINEL', 'FAILOVER', MASTER)).trim();
        if (reply !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${reply}\n${output()}`);
        await until(
          `every Sentinel names ${to} as master and it says role:master`,
          async () => (await agreedMaster()) === to && (await role(to)).role === 'master',
          ms,
          output,
        );
        return { from, to, promotedMs: Date.now() - t0 };
      },
      waitDemoted: (from, to, ms = 20_000) => until(`the old master ${from} replicating from ${to}`, () => replicaInSync(from, to), ms, output),
      async failover(ms = 20_000) {
        const t0 = Date.now();
        const p = await group.promote(ms);
        await group.waitDemoted(p.from, p.to, ms);
        return { ...p, demotedMs: Date.now() - t0 };
      },
      replication: role,
      async killMaster() {
        const port = await group.master();
        const node = dataNode(port);
        if (!node) throw new Error(`the Sentinels name ${port}, which is not one of ours`);
        await stopChild(node.child, 'SIGKILL');
        return port;
      },
      async waitPromoted(from, ms = 20_000) {
        const to = group.other(from);
        await until(
          `every Sentinel names ${to} as master (after ${from} died) and it says role:master`,
          async () => (await agreedMaster()) === to && (await role(to)).role === 'master',
          ms,
          output,
        );
        return to;
      },
      output,
      stop,
    };
    return group;
  } catch (err) {
    await stop();
    throw err;
  }
}
