/**
 * Throwaway network namespaces for tests whose peer must own fixed ports (an
 * AD domain controller binds 389/636/88/53): one namespace, one veth pair to
 * the host, a /30 out of 10.231.0.0/16 that no other instance on this machine
 * holds at the same time.
 *
 * - The namespace is named `<prefix>-<owner pid>-<n>`; `cleanupStaleNetns`
 *   deletes those whose owner process is gone (a test that was SIGKILLed), so
 *   the next run never trips over them.
 * - The host end is `cs231-<slot>`: creating it (with its peer made directly
 *   inside the namespace) is the atomic claim on the slot, so two test
 *   processes never get the same addresses. Slot s owns
 *   10.231.<s>>6>.<(s&63)*4> /30: host .1, namespace .2.
 * - An `unreachable 10.231.0.0/16` route (lowest priority, added once, left in
 *   place) keeps traffic for an address whose namespace is gone, or not yet
 *   there, from following the default route off the machine.
 *
 * Needs root and iproute2. Everything here is synchronous: a handful of `ip`
 * calls of a few milliseconds, and it has to work from an 'exit' handler.
 */
import { spawnSync } from 'node:child_process';

const SLOTS = 16384; // /30s in a /16

export interface Netns {
  /** Namespace name, for `ip netns exec <name> …`. */
  name: string;
  /** Host end of the veth pair and its address. */
  hostIf: string;
  hostAddress: string;
  /** The namespace end (`eth0` inside) and its address. */
  nsIf: string;
  address: string;
  /** `ip netns exec <name>` + argv, for spawn. */
  execArgs(argv: string[]): string[];
  /** Up/down of the namespace's end of the link ("unplug the cable"; the host keeps its address and route). */
  setLink(up: boolean): void;
  /** SIGKILLs every process in the namespace, deletes it (the veth pair goes with it). Idempotent, synchronous. */
  destroy(): void;
}

function ip(args: string[], input?: string): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', input, timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function mustIp(args: string[]): string {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.out.trim()}`);
  return r.out;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Names of all named network namespaces (`ip netns list` prints "name (id: n)"). */
export function listNetns(): string[] {
  const r = ip(['netns', 'list']);
  return r.ok ? r.out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean) : [];
}

/** Pids of processes in a namespace. */
export function netnsPids(name: string): number[] {
  const r = ip(['netns', 'pids', name]);
  return r.ok ? r.out.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0) : [];
}

function killAndDelete(name: string): void {
  for (const pid of netnsPids(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  ip(['netns', 'delete', name]);
}

const ours = new Set<string>();

/**
 * Deletes `<prefix>-<pid>-<n>` namespaces whose owner pid no longer runs (and
 * this process's own leftovers from an earlier process with the same pid),
 * killing whatever still runs inside them.
 */
export function cleanupStaleNetns(prefix: string): string[] {
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d+)-\\d+$`);
  const removed: string[] = [];
  for (const name of listNetns()) {
    const m = re.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const stale = pid === process.pid ? !ours.has(name) : !pidAlive(pid);
    if (stale) {
      killAndDelete(name);
      removed.push(name);
    }
  }
  return removed;
}

let guardRoute = false;
function ensureGuardRoute(): void {
  if (guardRoute) return;
  const r = ip(['route', 'add', 'unreachable', '10.231.0.0/16', 'metric', '65000']);
  if (!r.ok && !/File exists/i.test(r.out)) throw new Error(`cannot add the 10.231.0.0/16 guard route: ${r.out.trim()}`);
  guardRoute = true;
}

const slotAddress = (slot: number, host: 1 | 2) => `10.231.${slot >> 6}.${(slot & 63) * 4 + host}`;

let counter = 0;

/** Creates a namespace with a veth pair to the host, both ends up, loopback up inside. */
export function createNetns(prefix: string): Netns {
  ensureGuardRoute();
  const name = `${prefix}-${process.pid}-${counter++}`;
  if (listNetns().includes(name)) killAndDelete(name);
  mustIp(['netns', 'add', name]);
  ours.add(name);
  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    killAndDelete(name);
    ours.delete(name);
  };
  try {
    // Addresses of 10.231/16 already on this host (someone else's harness, made another way).
    const used = new Set(
      ip(['-4', '-o', 'addr', 'show'])
        .out.split('\n')
        .map((l) => /inet (10\.231\.\d+\.\d+)\//.exec(l)?.[1])
        .filter((a): a is string => Boolean(a)),
    );
    const start = (process.pid * 37 + counter * 101) % SLOTS;
    for (let i = 0; i < 256; i++) {
      const slot = (start + i) % SLOTS;
      const hostAddress = slotAddress(slot, 1);
      const address = slotAddress(slot, 2);
      if (used.has(hostAddress) || used.has(address)) continue;
      const hostIf = `cs231-${slot}`;
      // The claim: fails with "File exists" when another instance holds the slot.
      const claim = ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
      if (!claim.ok) {
        if (/File exists/i.test(claim.out)) continue;
        throw new Error(`ip link add ${hostIf} type veth … failed: ${claim.out.trim()}`);
      }
      mustIp(['addr', 'add', `${hostAddress}/30`, 'dev', hostIf]);
      mustIp(['link', 'set', hostIf, 'up']);
      mustIp(['-n', name, 'addr', 'add', `${address}/30`, 'dev', 'eth0']);
      mustIp(['-n', name, 'link', 'set', 'eth0', 'up']);
      mustIp(['-n', name, 'link', 'set', 'lo', 'up']);
      return {
        name,
        hostIf,
        hostAddress,
        nsIf: 'eth0',
        address,
        execArgs: (argv) => ['ip', 'netns', 'exec', name, ...argv],
        setLink: (up) => void mustIp(['-n', name, 'link', 'set', 'eth0', up ? 'up' : 'down']),
        destroy,
      };
    }
    throw new Error('no free 10.231.0.0/16 slot for a veth pair in 256 tries');
  } catch (err) {
    destroy();
    throw err;
  }
}
