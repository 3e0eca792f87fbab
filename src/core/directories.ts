import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { FAILURE_WORDS, type Directory, type DirectoryUser, type VerifyFailure } from './directory.js';
import { CountersignError } from './errors.js';
import type { Store, UserRecord } from './store.js';

export type FirstFactorResult =
  | { ok: true; name: string; user: DirectoryUser; directory: string }
  | { ok: false; reason: VerifyFailure; message: string };

/** A refusal as an error a front turns into its own answer (an Access-Reject, a page, a 4xx). */
export function firstFactorError(r: Extract<FirstFactorResult, { ok: false }>): CountersignError {
  if (r.reason === 'invalid') return new CountersignError(401, 'first_factor_failed', 'wrong user name or password');
  if (r.reason === 'unavailable') return new CountersignError(503, 'directory_unavailable', r.message);
  return new CountersignError(403, r.reason, r.message);
}

/** Where a directory user's Countersign record is found: settings kind → `${directory}:${id}` → record name. */
const LINK_KIND = 'directory-link';
/** The last sync of each directory. */
const SYNC_KIND = 'directory-sync';

export interface SyncReport {
  directory: string;
  at: number;
  tookMs: number;
  /** Users the directory listed, records made or refreshed, of them not active, and records marked removed. */
  users: number;
  records: number;
  inactive: number;
  removed: string[];
}

/** One directory's users as Countersign keeps them between sign-ins. */
export interface DirectoryRecordFields {
  directory: string;
  directoryId: string;
  directoryLogin: string;
  /** JSON list of group names at the last sign-in or sync. */
  directoryGroups: string;
  /** active, or why the directory refuses the account (disabled, expired…), or removed. */
  directoryState: DirectoryUser['state'] | 'removed';
  directorySeenAt: number;
  directoryAttributes: string;
}

const realmOf = (login: string): { realm?: string; bare: string } => {
  const slash = login.indexOf('\\');
  if (slash > 0) return { realm: login.slice(0, slash), bare: login.slice(slash + 1) };
  const at = login.lastIndexOf('@');
  if (at > 0) return { realm: login.slice(at + 1), bare: login.slice(0, at) };
  return { bare: login };
};

/**
 * The configured directories, in order, and the Countersign records of their users. A login
 * that names a realm (user@corp.example.org, CORP\user) goes to the directory that lists the
 * realm; any other goes to each directory in order until one knows the user. A directory user
 * gets a record on first sign-in, keyed by the directory's stable id (objectGUID, entryUUID),
 * so a rename in the directory keeps the user's factors, devices and lockouts; the record keeps
 * the name it was created with.
 */
export class Directories {
  constructor(
    readonly list: Directory[],
    private store: Store,
    private clock: Clock,
    private log: Logger,
  ) {
    if (list.length === 0) throw new Error('at least one directory is needed');
  }

  /** The directories a login may belong to, most specific first. */
  private candidates(login: string): Directory[] {
    const { realm } = realmOf(login);
    if (realm) {
      const named = this.list.filter((d) => d.realms.some((r) => r.toLowerCase() === realm.toLowerCase()));
      // An e-mail-like login in a directory that lists no realms (the local one) is still a name.
      if (named.length) return named;
    }
    return this.list;
  }

  /** Canonical names of '@' logins (UPN, mail) as a directory resolved them: 5 minutes, at most 10,000. */
  private identified = new Map<string, { key: string; until: number }>();

