import { createHash } from 'node:crypto';
import { conflict, CountersignError, badRequest, notFound } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { AccessPolicy } from '../../core/policy.js';
import type { Store } from '../../core/store.js';

const KIND = 'bridge-credential';
const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

export const WORKSTATION_PATTERN = /^[A-Za-z0-9._*-]{1,64}$/;

export interface BridgeCredential {
  name: string;
  /** A single workstation, or a fleet of them sharing one credential. */
  scope: 'workstation' | 'fleet';
  /**
   * The workstation names this credential may speak for (Windows names, compared without
   * case; `*` matches any run of characters in a fleet pattern such as `PC-*`). A
   * workstation credential has exactly one name and no wildcard.
   */
  workstations: string[];
  /** Group policy for logins through this credential, over the default. */
  policy?: AccessPolicy;
  createdAt: number;
}

/** Records written before workstations were bound: a workstation credential is its own name. */
const normalise = (raw: string): BridgeCredential => {
  const c = JSON.parse(raw) as BridgeCredential;
  return { ...c, workstations: c.workstations ?? (c.scope === 'workstation' ? [c.name] : ['*']) };
};

const matches = (pattern: string, name: string) =>
  new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`, 'i').test(name);

/**
 * API credentials of credential providers: per workstation or per fleet.
 * Only a digest of each token is stored; the token is shown once.
 */
export class BridgeCredentials {
  constructor(private store: Store) {}

  async create(
    name: string,
    scope: BridgeCredential['scope'],
    now: number,
    workstations?: string[],
    policy?: AccessPolicy,
  ): Promise<{ credential: BridgeCredential; token: string }> {
    const bound = workstations?.length ? [...new Set(workstations)] : scope === 'workstation' ? [name] : ['*'];
    for (const w of bound) {
      if (!WORKSTATION_PATTERN.test(w)) throw badRequest('bad_workstation', `'${w}' is not a workstation name or pattern (letters, digits, . _ - and *)`);
    }
    if (scope === 'workstation' && (bound.length !== 1 || bound[0]!.includes('*'))) {
      throw badRequest('bad_workstation', 'a workstation credential is bound to exactly one workstation name, without *');
    }
    const all = await this.store.settings.list(KIND);
    for (const v of all.values()) if (normalise(v).name === name) throw conflict('credential_exists', `bridge credential '${name}' already exists`);
    const token = `csb_${newToken(32)}`;
    const credential: BridgeCredential = { name, scope, workstations: bound, ...(policy ? { policy } : {}), createdAt: now };
    await this.store.settings.put(KIND, digest(token), JSON.stringify(credential));
    return { credential, token };
  }

  async list(): Promise<BridgeCredential[]> {
    return [...(await this.store.settings.list(KIND)).values()].map(normalise);
  }

  async revoke(name: string): Promise<void> {
    for (const [key, v] of await this.store.settings.list(KIND)) {
      if (normalise(v).name === name) {
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
    return normalise(raw);
  }

  /** A credential speaks only for the workstations it is bound to. */
  requireWorkstation(c: BridgeCredential, workstation: string): void {
    if (!c.workstations.some((p) => matches(p, workstation))) {
      throw new CountersignError(403, 'workstation_not_allowed', `bridge credential '${c.name}' is not bound to workstation '${workstation}'`);
    }
  }

  /** What a phone shows for a login this credential opened without naming a workstation. */
  label(c: BridgeCredential): string {
    return c.scope === 'workstation' ? c.workstations[0]! : c.name;
  }
}
