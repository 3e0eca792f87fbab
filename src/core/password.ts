import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

/** One of OWASP's equivalent scrypt settings (32 MiB a hash, p=3). */
export const DEFAULT_SCRYPT: ScryptCost = { N: 2 ** 15, r: 8, p: 3 };

const derive = (password: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const opts: ScryptOptions = { ...cost, maxmem: 256 * cost.N * cost.r + 1024 * 1024 };
    scrypt(password.normalize('NFC'), salt, 32, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });

/** scrypt$N$r$p$salt$hash — the cost travels with the hash so it can be raised later. */
export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** True when a stored hash was made with another cost than `cost`: hash it again at the next good login. */
export function needsRehash(stored: string, cost: ScryptCost): boolean {
  const [kind, N, r, p] = stored.split('$');
  return kind !== 'scrypt' || Number(N) !== cost.N || Number(r) !== cost.r || Number(p) !== cost.p;
}

const dummyHashes = new Map<string, Promise<string>>();

/**
 * Constant-time check. With no stored hash (unknown user, no password set) it
 * still spends one derivation, so response time does not reveal which names exist.
 */
export async function verifyPassword(password: string, stored: string | undefined, cost: ScryptCost = DEFAULT_SCRYPT): Promise<boolean> {
  const parts = stored?.split('$');
  if (!parts || parts.length !== 6 || parts[0] !== 'scrypt') {
    // The same cost as real hashes, so a missing user takes as long as a wrong password.
    const k = `${cost.N}/${cost.r}/${cost.p}`;
    let dummy = dummyHashes.get(k);
    if (!dummy) dummyHashes.set(k, (dummy = hashPassword('countersign-dummy', cost)));
    const [, N, r, p, salt] = (await dummy).split('$');
    await derive(password, Buffer.from(salt!, 'base64url'), { N: Number(N), r: Number(r), p: Number(p) });
    return false;
  }
  const [, N, r, p, salt, hash] = parts;
  const expected = Buffer.from(hash!, 'base64url');
  const actual = await derive(password, Buffer.from(salt!, 'base64url'), { N: Number(N), r: Number(r), p: Number(p) });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