  /**
   * The throttle's name for the account a login means: the directory's login name (sAMAccountName,
   * uid, the local name) in lower case, whatever realm or case was typed, so `bob`, `BOB`,
   * `CORP\bob` and `bob@corp.example.org` share one budget. A name without '@' tells it at once;
   * a UPN or mail login (whose local part may differ from the login name) is looked up in the
   * directories that may hold it, and remembered for a few minutes. A login nobody knows keeps
   * its own folded name: its failures still count, against nobody real.
   */
  accountKey(login: string): string | Promise<string> {
    const { bare } = realmOf(login);
    const folded = bare.toLowerCase();
    if (!login.includes('@')) return folded;
    const now = this.clock.now();
    const cached = this.identified.get(login.toLowerCase());
    if (cached && cached.until > now) return cached.key;
    return (async () => {
      let key = folded;
      for (const d of this.candidates(login)) {
        if (!d.identify) continue;
        const canonical = await d.identify(login).catch(() => null);
        if (canonical) {
          key = canonical.toLowerCase();
          break;
        }
      }
      if (this.identified.size >= 10_000) this.identified.clear();
      this.identified.set(login.toLowerCase(), { key, until: now + 5 * 60_000 });
      return key;
    })();
  }

  byName(name: string): Directory | undefined {
    return this.list.find((d) => d.name === name);
  }

  /**
   * Checks a first factor. The local directory's users are their records; a directory user's
   * record is found (or made) by the directory's id and refreshed with what the directory says.
   */
  async verify(login: string, password: string): Promise<FirstFactorResult> {
    let unavailable: string | undefined;
    for (const d of this.candidates(login)) {
      const r = await d.verify(login, password);
      if (!r.ok) {
        if (r.reason === 'invalid') continue;
        if (r.reason === 'unavailable') {
          // Another directory may still know the user, but a "wrong password" could be this one's.
          unavailable = `${d.name}: ${r.detail ?? 'unreachable'}`;
          continue;
        }
        // A lock is reported whatever the password (AD's 775, OpenLDAP's ppolicy): to someone who
        // has not proved the password it must sound like any wrong password.
        return { ok: false, reason: r.reason, message: FAILURE_WORDS[r.reason === 'account_locked' ? 'invalid' : r.reason] };
      }
      // The directory has just accepted the password: whatever its attributes said, the account works.
      const name = await this.recordFor(d, { ...r.user, state: 'active' });
      if (!name) return { ok: false, reason: 'not_allowed', message: FAILURE_WORDS.not_allowed };
      return { ok: true, name, user: r.user, directory: d.name };
    }
    if (unavailable) {
      this.log.warn({ login: login.slice(0, 128), detail: unavailable }, 'first factor: a directory is unreachable; the login is denied');
      return { ok: false, reason: 'unavailable', message: FAILURE_WORDS.unavailable };
    }
    return { ok: false, reason: 'invalid', message: FAILURE_WORDS.invalid };
  }

  /** The record of a user some directory knows, made if needed (sync, enablement by group). */
  async lookup(login: string): Promise<{ name: string; user: DirectoryUser; directory: string } | null> {
    for (const d of this.candidates(login)) {
      const user = await d.lookup(login).catch((err: unknown) => {
        this.log.warn({ err, directory: d.name }, 'directory lookup failed');
        throw new CountersignError(503, 'directory_unavailable', FAILURE_WORDS.unavailable);
      });
      if (!user) continue;
      const name = await this.recordFor(d, user);
      return name ? { name, user, directory: d.name } : null;
    }
    return null;
  }

  /**
   * The record name for a directory's user, refreshed with the directory's view; null when
   * the local record of that name belongs to someone else and cannot be made.
   */
  async recordFor(d: Directory, user: DirectoryUser): Promise<string | null> {
    if (d.ownsRecords) return user.login;
    const linkId = `${d.name}:${user.id}`;
    const fields: Partial<UserRecord> = {
      directory: d.name,
      directoryId: user.id,
      directoryLogin: user.login,
      directoryGroups: JSON.stringify(user.groups),
      directoryState: user.state,
      directorySeenAt: this.clock.now(),
      directoryAttributes: JSON.stringify(user.attributes ?? {}),
      displayName: user.displayName,
      email: user.email,
    };
    const linked = await this.store.settings.get(LINK_KIND, linkId);
    if (linked && (await this.store.users.update(linked, fields))) return linked;
    // First sign-in: the login name if it is free (lower case: directory names ignore case).
    const base = user.login.toLowerCase();
    for (const name of [base, `${base}@${d.name}`]) {
      const record: UserRecord = { name, createdAt: this.clock.now(), otpEnabled: false, pushEnabled: false, ...fields };
      if (await this.store.users.create(record)) {
        await this.store.settings.put(LINK_KIND, linkId, name);
        return name;
      }
      const existing = await this.store.users.get(name);
      if (existing?.directory === d.name && existing.directoryId === user.id) {
        await this.store.settings.put(LINK_KIND, linkId, name);
        await this.store.users.update(name, fields);
        return name;
      }
    }
    this.log.warn({ directory: d.name, login: user.login }, 'no free record name for a directory user');
    return null;
  }

