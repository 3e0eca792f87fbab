/**
 * The OIDC storage adapter's one-time consumption under races: a code (or a
 * rotating refresh token) redeemed by several requests at once — on one
 * instance or on two sharing Redis — is consumed by exactly one; the others
 * fail with invalid_grant and what the grant issued is revoked.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { errors } from 'oidc-provider';
import { systemClock } from '../../src/core/clock.js';
import { SecretBox } from '../../src/core/secretbox.js';
import { storeAdapter } from '../../src/fronts/oidc/adapter.js';
import { OidcClients } from '../../src/fronts/oidc/clients.js';
import { requirePeer } from '../helpers/peers.js';
import { storeKinds } from '../helpers/stores.js';

for (const kind of await storeKinds()) {
  describe(`OIDC adapter consumption (${kind.name} store)`, () => {
    after(() => kind.cleanup());

    it('one of several concurrent redemptions wins, across instances; the rest get invalid_grant and the grant is revoked', async (t) => {
      if (!requirePeer(t, kind.available, 'redis-server')) return;
      const stores = kind.shared(2, systemClock);
      const adapters = stores.map((store) => {
        const Adapter = storeAdapter(store, new OidcClients(store, new SecretBox(Buffer.alloc(32, 7)), []));
        return { codes: new Adapter('AuthorizationCode'), tokens: new Adapter('AccessToken') };
      });
      const [a, b] = adapters as [(typeof adapters)[0], (typeof adapters)[0]];
      t.after(() => Promise.all([...new Set(stores)].map((s) => s.close())));
      for (let round = 0; round < 20; round++) {
        const grantId = `grant-${round}-${Date.now()}`;
        const code = `code-${round}-${Math.random().toString(36).slice(2)}`;
        await a.codes.upsert(code, { grantId, clientId: 'rp', exp: Math.floor(Date.now() / 1000) + 60 }, 60);
        await a.tokens.upsert(`at-${code}`, { grantId, clientId: 'rp' }, 60);
        const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).codes.consume(code)));
        const won = results.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1, `round ${round}: ${results.map((r) => r.status).join(',')}`);
        for (const r of results) {
          if (r.status === 'rejected') {
            assert.ok(r.reason instanceof errors.InvalidGrant, String(r.reason));
            assert.match(String(r.reason.error_detail), /authorization code already consumed/);
          }
        }
        assert.equal(await a.tokens.find(`at-${code}`), undefined, 'what the grant issued is revoked');
        assert.equal(await b.codes.find(code), undefined, 'the code with it');
        await assert.rejects(b.codes.consume(code), errors.InvalidGrant, 'a later attempt fails too');
      }
      // A single, unraced redemption succeeds and revokes nothing.
      await a.codes.upsert('lonely', { grantId: 'g-lonely', clientId: 'rp' }, 60);
      await a.tokens.upsert('at-lonely', { grantId: 'g-lonely', clientId: 'rp' }, 60);
      await b.codes.consume('lonely');
      assert.ok(await a.tokens.find('at-lonely'));
    });
  });
}
