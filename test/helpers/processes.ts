/**
 * Real Countersign processes (`node bin/countersign.js serve`) for scale-out
 * and failover tests: free loopback ports, one shared secret key and admin
 * token per group, readiness through /readyz, and SIGKILL ("the instance
 * died") or SIGTERM (graceful) to end them. Every child started here is also
 * killed when the test process exits, whatever happened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/* ------------------------------------------------------------------ children */

const children = new Set<ChildProcess>();
let exitHook = false;

/** Tracks a child so it dies with us even when an `after` hook never ran. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (!exitHook) {
    exitHook = true;
    const killAll = () => {
      for (const c of children) {
        try {
          c.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    process.once('exit', killAll);
    // The test runner ends a file that does not exit with SIGTERM, which skips 'exit' handlers:
    // kill the children, then let the signal do what it would have done.
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(signal, () => {
        killAll();
        process.kill(process.pid, signal);
      });
    }
  }
  return child;
}

/** Resolves when the child has exited (immediately when it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILLs; always resolves. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(t);
}

/** Keeps the last `max` characters a child wrote, for failure messages. */
export function captureOutput(child: ChildProcess, max = 16_000): () => string {
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > max) out = out.slice(-max);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => out;
}

/* --------------------------------------------------------------------- ports */

const handedOut = new Set<number>();

async function probeTcp(port = 0): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  const p = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return p;
}

async function probeUdp(port = 0): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, '127.0.0.1', () => resolve());
  });
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/**
 * A loopback port free right now for TCP (and UDP when asked), never handed
 * out twice by this process. Another process may still take it before it is
 * used; callers that bind it retry through a fresh start.
 */
export async function freePort(opts: { udp?: boolean } = {}): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await probeTcp();
    if (handedOut.has(p)) continue;
    if (opts.udp) {
      try {
        await probeUdp(p);
      } catch {
        continue;
      }
    }
    handedOut.add(p);
    return p;
  }
  throw new Error('no free loopback port found in 50 tries');
}

/* ----------------------------------------------------------------- instances */

export interface InstanceOptions {
  /** One Redis (redis://…) … */
  redisUrl?: string;
  /** … or the seed nodes of a Redis Cluster ("host:port"). */
  cluster?: string[];
  /** Merged into the JSON config file (radius.clients, challenge, push …). */
  config?: Record<string, unknown>;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Return once the process serves HTTP (/healthz) rather than once its store is ready (/readyz). */
  untilListening?: boolean;
}

export interface Instance {
  name: string;
  url: string;
  httpPort: number;
  radiusPort: number;
  child: ChildProcess;
  /** What the process wrote (stdout and stderr, the last 16 kB). */
  output(): string;
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** The value of one Prometheus sample line, e.g. metric('countersign_radius_duplicates_total{state="pending"}'). */
  metric(sample: string): Promise<number>;
  /** SIGKILL ("the instance died") by default, SIGTERM for a graceful stop. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  readonly alive: boolean;
}

export interface Group {
  prefix: string;
  secretKey: string;
  adminToken: string;
  dir: string;
  instances: Instance[];
  /** Starts one more instance of the group (same store, key and token). */
  start(name?: string, over?: InstanceOptions): Promise<Instance>;
  /** Kills every instance (SIGKILL) and removes the temp dir; safe to call twice. */
  stop(): Promise<void>;
}

/** Deep merge of plain objects (arrays and values from `b` win). */
const merge = (a: Record<string, any>, b: Record<string, any>): Record<string, any> => {
  const out: Record<string, any> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' ? merge(out[k], v) : v;
  }
  return out;
};

/** Environment of the parent without any COUNTERSIGN_* setting leaking in. */
const cleanEnv = (): Record<string, string> =>
  Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !k.startsWith('COUNTERSIGN_') && k !== 'NODE_OPTIONS')) as Record<string, string>;

export async function waitReady(url: string, child: ChildProcess | undefined, ms: number, output = () => '', path = '/readyz'): Promise<void> {
  const end = Date.now() + ms;
  let last = '';
  while (Date.now() < end) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`instance exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output()}`);
    }
    try {
      const r = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) return;
      last = `${r.status}`;
    } catch (err) {
      last = String((err as Error).message);
    }
    await sleep(100);
  }
  throw new Error(`instance at ${url} not ready within ${ms} ms (last: ${last}):\n${output()}`);
}

/**
 * A group of Countersign processes sharing one store. `base` applies to every
 * instance; `start()` launches them one at a time (call it n times, or use
 * startInstances).
 */
