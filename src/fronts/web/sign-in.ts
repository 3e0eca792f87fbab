import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { AppContext } from '../../context.js';
import { readCookie, setCookie } from './sessions.js';

const digest = (s: string) => createHash('sha256').update(s).digest('base64url');

/** A sign-in past its password, waiting for the second factor. */
export interface PendingSignIn {
  /** Its store key (the cookie's digest under the prefix). */
  key: string;
  user: string;
  cid: string;
  /** When the password was checked. */
  at: number;
}

/**
 * The sign-ins in progress of the console and the self-service portal: the login a password
 * opened, bound to this browser by a cookie whose digest alone is stored, until the login's
 * deadline. Callers: the browser that typed the password (the cookie is the proof).
 */
export class PendingSignIns {
  constructor(
    private ctx: AppContext,
    private prefix: string,
    private cookie: string,
  ) {}

  async start(req: Request, res: Response, user: string, c: Challenge): Promise<void> {
    const token = newToken(24);
    const now = this.ctx.clock.now();
    await this.ctx.store.kv.set(`${this.prefix}:${digest(token)}`, JSON.stringify({ user, cid: c.id, at: now }), c.deadline - now);
    setCookie(req, res, this.cookie, token, c.deadline - now);
  }

  async get(req: Request): Promise<PendingSignIn> {
    const t = readCookie(req, this.cookie);
    const key = t ? `${this.prefix}:${digest(t)}` : '';
    const raw = t ? await this.ctx.store.kv.get(key) : null;
    if (!raw) throw new CountersignError(401, 'no_sign_in', 'no sign-in is in progress in this browser; start again');
    return { key, ...(JSON.parse(raw) as Omit<PendingSignIn, 'key'>) };
  }

  /** The approved login, with the sign-in spent and its cookie cleared; refused while it is not approved. */
  async finish(req: Request, res: Response): Promise<{ pending: PendingSignIn; challenge: Challenge }> {
    const pending = await this.get(req);
    const c = await this.ctx.engine.get(pending.cid);
    if (c?.state !== 'approved') {
      throw new CountersignError(403, `sign_in_${c?.state ?? 'expired'}`, `the sign-in is ${c?.state ?? 'expired'}; nothing was opened`);
    }
    await this.ctx.store.kv.delete(pending.key);
    setCookie(req, res, this.cookie, '', 0);
    return { pending, challenge: c };
  }
}
