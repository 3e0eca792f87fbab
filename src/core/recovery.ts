import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from './clock.js';
import { CountersignError, notFound } from './errors.js';
import { base32Encode } from './otp.js';
import type { Store } from './store.js';

/** How many codes one set has. */
export const RECOVERY_CODE_COUNT = 10;
/** A used code stays refused far longer than a set is likely to live. */
const USED_MS = 10 * 365 * 86_400_000;
/** Wrong recovery codes per user in FAIL_WINDOW_MS before they are refused for the rest of it. */
const MAX_FAILURES = 10;
const FAIL_WINDOW_MS = 15 * 60_000;

/** A user's current set, kept in `settings` under kind `recovery`: digests only. */
interface RecoverySet {
  /** Changes with every new set, so the codes of an older set can never be claimed. */
  id: string;
  /** The user record's createdAt: a new user who takes a deleted user's name gets none of their codes. */
  userCreatedAt: number;
  createdAt: number;
  /** HMAC-SHA256 of each code under a key derived from the secret key (no code in clear anywhere). */
  digests: string[];
  /** Indexes used so far (shown as "n left"; the claim in `guards` is what decides). */
  used: number[];
}

export interface RecoveryStatus {
  total: number;
  remaining: number;
  createdAt?: number;
}

/** "abcd-efgh-ijkl" → "abcdefghijkl": dashes, spaces and case do not matter when typed. */
export const normaliseRecoveryCode = (code: string) => code.toLowerCase().replace(/[\s-]/g, '');

/**
 * One-time recovery codes: a factor for the self-service portal and OpenID Connect sign-in
 * when the phone is lost, never for RADIUS (a NAS would carry them in a password field).
 * Each code is 60 random bits, shown once, stored as a keyed digest, and works once: the use
 * is claimed atomically in the store, so two sign-ins racing with one code cannot both pass.
 */
export class RecoveryCodes {
  constructor(
    private store: Store,
    private key: Buffer,
    private clock: Clock,
  ) {}

  private digest(user: string, setId: string, code: string): Buffer {
    return createHmac('sha256', this.key).update(`${user}\n${setId}\n${normaliseRecoveryCode(code)}`).digest();
  }

  private async read(user: string): Promise<RecoverySet | null> {
    const raw = await this.store.settings.get('recovery', user);
    if (!raw) return null;
    const set = JSON.parse(raw) as RecoverySet;
    const u = await this.store.users.get(user);
    return u && u.createdAt === set.userCreatedAt ? set : null;
  }

  /** A new set of codes, returned this once; every code of the previous set stops working. */
  async create(user: string): Promise<string[]> {
    const u = await this.store.users.get(user);
    if (!u) throw notFound('user', user);
    const id = randomBytes(12).toString('base64url');
    // 60 bits each, in base32 without look-alikes' confusion: 12 characters shown as xxxx-xxxx-xxxx.
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => base32Encode(randomBytes(8)).slice(0, 12).toLowerCase());
    const set: RecoverySet = {
      id,
      userCreatedAt: u.createdAt,
      createdAt: this.clock.now(),
      digests: codes.map((c) => this.digest(user, id, c).toString('base64url')),
      used: [],
    };
    await this.store.settings.put('recovery', user, JSON.stringify(set));
    return codes.map((c) => `${c.slice(0, 4)}-${c.slice(4, 8)}-${c.slice(8)}`);
  }

  async status(user: string): Promise<RecoveryStatus> {
    const set = await this.read(user);
    if (!set) return { total: 0, remaining: 0 };
    return { total: set.digests.length, remaining: set.digests.length - set.used.length, createdAt: set.createdAt };
  }

  async has(user: string): Promise<boolean> {
    return (await this.status(user)).remaining > 0;
  }

  /**
   * Spends one code: true once for each code of the current set, false for a wrong, used or
   * old one. Callers check the first factor before this, so the failure limit cannot be used
   * by a stranger to lock anyone out.
   */
  async use(user: string, code: string): Promise<boolean> {
    const failKey = `recovery-fail:${user}`;
    if ((await this.store.guards.peek(failKey)).count >= MAX_FAILURES) {
      throw new CountersignError(429, 'recovery_locked', 'too many wrong recovery codes; wait 15 minutes');
    }
    const set = await this.read(user);
    const typed = normaliseRecoveryCode(code);
    let index = -1;
    if (set && /^[a-z2-7]{12}$/.test(typed)) {
      const given = this.digest(user, set.id, typed);
      // Every digest is compared, in constant time, whichever matches.
      set.digests.forEach((d, i) => {
        if (timingSafeEqual(Buffer.from(d, 'base64url'), given)) index = i;
      });
    }
    if (set && index >= 0 && (await this.store.guards.claimOnce(`recovery-used:${user}:${set.id}:${index}`, USED_MS))) {
      set.used = [...new Set([...set.used, index])];
      await this.store.settings.put('recovery', user, JSON.stringify(set));
      return true;
    }
    await this.store.guards.hit(failKey, FAIL_WINDOW_MS);
    return false;
  }

  /** Forgets a user's codes (the user was deleted, or an administrator revoked them). */
  async remove(user: string): Promise<void> {
    await this.store.settings.delete('recovery', user);
  }
}
