import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { CountersignError, notFound } from './errors.js';
import { hotp } from './otp.js';
import type { SecretBox } from './secretbox.js';
import { otpContext } from './users.js';
import type { Store } from '../store/store.js';

export interface OfflineValue {
  counter: number;
  salt: string;
  hash: string;
}

export interface OfflineBatch {
  user: string;
  algorithm: 'scrypt';
  N: number;
  r: number;
  p: number;
  digits: number;
  values: OfflineValue[];
}

/** Slow on purpose: a stolen cache holds hashes of 6-digit codes, so each guess must cost. */
const COST = { N: 2 ** 14, r: 8, p: 1 };

const derive = (code: string, salt: Buffer) =>
  new Promise<Buffer>((resolve, reject) =>
    scrypt(code, salt, 32, { ...COST, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );

/**
 * Offline logon for workstations: the next HOTP values of a user, handed out
 * as salted scrypt hashes only (the workstation can check a typed code, not
 * produce one). When the workstation is back online it reports what was
 * used, and those counters (and all before them) stop working online too.
 */
export class OfflineOtp {
  constructor(
    private store: Store,
    private box: SecretBox,
  ) {}

  async batch(user: string, count: number): Promise<OfflineBatch> {
    const u = await this.store.users.get(user);
    if (!u) throw notFound('user', user);
    if (!u.otpEnabled || !u.otpSecret || u.otpType !== 'hotp') {
      throw new CountersignError(409, 'offline_needs_hotp', `offline logon needs an enabled HOTP token for '${user}'`);
    }
    const secret = this.box.open(u.otpSecret, otpContext(user));
    const first = (u.otpLast ?? -1) + 1;
    const digits = u.otpDigits ?? 6;
    const values = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const salt = randomBytes(16);
        const code = hotp(secret, first + i, u.otpAlgorithm ?? 'SHA1', digits);
        return { counter: first + i, salt: salt.toString('base64url'), hash: (await derive(code, salt)).toString('base64url') };
      }),
    );
    return { user, algorithm: 'scrypt', ...COST, digits, values };
  }

  /** The workstation used these counters offline: none of them may work again. */
  async used(user: string, counters: number[]): Promise<void> {
    if (!(await this.store.users.get(user))) throw notFound('user', user);
    if (counters.length) await this.store.users.advanceOtp(user, Math.max(...counters));
  }
}

/** What a workstation does with a batch: check a typed code against the hashes. */
export async function checkOffline(batch: OfflineBatch, code: string): Promise<number | null> {
  for (const v of batch.values) {
    const h = await derive(code, Buffer.from(v.salt, 'base64url'));
    const want = Buffer.from(v.hash, 'base64url');
    if (want.length === h.length && timingSafeEqual(h, want)) return v.counter;
  }
  return null;
}
