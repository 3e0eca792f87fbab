import { createHash } from 'node:crypto';
import { conflict, CountersignError, notFound } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { Store } from '../../store/store.js';

const KIND = 'bridge-credential';
const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

export interface BridgeCredential {
  name: string;
  /** A single workstation, or a fleet of them sharing one credential. */
  scope: 'workstation' | 'fleet';
  createdAt: number;
}

/**
 * API credentials of credential providers: per workstation or per fleet.
 * Only a digest of each token is stored; the token is shown once.
 */
export class BridgeCredentials {
  constructor(private store: Store) {}

  async create(name: string, scope: BridgeCredential['scope'], now: number): Promise<{ credential: BridgeCredential; token: string }> {
    const all = await this.store.settings.list(KIND);
    for (const v of all.values()) if ((JSON.parse(v) as BridgeCredential).name === name) throw conflict('credential_exists', `bridge credential '${name}' already exists`);
    const token = `csb_${newToken(32)}`;
    const credential: BridgeCredential = { name, scope, createdAt: now };
    await this.store.settings.put(KIND, digest(token), JSON.stringify(credential));
    return { credential, token };
  }

  async list(): Promise<BridgeCredential[]> {
    return [...(await this.store.settings.list(KIND)).values()].map((v) => JSON.parse(v) as BridgeCredential);
  }

  async revoke(name: string): Promise<void> {
    for (const [key, v] of await this.store.settings.list(KIND)) {
      if ((JSON.parse(v) as BridgeCredential).name === name) {
        await this.store.settings.delete(KIND, key);
        return;
      }
    }
    throw notFound('bridge_credential', name);
  }

  /** The credential a bearer token belongs to; a 401 for unknown or revoked ones. */
  async authenticate(header: string | undefined): Promise<BridgeCredential> {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    const raw = m ? await this.store.settings.get(KIND, digest(m[1]!)) : null;
    if (!raw) throw new CountersignError(401, 'bridge_unauthorized', 'unknown or revoked bridge credential (Authorization: Bearer csb_…)');
    return JSON.parse(raw) as BridgeCredential;
  }
}
