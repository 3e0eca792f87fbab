/**
 * Private Redis processes for scale-out tests: a real 3-master Redis Cluster
 * on free loopback ports, and a single redis-server that can be killed and
 * started again on the same port (no persistence: a restart loses the data).
 * Everything lives in a temp dir and is torn down by stop().
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { captureOutput, freePort, stopChild, track } from './processes.js';
import { hasCommand } from './peers.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const haveRedisBinaries = (): boolean => hasCommand('redis-server') && hasCommand('redis-cli');

const cli = async (port: number, ...args: string[]): Promise<string> =>
  (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout;

/** Polls until `probe` is true; throws after `ms`. */
async function until(what: string, probe: () => Promise<boolean>, ms: number, detail = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} not reached within ${ms} ms\n${detail()}`);
}

interface Node {
  port: number;
  child: ChildProcess;
  output: () => string;
}

function spawnRedis(port: number, dir: string, extra: string[]): Node {
  const child = track(
    spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no', ...extra],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  return { port, child, output: captureOutput(child) };
}

async function pingable(node: Node): Promise<void> {
  await until(
    `redis-server on ${node.port} answering`,
    async () => {
      if (node.child.exitCode !== null) return true; // reported below
      return (await cli(node.port, 'ping')).trim() === 'PONG';
    },
    10_000,
    node.output,
  );
  if (node.child.exitCode !== null) throw new Error(`redis-server on ${node.port} exited:\n${node.output()}`);
}

export interface RedisCluster {
  /** Seed nodes as "127.0.0.1:port", for store.redis.cluster. */
  nodes: string[];
  ports: number[];
  /** SIGKILLs the i-th master: without replicas, the cluster goes down (cluster_state:fail). */
  killNode(i: number): Promise<void>;
  /** Starts the i-th master again on its port with its nodes.conf: it rejoins with its slots, empty. */
  restartNode(i: number): Promise<void>;
  /** Resolves once every live node reports cluster_state:ok (throws after `ms`). */
  waitOk(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A real Redis Cluster of `masters` masters and no replicas; state ok on every node before it returns. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-cluster-'));
  const nodes: Node[] = [];
  const args: string[][] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => stopChild(n.child, 'SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  const waitOk = (ms = 20_000) =>
    until(
      'cluster_state:ok on every node',
      async () => {
        for (const n of nodes) {
          if (n.child.exitCode !== null || n.child.signalCode !== null) continue;
          const info = await cli(n.port, 'cluster', 'info');
          if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info) || !new RegExp(`cluster_known_nodes:${masters}\\b`).test(info)) return false;
        }
        return true;
      },
      ms,
      () => nodes.map((n) => n.output()).join('\n'),
    );
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      // The bus port is chosen too (not port+10000, which may be taken).
      const bus = await freePort();
      args.push([
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-port', String(bus),
        '--cluster-node-timeout', '2000',
      ]);
      nodes.push(spawnRedis(port, dir, args[i]!));
    }
    await Promise.all(nodes.map(pingable));
    const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    await waitOk();
    return {
      nodes: addrs,
      ports: nodes.map((n) => n.port),
      killNode: (i) => stopChild(nodes[i]!.child, 'SIGKILL'),
      async restartNode(i) {
        await stopChild(nodes[i]!.child, 'SIGKILL');
        nodes[i] = spawnRedis(nodes[i]!.port, dir, args[i]!);
        await pingable(nodes[i]!);
      },
      waitOk,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface RedisServer {
  port: number;
  url: string;
  /** SIGKILL: the server dies and, without persistence, its data with it. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A private, non-persistent redis-server on its own port. */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-redis-'));
  const port = await freePort();
  let node = spawnRedis(port, dir, []);
  try {
    await pingable(node);
  } catch (err) {
    await stopChild(node.child, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: () => stopChild(node.child, 'SIGKILL'),
    async restart() {
      await stopChild(node.child, 'SIGKILL');
      // The port was ours a moment ago; a short retry covers TIME_WAIT-free rebinding races.
      for (let i = 0; ; i++) {
        node = spawnRedis(port, dir, []);
        try {
          await pingable(node);
          return;
        } catch (err) {
          await stopChild(node.child, 'SIGKILL');
          if (i >= 2) throw err;
          await sleep(200);
        }
      }
    },
    async stop() {
      await stopChild(node.child, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
