/** Small pieces the scale-out tests (and bench/scale) share. */
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { Authenticator } from '../../src/cli/authenticator.js';
import type { Instance } from './processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `probe` every 50 ms until it returns something truthy, and returns it;
 * a probe that throws counts as "not yet". Throws after `ms`, with the last
 * error and `detail()` in the message.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 5000, detail = () => ''): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${String(last)})` : ''}\n${detail()}`);
    await sleep(50);
  }
}

/** Deletes every key under `prefix` (SCAN, so a large keyspace is not blocked). */
export async function dropPrefix(raw: Redis, prefix: string): Promise<void> {
  for (let cursor = '0', rounds = 0; rounds < 100_000; rounds++) {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await raw.del(...keys);
    cursor = next;
    if (cursor === '0') break;
  }
}

/** A user with a password, push enabled and one poll-only phone enrolled through `via`. */
export async function pushUser(via: Instance, name: string, password: string): Promise<Authenticator> {
  assert.equal((await via.api('POST', '/api/v1/users', { name, password })).status, 201);
  const f = await via.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
  assert.equal(f.body.succeeded, 1, JSON.stringify(f.body));
  const link = await via.api('POST', `/api/v1/users/${name}/enrolments`);
  assert.equal(link.status, 201, JSON.stringify(link.body));
  return Authenticator.enrol(link.body.uri, { name: `${name}'s phone` });
}

/** The phone's pending logins, or null when there are none yet. */
export const pendingOn = async (phone: Authenticator) => {
  const l = await phone.pending();
  return l.length ? l : null;
};
