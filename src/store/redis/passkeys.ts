import type { Cluster, Redis } from 'ioredis';
import { StoreUnavailableError } from '../../core/errors.js';
import type { PasskeyRecord, PasskeyStore } from '../../core/store.js';
import { CREATE_HASH } from './scripts.js';

/** KEYS[1] passkey hash; ARGV: from, to, usedAt, backedUp — the counter moves only from `from`. */
const PASSKEY_USE = `
local c = redis.call('HGET', KEYS[1], 'counter')
if not c or tonumber(c) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'counter', ARGV[2], 'lastUsedAt', ARGV[3], 'backedUp', ARGV[4])
return 1
`;

/** KEYS[1] passkey hash; ARGV: user — deleted only when it is that user's. */
const PASSKEY_DELETE = `
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`;

interface Scripts {
  csPasskeyCreate(key: string, ...args: (string | number)[]): Promise<number>;
  csPasskeyUse(key: string, from: number, to: number, usedAt: number, backedUp: string): Promise<number>;
  csPasskeyDelete(key: string, user: string): Promise<number>;
}

const guarded = async <T>(p: Promise<T>): Promise<T> => {
  try {
    return await p;
  } catch (err) {
    throw new StoreUnavailableError(err);
  }
};

const fromHash = (h: Record<string, string>): PasskeyRecord | null =>
  h.id
    ? {
        id: h.id,
        user: h.user!,
        name: h.name!,
        publicKey: h.publicKey!,
        counter: Number(h.counter),
        ...(h.transports ? { transports: JSON.parse(h.transports) as string[] } : {}),
        deviceType: h.deviceType === 'multiDevice' ? 'multiDevice' : 'singleDevice',
        backedUp: h.backedUp === '1',
        createdAt: Number(h.createdAt),
        ...(h.lastUsedAt ? { lastUsedAt: Number(h.lastUsedAt) } : {}),
      }
    : null;

/**
 * One hash per credential (`pk:{<credential id>}`: the counter's compare-and-set is one
 * script on one key) and a set of a user's credential ids next to the user
 * (`pks:{<user>}`). The set is written after the credential and trimmed after it is
 * deleted, so a member whose hash is gone is skipped, never trusted.
 */
export class RedisPasskeys implements PasskeyStore {
  private readonly client: (Redis | Cluster) & Scripts;

  constructor(
    client: Redis | Cluster,
    private prefix: string,
  ) {
    client.defineCommand('csPasskeyCreate', { numberOfKeys: 1, lua: CREATE_HASH });
    client.defineCommand('csPasskeyUse', { numberOfKeys: 1, lua: PASSKEY_USE });
    client.defineCommand('csPasskeyDelete', { numberOfKeys: 1, lua: PASSKEY_DELETE });
    this.client = client as (Redis | Cluster) & Scripts;
  }

  private key(id: string) {
    return `${this.prefix}:pk:{${id}}`;
  }

  private userKey(user: string) {
    return `${this.prefix}:pks:{${user}}`;
  }

  async create(p: PasskeyRecord): Promise<boolean> {
    const fields: (string | number)[] = ['id', p.id, 'user', p.user, 'name', p.name, 'publicKey', p.publicKey, 'counter', p.counter];
    fields.push('deviceType', p.deviceType, 'backedUp', p.backedUp ? '1' : '0', 'createdAt', p.createdAt);
    if (p.transports) fields.push('transports', JSON.stringify(p.transports));
    if (p.lastUsedAt !== undefined) fields.push('lastUsedAt', p.lastUsedAt);
    if ((await guarded(this.client.csPasskeyCreate(this.key(p.id), 0, ...fields))) !== 1) return false;
    await guarded(this.client.sadd(this.userKey(p.user), p.id));
    return true;
  }

  async get(id: string): Promise<PasskeyRecord | null> {
    return fromHash(await guarded(this.client.hgetall(this.key(id))));
  }

  async list(user: string): Promise<PasskeyRecord[]> {
    const ids = await guarded(this.client.smembers(this.userKey(user)));
    const all = await Promise.all(ids.map((id) => this.get(id)));
    return all.filter((p): p is PasskeyRecord => p !== null && p.user === user).sort((a, b) => a.createdAt - b.createdAt);
  }

  async recordUse(id: string, from: number, to: number, usedAt: number, backedUp: boolean): Promise<boolean> {
    return (await guarded(this.client.csPasskeyUse(this.key(id), from, to, usedAt, backedUp ? '1' : '0'))) === 1;
  }

  async delete(user: string, id: string): Promise<boolean> {
    const deleted = (await guarded(this.client.csPasskeyDelete(this.key(id), user))) === 1;
    if (deleted) await guarded(this.client.srem(this.userKey(user), id));
    return deleted;
  }

  async deleteAll(user: string): Promise<void> {
    const ids = await guarded(this.client.smembers(this.userKey(user)));
    await Promise.all(ids.map((id) => guarded(this.client.csPasskeyDelete(this.key(id), user))));
    await guarded(this.client.del(this.userKey(user)));
  }
}
