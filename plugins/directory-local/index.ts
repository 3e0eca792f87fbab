import type { Directory, DirectoryUser } from '../../src/core/directory.js';
import { DEFAULT_SCRYPT, hashPassword, needsRehash, verifyPassword, type ScryptCost } from '../../src/core/password.js';
import type { Store, UserRecord } from '../../src/core/store.js';

const asUser = (u: UserRecord): DirectoryUser => ({
  login: u.name,
  id: u.name,
  displayName: u.displayName,
  email: u.email,
  groups: [],
  state: 'active',
});

/**
 * First factor against Countersign's own users (scrypt hashes in the store). A hash made
 * with an older cost is replaced at the next good login, while the password is at hand.
 */
export default function createLocalDirectory(deps: { store: Store; scrypt?: ScryptCost; name?: string; realms?: string[] }): Directory {
  const cost = deps.scrypt ?? DEFAULT_SCRYPT;
  return {
    name: deps.name ?? 'local',
    realms: deps.realms ?? [],
    ownsRecords: true,
    async verify(login, password) {
      const record = await deps.store.users.get(login);
      // verifyPassword spends the same time when the user or hash is missing. A directory
      // user's record has no password here: its password is the directory's.
      const ok = await verifyPassword(password, record?.directory ? undefined : record?.passwordHash, cost);
      if (!ok || !record) return { ok: false, reason: 'invalid' };
      if (needsRehash(record.passwordHash!, cost)) {
        // Only if the hash is still the one checked: a password changed meanwhile stays changed.
        await deps.store.users.replacePasswordHash(record.name, record.passwordHash!, await hashPassword(password, cost)).catch(() => false);
      }
      return { ok: true, user: asUser(record) };
    },
    async lookup(login) {
      const record = await deps.store.users.get(login);
      return record && !record.directory ? asUser(record) : null;
    },
    async *users() {
      for (let after: string | undefined, more = true; more; ) {
        const page = await deps.store.users.list({ after, limit: 500 });
        for (const u of page.users) if (!u.directory) yield asUser(u);
        after = page.next;
        more = Boolean(page.next);
      }
    },
    async status() {
      return { reachable: true, detail: 'the store' };
    },
    async close() {},
  };
}
