import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { CountersignError, notFound } from './errors.js';
import { hotp } from './otp.js';
import type { SecretBox } from './secretbox.js';
import { otpContext } from './users.js';
import type { Store } from './store.js';

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

/** One batch handed out: counters first..last, to this workstation through this credential. */
interface Issued {
  workstation: string;
  credential: string;
  first: number;
  last: number;
  at: number;
}

/** Batches remembered per user; older ones fall off (their unused values still work online). */
const KEEP_ISSUED = 20;

const issuedOf = (raw: string | undefined): Issued[] => (raw ? (JSON.parse(raw) as Issued[]) : []);

/**
 * Offline logon for workstations: the next HOTP values of a user, handed out
 * as salted scrypt hashes only (the workstation can check a typed code, not
 * produce one). When the workstation is back online it reports what was
 * used, and those counters (and all before them) stop working online too.
 * Only counters handed out to that workstation through that credential can be
 * reported: nobody can retire a user's future codes by naming them.
 */
export class OfflineOtp {
  constructor(
    private store: Store,
    private box: SecretBox,
  ) {}

  async batch(user: string, count: number, to: { workstation: string; credential: string; at: number }): Promise<OfflineBatch> {
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
    const issued = [...issuedOf(u.offlineIssued), { ...to, first, last: first + count - 1 }].slice(-KEEP_ISSUED);
    await this.store.users.update(user, { offlineIssued: JSON.stringify(issued) });
    return { user, algorithm: 'scrypt', ...COST, digits, values };
  }

  /**
   * The workstation used these counters offline: none of them may work again. Every counter
   * must come from a batch handed to this workstation through this credential, and the user
   * must still have that HOTP token.
   */
  async used(user: string, counters: number[], by: { workstation: string; credential: string }): Promise<void> {
    const u = await this.store.users.get(user);
    if (!u) throw notFound('user', user);
    if (!u.otpEnabled || !u.otpSecret || u.otpType !== 'hotp') {
      throw new CountersignError(409, 'offline_needs_hotp', `'${user}' has no HOTP token; there is nothing offline to retire`);
    }
    const mine = issuedOf(u.offlineIssued).filter(
      (b) => b.credential === by.credential && b.workstation.toLowerCase() === by.workstation.toLowerCase(),
    );
    const stray = counters.filter((n) => !mine.some((b) => n >= b.first && n <= b.last));
    if (stray.length) {
      throw new CountersignError(409, 'counter_not_issued', `counters ${stray.slice(0, 5).join(', ')} were not handed out to this workstation; nothing was retired`);
    }
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
