import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';

const inCI = process.env.CI === 'true';

/**
 * A test whose outside peer (redis-server, oathtool, …) is missing skips on a
 * developer machine and fails under CI=true, where .ci/run installs them all.
 */
export function requirePeer(t: TestContext, available: boolean, what: string): boolean {
  if (available) return true;
  if (inCI) throw new Error(`${what} is required under CI=true but is not available`);
  t.skip(`${what} is not available`);
  return false;
}

export const hasCommand = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export const testRedisUrl = (): string => process.env.COUNTERSIGN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let redisUp: Promise<boolean> | undefined;
export function redisAvailable(): Promise<boolean> {
  redisUp ??= (async () => {
    const r = new Redis(testRedisUrl(), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
      return true;
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  })();
  return redisUp;
}

/** A key prefix no other test run shares, so runs never see each other's keys. */
export const uniquePrefix = (name: string) => `cstest-${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
