import { Redis } from 'ioredis';
import type { Clock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { RedisStore } from '../../src/store/redis/index.js';
import type { Store } from '../../src/core/store.js';
import { redisAvailable, testRedisUrl, uniquePrefix } from './peers.js';

export interface StoreKind {
  name: 'memory' | 'redis';
  available: boolean;
  /**
   * Stores for `n` instances that share state: the same MemoryStore object,
   * or separate Redis connections on one key prefix (as separate processes).
   */
  shared(n: number, clock: Clock): Store[];
  cleanup(): Promise<void>;
}

export async function storeKinds(): Promise<StoreKind[]> {
  const up = await redisAvailable();
  const prefixes: string[] = [];
  return [
    {
      name: 'memory',
      available: true,
      shared(n, clock) {
        const s = new MemoryStore({ clock });
        return Array.from({ length: n }, () => s);
      },
      async cleanup() {},
    },
    {
      name: 'redis',
      available: up,
      shared(n) {
        const prefix = uniquePrefix('engine');
        prefixes.push(prefix);
        return Array.from(
          { length: n },
          () => new RedisStore({ url: testRedisUrl(), prefix, auditLimit: 1000, commandTimeoutMs: 2000 }),
        );
      },
      async cleanup() {
        if (!up || prefixes.length === 0) return;
        const raw = new Redis(testRedisUrl());
        for (const p of prefixes) {
          const keys = await raw.keys(`${p}:*`);
          if (keys.length) await raw.del(...keys);
        }
        raw.disconnect();
      },
    },
  ];
}
