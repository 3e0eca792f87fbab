import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { CountersignError } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { Store } from '../../store/store.js';

export type Role = 'admin' | 'helpdesk';

export interface ConsoleSession {
  user: string;
  role: Role;
  csrf: string;
  createdAt: number;
}

export const SESSION_COOKIE = 'cs_console';
export const LOGIN_COOKIE = 'cs_console_login';
const IDLE_MS = 30 * 60 * 1000;
const MAX_MS = 8 * 3600 * 1000;

const digest = (s: string) => createHash('sha256').update(s).digest('base64url');

export const readCookie = (req: Request, name: string): string | undefined => {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
};

export const setCookie = (req: Request, res: Response, name: string, value: string, maxAgeMs: number) => {
  const secure = req.secure ? '; Secure' : '';
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
    const session: ConsoleSession = { user, role, csrf: newToken(24), createdAt: now };
    await this.store.kv.set(`console:${digest(id)}`, JSON.stringify(session), IDLE_MS);
    setCookie(req, res, SESSION_COOKIE, id, MAX_MS);
    return session;
  }

  /** The session of this request, refreshed; null when there is none or it expired. */
  async get(req: Request, now: number): Promise<ConsoleSession | null> {
    const id = readCookie(req, SESSION_COOKIE);
    if (!id) return null;
    const key = `console:${digest(id)}`;
    const raw = await this.store.kv.get(key);
    if (!raw) return null;
    const s = JSON.parse(raw) as ConsoleSession;
    if (now - s.createdAt > MAX_MS) {
      await this.store.kv.delete(key);
      return null;
    }
    await this.store.kv.set(key, raw, IDLE_MS);
    return s;
  }

  async destroy(req: Request, res: Response): Promise<void> {
    const id = readCookie(req, SESSION_COOKIE);
    if (id) await this.store.kv.delete(`console:${digest(id)}`);
    setCookie(req, res, SESSION_COOKIE, '', 0);
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
