import { createHash } from 'node:crypto';
import type { Clock } from './clock.js';
import { CountersignError } from './errors.js';
import { newToken } from './ids.js';
import { fillTemplate, type Mailer } from './mail.js';
import type { Store } from './store.js';

export interface InvitationPolicy {
  ttlMs: number;
  /** Where users reach this server (read when the mail is made: development learns it at listen). */
  publicUrl: () => string;
  issuer: string;
  templates: { invitationSubject: string; invitationText: string };
}

/** One user's invitation: sent, or why not. */
export interface InvitationResult {
  name: string;
  ok: boolean;
  email?: string;
  expiresAt?: number;
  error?: string;
}

const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

/**
 * Enrolment invitations by mail: a link to the portal (`/account/#invite=<token>`) that,
 * together with the user's password, opens a portal session once, so a newcomer can enrol
 * their first factor. The token is random (192 bits), kept only as a digest, single use and
 * expiring; it sits in the URL fragment, so it reaches neither the server's access log nor a
 * Referer.
 */
export class Invitations {
  constructor(
    private store: Store,
    private clock: Clock,
    private mailer: Mailer,
    private policy: InvitationPolicy,
  ) {}

  get mailerKind(): string {
    return this.mailer.kind;
  }

  /** Sends one user an invitation; a user without an e-mail address or a mail server refusal is a result, not a throw. */
  async invite(name: string): Promise<InvitationResult> {
    const u = await this.store.users.get(name);
    if (!u) return { name, ok: false, error: `user '${name}' does not exist` };
    if (!u.email) return { name, ok: false, error: 'no e-mail address for this user' };
    if (u.directoryState && u.directoryState !== 'active') return { name, ok: false, email: u.email, error: `the account is ${u.directoryState} in the directory` };
    const token = newToken(24);
    const expiresAt = this.clock.now() + this.policy.ttlMs;
    await this.store.tokens.put('invite', digest(token), JSON.stringify({ user: name, expiresAt }), this.policy.ttlMs);
    const link = `${this.policy.publicUrl().replace(/\/+$/, '')}/account/#invite=${token}`;
    const values = {
      name,
      displayName: u.displayName ?? name,
      link,
      expires: new Date(expiresAt).toUTCString(),
      issuer: this.policy.issuer,
    };
    try {
      await this.mailer.send({
        to: u.email,
        subject: fillTemplate(this.policy.templates.invitationSubject, values),
        text: fillTemplate(this.policy.templates.invitationText, values),
      });
    } catch (err) {
      // An invitation that was not delivered must not stay usable.
      await this.store.tokens.take('invite', digest(token)).catch(() => null);
      const why = err instanceof CountersignError ? err.message : `the mail server refused: ${(err as Error).message}`;
      return { name, ok: false, email: u.email, error: why };
    }
    return { name, ok: true, email: u.email, expiresAt };
  }

  /** Invites each user in turn (a few at a time), reporting every result as it comes. */
  async inviteMany(names: string[], onResult?: (r: InvitationResult) => void): Promise<InvitationResult[]> {
    const unique = [...new Set(names)];
    const out: InvitationResult[] = new Array(unique.length);
    let next = 0;
    const worker = async () => {
      while (next < unique.length) {
        const i = next++;
        out[i] = await this.invite(unique[i]!);
        onResult?.(out[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, unique.length) }, worker));
    return out;
  }

  /**
   * Spends an invitation for `user` (whose password the caller has just checked). An unknown,
   * used or expired token, or one made for someone else, is refused; someone else's is put
   * back untouched, so a typo in the user name does not burn the newcomer's link.
   */
  async redeem(token: string, user: string): Promise<void> {
    const raw = await this.store.tokens.take('invite', digest(token));
    const inv = raw ? (JSON.parse(raw) as { user: string; expiresAt: number }) : null;
    if (!inv || inv.expiresAt <= this.clock.now()) {
      throw new CountersignError(410, 'invitation_invalid', 'This invitation link is unknown, already used or expired; ask your administrator for a new one.');
    }
    if (inv.user !== user) {
      await this.store.tokens.put('invite', digest(token), raw!, inv.expiresAt - this.clock.now());
      throw new CountersignError(403, 'invitation_other_user', 'This invitation is for another user; sign in with the user name it was sent to.');
    }
  }
}
