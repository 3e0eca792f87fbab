import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { CountersignError } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import { SECURE_COOKIES_SETTING } from '../../http/server.js';
import type { Store } from '../../core/store.js';

export type Role = 'admin' | 'helpdesk';

export interface ConsoleSession {
  user: string;
  /**
   * From the user record as it is now: get() overwrites what was stored at
   * sign-in, so a demotion takes effect on the very next request.
   */
  role: Role;
  csrf: string;
  createdAt: number;
}

export const SESSION_COOKIE = 'cs_console';
export const LOGIN_COOKIE = 'cs_console_login';
const IDLE_MS = 30 * 60 * 1000;
const MAX_MS = 8 * 3600 * 1000;

const digest = (s: string) => createHash('sha256').update(s).digest('base64url');
const sessionKey = (d: string) => `console:${d}`;
/** Digests of a user's sessions, so they can all be ended at once. */
const userIndexKey = (user: string) => `console-user:${user}`;
/** When a user's sessions were last ended; sessions created up to then are void. */
const revokedKey = (user: string) => `console-revoked:${user}`;

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
 * Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the
 * store keeps only its digest, with an idle timeout inside an absolute one.
 * Every state-changing call must also carry the session's CSRF token.
 */
export class ConsoleSessions {
  constructor(private store: Store) {}

  async create(req: Request, res: Response, user: string, role: Role, now: number): Promise<ConsoleSession> {
    const id = newToken(32);
    const d = digest(id);
    const session: ConsoleSession = { user, role, csrf: newToken(24), createdAt: now };
    // Indexed before it exists, so no live session is ever missing from the index.
    await this.store.kv.addMember(userIndexKey(user), d, MAX_MS);
    await this.store.kv.set(sessionKey(d), JSON.stringify(session), IDLE_MS);
    setCookie(req, res, SESSION_COOKIE, id, MAX_MS);
    return session;
  }

  /**
   * The session of this request, refreshed, with the user's current role;
   * null when there is none, it expired or was ended, or its user has since
   * been deleted or lost their role (then it is destroyed too).
   */
  async get(req: Request, res: Response, now: number): Promise<ConsoleSession | null> {
    const id = readCookie(req, SESSION_COOKIE);
    if (!id) return null;
    const key = sessionKey(digest(id));
    const raw = await this.store.kv.get(key);
    if (!raw) return null;
    const s = JSON.parse(raw) as ConsoleSession;
    if (now - s.createdAt > MAX_MS) {
      await this.store.kv.delete(key);
      return null;
    }
    const [u, revokedAt] = await Promise.all([this.store.users.get(s.user), this.revokedAt(s.user)]);
    // The revocation mark also voids a session that a request in flight during
    // endAll() wrote back below after endAll() had deleted it.
    if (!u?.role || (revokedAt !== null && s.createdAt <= revokedAt)) {
      await this.store.kv.delete(key);
      setCookie(req, res, SESSION_COOKIE, '', 0);
      return null;
    }
    await this.store.kv.set(key, raw, IDLE_MS);
    return { ...s, role: u.role };
  }

  async destroy(req: Request, res: Response): Promise<void> {
    const id = readCookie(req, SESSION_COOKIE);
    if (id) await this.store.kv.delete(sessionKey(digest(id)));
    setCookie(req, res, SESSION_COOKIE, '', 0);
  }

  /** Ends every console session of a user, on every instance; returns how many were live. */
  async endAll(user: string, now: number): Promise<number> {
    await this.store.kv.set(revokedKey(user), String(now), MAX_MS);
    const digests = await this.store.kv.members(userIndexKey(user));
    const live = await Promise.all(
      digests.map(async (d) => {
        const existed = (await this.store.kv.get(sessionKey(d))) !== null;
        await this.store.kv.delete(sessionKey(d));
        return existed;
      }),
    );
    await this.store.kv.delete(userIndexKey(user));
    return live.filter(Boolean).length;
  }

  /** True when the user's sessions were ended at or after `since` (a sign-in begun before then must not finish). */
  async endedSince(user: string, since: number): Promise<boolean> {
    const at = await this.revokedAt(user);
    return at !== null && at >= since;
  }

  private async revokedAt(user: string): Promise<number | null> {
    const v = await this.store.kv.get(revokedKey(user));
    return v === null ? null : Number(v);
  }

  /** Checks the CSRF header of a state-changing request, in constant time. */
  checkCsrf(req: Request, s: ConsoleSession): void {
    const given = Buffer.from(req.get('x-csrf-token') ?? '');
    const want = Buffer.from(s.csrf);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new CountersignError(403, 'csrf', 'missing or wrong CSRF token; reload the console');
    }
  }
}
