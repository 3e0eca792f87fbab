import { createHash } from 'node:crypto';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Store } from '../../core/store.js';
import type { OidcClients } from './clients.js';

/** Models oidc-provider stores without a lifetime still expire: nothing leaks. */
const DEFAULT_TTL_MS = 14 * 24 * 3600 * 1000;
/**
 * Records outlive their expiry a little: oidc-provider checks `exp` itself,
 * and a CIBA request found expired answers expired_token, not invalid_grant.
 */
const GRACE_MS = 5 * 60 * 1000;

/** Ids are bearer secrets (tokens, codes, the session cookie): the store sees only their digest. */
export const idDigest = (id: string) => createHash('sha256').update(id).digest('base64url');

/** A user's records (sessions, grants, codes, tokens) by `Model:digest`, so they can all be ended at once. */
const accountKey = (accountId: string) => `oidc:account:${idDigest(accountId)}`;
/** Longer than anything the provider keeps for an account (refresh tokens: 14 days). */
const ACCOUNT_INDEX_MS = 15 * 24 * 3600 * 1000;

/**
 * Ends everything the provider keeps for a user: sessions (single sign-on stops), grants, and
 * the codes, access and refresh tokens issued from them, on every instance. Returns how many
 * sessions and grants there were. Called with the user's other sessions (src/core/sessions.ts):
 * a password reset, "revoke sessions", a factor reset, a deletion.
 */
export async function endAccount(store: Store, accountId: string): Promise<number> {
  const key = accountKey(accountId);
  const refs = await store.kv.members(key);
  let ended = 0;
  await Promise.all(
    refs.map(async (ref) => {
      if (ref.startsWith('grant:')) {
        // Everything issued from a grant, found through its index (revokeByGrantId's way).
        const members = await store.kv.members(`oidc:${ref}`);
        await Promise.all(members.map((m) => store.kv.delete(`oidc:${m}`)));
        await store.kv.delete(`oidc:${ref}`);
        return;
      }
      if ((ref.startsWith('Session:') || ref.startsWith('Grant:')) && (await store.kv.get(`oidc:${ref}`)) !== null) ended++;
      await store.kv.delete(`oidc:${ref}`);
    }),
  );
  await store.kv.delete(key);
  return ended;
}

/**
 * What is written for a record: oidc-provider puts the id itself in the payload
 * (`jti`), and an interaction the session cookie (`session.cookie`, which
 * oidc-provider never reads back); both would undo the digested keys.
 */
function withoutSecrets(payload: AdapterPayload): AdapterPayload {
  const { jti: _id, ...rest } = payload;
  if (rest.session && typeof rest.session === 'object') {
    const { cookie: _cookie, ...session } = rest.session as Record<string, unknown>;
    rest.session = session as AdapterPayload['session'];
  }
  return rest;
}

/**
 * oidc-provider's storage on Countersign's Store: every model instance is one
 * short-lived value (a Redis key with a TTL, or memory) under the digest of
 * its id, with indexes for uid, user code and grant that hold digests too.
 * Consumption is its own claim-once key, so an authorization code (or a
 * rotating refresh token) cannot be redeemed twice even when two instances race.
 * Dynamic clients live in the settings store (managed by the admin API).
 */
export function storeAdapter(store: Store, clients: OidcClients) {
  return class StoreAdapter implements Adapter {
    constructor(private readonly model: string) {}

    /** `Model:digest`, the form the indexes hold. */
    private ref(id: string) {
      return `${this.model}:${idDigest(id)}`;
    }

    private key(id: string) {
      return `oidc:${this.ref(id)}`;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const ttl = expiresIn ? expiresIn * 1000 + GRACE_MS : DEFAULT_TTL_MS;
      const ref = this.ref(id);
      await store.kv.set(this.key(id), JSON.stringify(withoutSecrets(payload)), ttl);
      if (payload.uid) await store.kv.set(`oidc:uid:${idDigest(payload.uid)}`, ref, ttl);
      if (payload.userCode) await store.kv.set(`oidc:usercode:${idDigest(payload.userCode)}`, ref, ttl);
      if (payload.grantId) await store.kv.addMember(`oidc:grant:${idDigest(payload.grantId)}`, ref, ttl);
      if (payload.accountId) {
        const account = accountKey(String(payload.accountId));
        await store.kv.addMember(account, ref, ACCOUNT_INDEX_MS);
        if (payload.grantId) await store.kv.addMember(account, `grant:${idDigest(payload.grantId)}`, ACCOUNT_INDEX_MS);
      }
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') return (await clients.load(id)) as AdapterPayload | undefined;
      const payload = await this.load(this.ref(id));
      return payload && { ...payload, jti: id };
    }

    private async load(ref: string): Promise<AdapterPayload | undefined> {
      const [raw, consumed] = await Promise.all([store.kv.get(`oidc:${ref}`), store.kv.get(`oidc:${ref}:consumed`)]);
      if (!raw) return undefined;
      const payload = JSON.parse(raw) as AdapterPayload;
      return consumed ? { ...payload, consumed: Number(consumed) } : payload;
    }

    // Found through an index, a record comes back without its id (only the digest is kept):
    // oidc-provider only reads sessions found by uid. The user-code lookup serves the device
    // flow, which is not enabled.
    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const ref = await store.kv.get(`oidc:uid:${idDigest(uid)}`);
      return ref ? this.load(ref) : undefined;
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const ref = await store.kv.get(`oidc:usercode:${idDigest(userCode)}`);
      return ref ? this.load(ref) : undefined;
    }

    /**
     * oidc-provider reads `consumed` and then calls this: two redemptions racing (on two
     * instances, or one) could both read "not consumed". The claim here is the atomic step:
     * whoever finds it already taken fails with invalid_grant, and, as for any reuse of a
     * code (RFC 6749 §4.1.2), what was issued from the grant is revoked.
     */
    async consume(id: string): Promise<void> {
      const before = await store.kv.setIfAbsent(`${this.key(id)}:consumed`, String(Math.floor(Date.now() / 1000)), DEFAULT_TTL_MS);
      if (before === null) return;
      const raw = await store.kv.get(this.key(id));
      const grantId = raw ? (JSON.parse(raw) as AdapterPayload).grantId : undefined;
      if (grantId) await this.revokeByGrantId(grantId);
      const label = this.model.replace(/[A-Z]/g, (c, i: number) => `${i ? ' ' : ''}${c.toLowerCase()}`);
      throw new errors.InvalidGrant(`${label} already consumed`);
    }

    async destroy(id: string): Promise<void> {
      await store.kv.delete(this.key(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      const key = `oidc:grant:${idDigest(grantId)}`;
      const members = await store.kv.members(key);
      await Promise.all(members.map((m) => store.kv.delete(`oidc:${m}`)));
      await store.kv.delete(key);
    }
  };
}
