import type { Directory } from '../../src/core/directory.js';
import { DEFAULT_SCRYPT, hashPassword, needsRehash, verifyPassword, type ScryptCost } from '../../src/core/password.js';
import type { Store } from '../../src/core/store.js';

/**
 * First factor against Countersign's own users (scrypt hashes in the store). A hash made
 * with an older cost is replaced at the next good login, while the password is at hand.
 */
export default function createLocalDirectory(deps: { store: Store; scrypt?: ScryptCost }): Directory {
  const cost = deps.scrypt ?? DEFAULT_SCRYPT;
  return {
    name: 'local',
    async verify(user, password) {
      const record = await deps.store.users.get(user);
      // verifyPassword spends the same time when the user or hash is missing.
      const ok = await verifyPassword(password, record?.passwordHash, cost);
      if (!ok || !record) return null;
      if (needsRehash(record.passwordHash!, cost)) {
        // Only if the hash is still the one checked: a password changed meanwhile stays changed.
        await deps.store.users.replacePasswordHash(record.name, record.passwordHash!, await hashPassword(password, cost)).catch(() => false);
      }
      return record.name;
    },
  };
}
