import type { Clock } from './clock.js';

/** Something that keeps a user signed in (console or portal sessions, OpenID Connect grants). */
export interface SessionHolder {
  /** How it is named in audit details: console, account, oidc. */
  readonly name: string;
  /** Ends every session of this user on every instance; returns how many were live (when known). */
  endAll(user: string, now: number): Promise<number>;
}

/** How many sessions each holder ended, and in all. */
export interface SessionsEnded {
  total: number;
  by: Record<string, number>;
}

/**
 * Every way a user stays signed in, in one place: the console's and the portal's browser
 * sessions and the OpenID Connect grants (sessions, refresh and access tokens) register here,
 * so a password reset, "revoke sessions", a factor reset or a deletion ends all of them, not
 * only the ones the caller happens to know about.
 */
export class UserSessions {
  private holders: SessionHolder[] = [];

  constructor(private clock: Clock) {}

  register(holder: SessionHolder): void {
    this.holders.push(holder);
  }

  /** Ends them all; returns how many each holder ended. A holder that fails does not stop the others, then throws. */
  async endAll(user: string): Promise<SessionsEnded> {
    const now = this.clock.now();
    const results = await Promise.allSettled(this.holders.map((h) => h.endAll(user, now)));
    const ended: Record<string, number> = {};
    let failure: unknown;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') ended[this.holders[i]!.name] = r.value;
      else failure ??= r.reason;
    });
    // An incident response that half worked must say so, not report success.
    if (failure) throw failure;
    return { total: Object.values(ended).reduce((a, b) => a + b, 0), by: ended };
  }
}
