import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Store } from '../../store/store.js';
import type { OidcClients } from './clients.js';

/** Models oidc-provider stores without a lifetime still expire: nothing leaks. */
const DEFAULT_TTL_MS = 14 * 24 * 3600 * 1000;
/**
 * Records outlive their expiry a little: oidc-provider checks `exp` itself,
 * and a CIBA request found expired answers expired_token, not invalid_grant.
 */
const GRACE_MS = 5 * 60 * 1000;
export const OIDC_CLIENT_KIND = 'oidc-client';

/**
 * oidc-provider's storage on Countersign's Store: every model instance is one
 * short-lived value (a Redis key with a TTL, or memory), with indexes for
 * uid, user code and grant. Consumption is its own claim-once key, so an
 * authorization code (or a rotating refresh token) cannot be redeemed twice
 * even when two instances race.
 * Dynamic clients live in the settings store (managed by the admin API).
 */
export function storeAdapter(store: Store, clients: OidcClients) {
  return class StoreAdapter implements Adapter {
    constructor(private readonly model: string) {}

    private key(id: string) {
      return `oidc:${this.model}:${id}`;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const ttl = expiresIn ? expiresIn * 1000 + GRACE_MS : DEFAULT_TTL_MS;
      await store.kv.set(this.key(id), JSON.stringify(payload), ttl);
      if (payload.uid) await store.kv.set(`oidc:uid:${payload.uid}`, id, ttl);
      if (payload.userCode) await store.kv.set(`oidc:usercode:${payload.userCode}`, id, ttl);
      if (payload.grantId) await store.kv.addMember(`oidc:grant:${payload.grantId}`, `${this.model}:${id}`, ttl);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') return (await clients.load(id)) as AdapterPayload | undefined;
      const [raw, consumed] = await Promise.all([store.kv.get(this.key(id)), store.kv.get(`${this.key(id)}:consumed`)]);
      if (!raw) return undefined;
      const payload = JSON.parse(raw) as AdapterPayload;
      return consumed ? { ...payload, consumed: Number(consumed) } : payload;
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const id = await store.kv.get(`oidc:uid:${uid}`);
      return id ? this.find(id) : undefined;
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const id = await store.kv.get(`oidc:usercode:${userCode}`);
      return id ? this.find(id) : undefined;
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
      const key = `oidc:grant:${grantId}`;
      const members = await store.kv.members(key);
      await Promise.all(members.map((m) => store.kv.delete(`oidc:${m}`)));
      await store.kv.delete(key);
    }
  };
}