export function processGroup(base: InstanceOptions & { prefix: string }): Group {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-scale-'));
  const secretKey = randomBytes(32).toString('base64');
  const adminToken = randomBytes(24).toString('base64url');
  const instances: Instance[] = [];
  let n = 0;
  let stopped = false;

  const start = async (name = `i${n}`, over: InstanceOptions = {}): Promise<Instance> => {
    if (stopped) throw new Error('group stopped');
    const idx = n++;
    const opts: InstanceOptions = { ...base, ...over, config: merge(base.config ?? {}, over.config ?? {}), env: { ...base.env, ...over.env } };
    // Two tries: a port grabbed by someone else between probe and bind is retried once.
    for (let attempt = 0; ; attempt++) {
      const httpPort = await freePort();
      const radiusPort = await freePort({ udp: true });
      const config = merge(
        {
          mode: 'development',
          passwords: { scryptN: 1024 }, // fast tests; the hash format carries the cost
          store: { kind: 'redis', redis: opts.cluster ? { cluster: opts.cluster } : {} },
        },
        opts.config ?? {},
      );
      const configFile = join(dir, `config-${idx}-${attempt}.json`);
      writeFileSync(configFile, JSON.stringify(config, null, 2));
      const dataDir = join(dir, `data-${idx}`);
      const env: Record<string, string> = {
        ...cleanEnv(),
        COUNTERSIGN_CONFIG: configFile,
        COUNTERSIGN_HTTP_HOST: '127.0.0.1',
        COUNTERSIGN_HTTP_PORT: String(httpPort),
        COUNTERSIGN_RADIUS_HOST: '127.0.0.1',
        COUNTERSIGN_RADIUS_PORT: String(radiusPort),
        COUNTERSIGN_RADIUS_ACCOUNTING_PORT: String(await freePort({ udp: true })),
        COUNTERSIGN_REDIS_PREFIX: base.prefix,
        COUNTERSIGN_SECRET_KEY: secretKey,
        COUNTERSIGN_ADMIN_TOKEN: adminToken,
        COUNTERSIGN_DEMO: 'false',
        COUNTERSIGN_LOG_LEVEL: 'warn',
        COUNTERSIGN_DATA_DIR: dataDir,
        ...(opts.redisUrl ? { COUNTERSIGN_REDIS_URL: opts.redisUrl } : {}),
        ...opts.env,
      };
      const child = track(spawn(process.execPath, [join(ROOT, 'bin/countersign.js'), 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
      const output = captureOutput(child);
      const url = `http://127.0.0.1:${httpPort}`;
      try {
        await waitReady(url, child, 30_000, output, opts.untilListening ? '/healthz' : '/readyz');
        // Ours, not another test's process that took the port first: it knows this group's token
        // (a 503 is our own store being away; someone else's server would say 401).
        const whoami = await fetch(`${url}/api/v1/users?limit=1`, { headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(5000) });
        if (![200, 503].includes(whoami.status) || (whoami.status === 503 && !opts.untilListening) || child.exitCode !== null) {
          throw new Error(`EADDRINUSE: another server answers on ${url}`);
        }
      } catch (err) {
        await stopChild(child, 'SIGKILL');
        if (attempt === 0 && /EADDRINUSE|cannot listen/.test(`${output()} ${String(err)}`)) continue;
        throw err;
      }
      const inst: Instance = {
        name,
        url,
        httpPort,
        radiusPort,
        child,
        output,
        get alive() {
          return child.exitCode === null && child.signalCode === null;
        },
        async api(method, path, body) {
          const res = await fetch(`${url}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${adminToken}`,
              ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(60_000),
          });
          const text = await res.text();
          return { status: res.status, body: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
        },
        async metric(sample) {
          const text = (await inst.api<string>('GET', '/metrics')).body;
          const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
          return line ? Number(line.slice(sample.length + 1)) : 0;
        },
        kill: (signal = 'SIGKILL') => stopChild(child, signal),
      };
      instances.push(inst);
      return inst;
    }
  };

  return {
    prefix: base.prefix,
    secretKey,
    adminToken,
    dir,
    instances,
    start,
    async stop() {
      stopped = true;
      await Promise.all(instances.map((i) => i.kill('SIGKILL')));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `n` instances of one group, started side by side. */
export async function startInstances(n: number, base: InstanceOptions & { prefix: string }): Promise<Group> {
  const group = processGroup(base);
  try {
    await Promise.all(Array.from({ length: n }, (_, i) => group.start(String.fromCharCode(65 + i))));
  } catch (err) {
    await group.stop();
    throw err;
  }
  group.instances.sort((a, b) => a.name.localeCompare(b.name));
  return group;
}

/** A program run in a process group of its own, its output kept, that never outlives the tests. */
export interface ProcessGroup {
  child: ChildProcess;
  /** The group's id (the child's pid). */
  pgid: number;
  output(): string;
  /** True while any process of the group is alive (a wrapper may be gone while the program lingers). */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after a few seconds; then `cleanup`. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs `command` as `setpriv --pdeathsig SIGTERM timeout -k 5 <lifetime> command…` where those
 * exist: it stops with stop(), when this process exits (exit hook), when this process dies
 * without running hooks (parent-death signal), and in any case after its lifetime.
 */
export function spawnGroup(command: string[], lifetimeSeconds: number, cleanup: () => void = () => {}, maxOutput = 64_000): ProcessGroup {
  const wrapped = hasExecutable('setpriv') && hasExecutable('timeout');
  const [cmd, ...args] = wrapped ? ['setpriv', '--pdeathsig', 'SIGTERM', '--', 'timeout', '-k', '5', String(lifetimeSeconds), ...command] : command;
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > maxOutput) out = out.slice(-maxOutput);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  child.on('error', (err) => (out += `\nspawn failed: ${err.message}\n`));
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  const pgid = child.pid ?? -1;
  const signal = (sig: NodeJS.Signals) => {
    if (pgid <= 0) return;
    try {
      process.kill(-pgid, sig);
    } catch {
      // ESRCH: nothing left.
    }
  };
  const alive = () => {
    if (pgid <= 0) return false;
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const onExit = () => signal('SIGKILL');
  process.once('exit', onExit);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      signal('SIGTERM');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 3000).unref())]);
      for (let i = 0; i < 30 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
      if (alive()) signal('SIGKILL');
      for (let i = 0; i < 20 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
      process.off('exit', onExit);
      child.stdout?.destroy();
      child.stderr?.destroy();
      cleanup();
    })());
  return { child, pgid, output: () => out, alive, stop };
}

function hasExecutable(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => {
    try {
      return statSync(join(d, name)).isFile();
    } catch {
      return false;
    }
  });
}
