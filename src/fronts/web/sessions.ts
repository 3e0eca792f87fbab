import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { CountersignError } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import { SECURE_COOKIES_SETTING } from '../../http/server.js';
import type { Store, UserRecord } from '../../core/store.js';

export type Role = 'admin' | 'helpdesk';

export interface BrowserSession {
  user: string;
  /**
   * From the user record as it is now: get() overwrites what was stored at
   * sign-in, so a demotion takes effect on the very next request.
   */
  role: Role;
  csrf: string;
  createdAt: number;
  /**
   * When this session last proved the user's own second factor: its sign-in, or an invitation an
   * administrator vouched for. Absent for an enrolment-grace session (the password alone), and
   * for sessions made before this field existed (their createdAt stands in).
   */
  verifiedAt?: number;
  /** Opened on the password alone within the enrolment grace: it may make the first enrolment, and ends with it. */
  grace?: boolean;
}

/** Adding a way in (a passkey, a device, TOTP, recovery codes) needs the user's own factor this recently. */
export const STEP_UP_MS = 15 * 60_000;

/**
 * Whether this session proved the user's own factor within STEP_UP_MS: a session left open on a
 * desk, or opened on a password alone, cannot add a way back in. The console and the portal
 * apply the same rule.
 */
export const recentlyVerified = (s: BrowserSession, now: number): boolean =>
  !s.grace && now - (s.verifiedAt ?? s.createdAt) <= STEP_UP_MS;

export const SESSION_COOKIE = 'cs_console';
export const LOGIN_COOKIE = 'cs_console_login';
const IDLE_MS = 30 * 60 * 1000;
const MAX_MS = 8 * 3600 * 1000;

const digest = (s: string) => createHash('sha256').update(s).digest('base64url');

/**
 * Which sessions: the console's (an administrator or helpdesk user), or the self-service
 * portal's (any user, src/fronts/account). Same rules, their own cookie and keys.
 */
export interface SessionKind {
  /** Key prefix in the store. */
  name: string;
  cookie: string;
  /** Whether this user may hold such a session now; read again on every request. */
  admits(u: UserRecord): boolean;
}

export const CONSOLE_SESSIONS: SessionKind = { name: 'console', cookie: SESSION_COOKIE, admits: (u) => Boolean(u.role) };

export const readCookie = (req: Request, name: string): string | undefined => {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
};

export const setCookie = (req: Request, res: Response, name: string, value: string, maxAgeMs: number) => {
  // Behind a TLS-terminating proxy without trustProxy, req.secure is false although the browser
  // speaks HTTPS; http.secureCookies says so explicitly.
  const secure = req.secure || req.app.get(SECURE_COOKIES_SETTING) === true ? '; Secure' : '';
  res.append('set-cookie', `${name}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}${secure}`);
};

/**
 * Browser sessions (the console's and the portal's): a random id in an HttpOnly, SameSite=Strict cookie; the
 * store keeps only its digest, with an idle timeout inside an absolute one.
 * Every state-changing call must also carry the session's CSRF token.
 */
export class BrowserSessions {
  constructor(
    private store: Store,
    private kind: SessionKind = CONSOLE_SESSIONS,
  ) {}

  private sessionKey = (d: string) => `${this.kind.name}:${d}`;
  /** Digests of a user's sessions, so they can all be ended at once. */
  private userIndexKey = (user: string) => `${this.kind.name}-user:${user}`;
  /** When a user's sessions were last ended; sessions created up to then are void. */
  private revokedKey = (user: string) => `${this.kind.name}-revoked:${user}`;

  async create(req: Request, res: Response, user: string, role: Role, now: number, opts: { grace?: boolean } = {}): Promise<BrowserSession> {
    const id = newToken(32);
    const d = digest(id);
    const session: BrowserSession = { user, role, csrf: newToken(24), createdAt: now, ...(opts.grace ? { grace: true } : { verifiedAt: now }) };
    // Indexed before it exists, so no live session is ever missing from the index.
    await this.store.kv.addMember(this.userIndexKey(user), d, MAX_MS);
    await this.store.kv.set(this.sessionKey(d), JSON.stringify(session), IDLE_MS);
    setCookie(req, res, this.kind.cookie, id, MAX_MS);
    return session;
  }

  /**
   * The session of this request, refreshed, with the user's current role;
   * null when there is none, it expired or was ended, or its user has since
   * been deleted or lost their role (then it is destroyed too).
   */
  async get(req: Request, res: Response, now: number): Promise<BrowserSession | null> {
    const id = readCookie(req, this.kind.cookie);
    if (!id) return null;
    const key = this.sessionKey(digest(id));
    const raw = await this.store.kv.get(key);
    if (!raw) return null;
    const s = JSON.parse(raw) as BrowserSession;
    if (now - s.createdAt > MAX_MS) {
      await this.store.kv.delete(key);
      return null;
    }
    const [u, revokedAt] = await Promise.all([this.store.users.get(s.user), this.revokedAt(s.user)]);
    // The revocation mark also voids a session that a request in flight during
    // endAll() wrote back below after endAll() had deleted it.
    if (!u || !this.kind.admits(u) || (revokedAt !== null && s.createdAt <= revokedAt)) {
      await this.store.kv.delete(key);
      setCookie(req, res, this.kind.cookie, '', 0);
      return null;
    }
    await this.store.kv.set(key, raw, IDLE_MS);
    // A portal session's user may have no role: the portal never reads it.
    return { ...s, role: u.role! };
  }

  async destroy(req: Request, res: Response): Promise<void> {
    const id = readCookie(req, this.kind.cookie);
    if (id) await this.store.kv.delete(this.sessionKey(digest(id)));
    setCookie(req, res, this.kind.cookie, '', 0);
  }

  /** Ends every session of this kind of a user, on every instance; returns how many were live. */
  async endAll(user: string, now: number): Promise<number> {
    await this.store.kv.set(this.revokedKey(user), String(now), MAX_MS);
    const digests = await this.store.kv.members(this.userIndexKey(user));
    const live = await Promise.all(
      digests.map(async (d) => {
        const existed = (await this.store.kv.get(this.sessionKey(d))) !== null;
        await this.store.kv.delete(this.sessionKey(d));
        return existed;
      }),
    );
    await this.store.kv.delete(this.userIndexKey(user));
    return live.filter(Boolean).length;
  }

  /** True when the user's sessions were ended at or after `since` (a sign-in begun before then must not finish). */
  async endedSince(user: string, since: number): Promise<boolean> {
    const at = await this.revokedAt(user);
    return at !== null && at >= since;
  }

  private async revokedAt(user: string): Promise<number | null> {
    const v = await this.store.kv.get(this.revokedKey(user));
    return v === null ? null : Number(v);
  }

  /** Checks the CSRF header of a state-changing request, in constant time. */
  checkCsrf(req: Request, s: Pick<BrowserSession, 'csrf'>): void {
    const given = Buffer.from(req.get('x-csrf-token') ?? '');
    const want = Buffer.from(s.csrf);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new CountersignError(403, 'csrf', `missing or wrong CSRF token; reload the ${this.kind.name === 'console' ? 'console' : 'page'}`);
    }
  }
}