  /** Marks the records of users a directory no longer has; returns their names. */
  async markRemoved(d: Directory, seenIds: Set<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const [linkId, name] of await this.store.settings.list(LINK_KIND)) {
      if (!linkId.startsWith(`${d.name}:`) || seenIds.has(linkId.slice(d.name.length + 1))) continue;
      if (await this.store.users.update(name, { directoryState: 'removed', directorySeenAt: this.clock.now() })) removed.push(name);
    }
    return removed;
  }

  /**
   * Brings the records of a directory's users up to date: a record for every user (made if
   * missing), their groups and account state, and `removed` for users the directory no
   * longer has. A user the directory disables or removes can no longer log in anywhere.
   */
  async sync(d: Directory): Promise<SyncReport> {
    const started = this.clock.now();
    const seen = new Set<string>();
    let records = 0;
    let inactive = 0;
    try {
      for await (const user of d.users()) {
        seen.add(user.id);
        if (await this.recordFor(d, user)) records++;
        if (user.state !== 'active') inactive++;
      }
    } catch (err) {
      if (err instanceof CountersignError) throw err;
      // A sync cut short marks nobody removed: only a complete listing says who is gone.
      this.log.warn({ err, directory: d.name, seen: seen.size }, 'directory sync failed');
      throw new CountersignError(503, 'directory_unavailable', `${d.name}: ${FAILURE_WORDS.unavailable}`);
    }
    const removed = d.ownsRecords ? [] : await this.markRemoved(d, seen);
    const report: SyncReport = { directory: d.name, at: this.clock.now(), tookMs: this.clock.now() - started, users: seen.size, records, inactive, removed };
    await this.store.settings.put(SYNC_KIND, d.name, JSON.stringify(report));
    this.log.info(report, 'directory synchronised');
    return report;
  }

  /** Each directory: reachable or not, and its last sync. */
  async status(): Promise<{ name: string; realms: string[]; local: boolean; reachable: boolean; detail?: string; lastSync?: SyncReport }[]> {
    const syncs = await this.store.settings.list(SYNC_KIND);
    return Promise.all(
      this.list.map(async (d) => {
        const s = await d.status().catch((err: Error) => ({ reachable: false, detail: err.message }));
        const last = syncs.get(d.name);
        return { name: d.name, realms: d.realms, local: Boolean(d.ownsRecords), ...s, ...(last ? { lastSync: JSON.parse(last) as SyncReport } : {}) };
      }),
    );
  }

  /**
   * Syncs every directory (but the local one) once per interval across all instances: the
   * first instance to claim the interval does it.
   */
  startSchedule(intervalMs: number, onError: (err: unknown) => void): () => void {
    if (intervalMs <= 0) return () => {};
    const tick = async () => {
      const slot = Math.floor(this.clock.now() / intervalMs);
      for (const d of this.list) {
        if (d.ownsRecords) continue;
        if (await this.store.guards.claimOnce(`directory-sync:${d.name}:${slot}`, intervalMs * 2)) await this.sync(d);
      }
    };
    const timer = setInterval(() => void tick().catch(onError), Math.min(intervalMs, 60_000));
    timer.unref();
    return () => clearInterval(timer);
  }

  async close(): Promise<void> {
    await Promise.all(this.list.map((d) => d.close().catch(() => {})));
  }
}

/** A record's groups, as its directory reported them last. */
export const groupsOf = (u: UserRecord): string[] => (u.directoryGroups ? (JSON.parse(u.directoryGroups) as string[]) : []);
