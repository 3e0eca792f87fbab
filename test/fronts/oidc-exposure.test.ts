/**
 * What the OpenID Connect front exposes to anyone on the network: an anonymous caller's
 * authorization and sign-out requests are limited per address and leave records that live
 * minutes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import type { Clock } from '../../src/core/clock.js';
import { systemClock } from '../../src/core/clock.js';
import { idDigest } from '../../src/fronts/oidc/adapter.js';
import { ScriptedBrowser } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const REDIRECT = 'http://127.0.0.1:1/cb'; // never fetched: the browser stops at the redirect
const LIMIT = 5;

/** The system clock, moved forward by hand: records can be made old without waiting. */
let skew = 0;
const skewed: Clock = { now: () => Date.now() + skew, at: (t, fn) => systemClock.at(t - skew, fn) };

describe('OpenID Connect front: what anonymous callers can reach', () => {
  let s: TestServer;
  let rp: client.Configuration;
  let address = 0;
  /** A browser behind the trusted proxy, from an address of its own (TEST-NET-3). */
  const browserAt = (ip = `203.0.113.${++address}`) => {
    const b = new ScriptedBrowser();
    b.headers['x-forwarded-for'] = ip;
    return b;
  };

  before(async () => {
    s = await startTestServer({}, { clock: skewed }, (config) => {
      config.http.trustProxy = 1;
      config.oidc.authorizationsPerMinute = LIMIT;
      config.oidc.clients = [
        { client_id: 'wiki', client_secret: 'wiki-secret-0123456789abcdefgh', redirect_uris: [REDIRECT], post_logout_redirect_uris: [REDIRECT], countersign_no_factor: 'allow' },
      ];
    });
    rp = await client.discovery(new URL(s.issuer!), 'wiki', 'wiki-secret-0123456789abcdefgh', undefined, { execute: [client.allowInsecureRequests] });
    await s.api('POST', '/api/v1/users', { name: 'pwonly', password: 'pwonly-pw' });
  });
  after(() => s.close());

  const authorizationUrl = async () =>
    client
      .buildAuthorizationUrl(rp, {
        redirect_uri: REDIRECT,
        scope: 'openid',
        code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
        code_challenge_method: 'S256',
        state: client.randomState(),
      })
      .toString();
  const interactionUid = (location: string | null) => /\/interaction\/([^/?#]+)$/.exec(location ?? '')?.[1];

  describe('authorization requests per address', () => {
    it('past the limit an address gets a 429 page, no redirect and no interaction; other addresses go on', async () => {
      const ip = '198.51.100.7';
      for (let i = 0; i < LIMIT; i++) {
        const res = await browserAt(ip).request(await authorizationUrl());
        assert.equal(res.status, 303, `request ${i + 1} is within the limit`);
        assert.ok(interactionUid(res.headers.get('location')), 'it opens an interaction');
      }
      const held = await browserAt(ip).request(await authorizationUrl());
      assert.equal(held.status, 429);
      assert.equal(held.headers.get('location'), null, 'never sent back to a redirect_uri it did not check');
      assert.equal(held.headers.get('set-cookie'), null, 'no interaction was opened');
      assert.ok(held.headers.get('retry-after'));
      assert.match(held.headers.get('content-type') ?? '', /text\/html/);
      assert.match(await held.text(), /Too many sign-in requests/);
      assert.equal((await browserAt(ip).request(await authorizationUrl().then((u) => u.replace('/auth?', '/AUTH/?')))).status, 429, 'the same route spelt otherwise');
      assert.equal((await browserAt(ip).request(`${s.issuer}/session/end`)).status, 429, 'an anonymous sign-out writes a session: the same limit');
      assert.equal((await browserAt('198.51.100.8').request(await authorizationUrl())).status, 303, 'another address is not held up');
    });

    it('an abandoned interaction, and the session an anonymous sign-out leaves, are gone within minutes', async () => {
      const b = browserAt();
      const res = await b.request(await authorizationUrl());
      const uid = interactionUid(res.headers.get('location'));
      assert.ok(uid, `an interaction: ${res.headers.get('location')}`);
      const interaction = `oidc:Interaction:${idDigest(uid!)}`;

      const out = await b.request(`${s.issuer}/session/end`);
      assert.equal(out.status, 200);
      const sid = /(?:^|, )_session=([^;]+)/.exec(out.headers.get('set-cookie') ?? '')?.[1];
      assert.ok(sid, 'the sign-out page keeps its state in a session');
      const session = `oidc:Session:${idDigest(sid!)}`;
      assert.ok(await s.ctx.store.kv.get(interaction));
      assert.ok(await s.ctx.store.kv.get(session));
      try {
        // Long enough for a sign-in: the password, a push or an enrolment at sign-in (10 minutes).
        skew = 10 * 60_000;
        assert.ok(await s.ctx.store.kv.get(interaction), 'kept for a sign-in in progress');
        skew = 21 * 60_000;
        assert.equal(await s.ctx.store.kv.get(interaction), null, 'an interaction nobody finished lives minutes, not an hour');
        assert.equal(await s.ctx.store.kv.get(session), null, 'a session nobody signed in to lives minutes, not eight hours');
      } finally {
        skew = 0;
      }
    });
  });
});
