import type { Directory } from '../../src/core/directory.js';
import { verifyPassword, type ScryptCost } from '../../src/core/password.js';
import type { Store } from '../../src/store/store.js';

/** First factor against Countersign's own users (scrypt hashes in the store). */
export default function createLocalDirectory(deps: { store: Store; scrypt?: ScryptCost }): Directory {
  return {
    name: 'local',
    async verify(user, password) {
      const record = await deps.store.users.get(user);
      // verifyPassword spends the same time when the user or hash is missing.
      const ok = await verifyPassword(password, record?.passwordHash, deps.scrypt);
      return ok && record ? record.name : null;
    },
  };
}
