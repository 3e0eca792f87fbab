/**
 * What the OpenID Connect front exposes to anyone on the network: an anonymous caller's
 * authorization and sign-out requests are limited per address and leave records that live
 * minutes; discovery and every URL the provider builds come from the issuer, whatever Host,
 * X-Forwarded-Host or request target a caller sends, and the address it records is the one
 * the trusted proxy saw; the provider's pages cannot be framed.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { Authenticator } from '../../src/cli/authenticator.js';
import type { Clock } from '../../src/core/clock.js';
import { systemClock } from '../../src/core/clock.js';
import { idDigest } from '../../src/fronts/oidc/adapter.js';
import { ScriptedBrowser, field } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const REDIRECT = 'http://127.0.0.1:1/cb'; // never fetched: the browser stops at the redirect
const toRp = (u: string) => u.startsWith(REDIRECT);
const LIMIT = 5;

/** The system clock, moved forward by hand: records can be made old without waiting. */
let skew = 0;
const skewed: Clock = { now: () => Date.now() + skew, at: (t, fn) => systemClock.at(t - skew, fn) };

/** One raw HTTP/1.1 request, with whatever Host and request target a caller likes. */
const raw = (base: string, target: string, headers: Record<string, string>) =>
  new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const u = new URL(base);
    const req = httpRequest({ host: u.hostname, port: u.port, path: target, headers, setHost: !('host' in headers) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });

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
        { client_id: 'desk', client_secret: 'desk-secret-0123456789abcdefgh', redirect_uris: [REDIRECT], grant_types: ['urn:openid:params:grant-type:ciba'], response_types: [], backchannel_token_delivery_mode: 'poll' },
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

  describe('URLs come from the issuer, never from the request', () => {
    const endpoints = (m: Record<string, unknown>) =>
      Object.entries(m).filter(([k, v]) => (k === 'issuer' || k.endsWith('_endpoint') || k === 'jwks_uri') && typeof v === 'string') as [string, string][];

    it('discovery names the issuer’s endpoints whatever Host, X-Forwarded-Host or request target is sent, and may be cached', async () => {
      const origin = new URL(s.issuer!).origin;
      const path = new URL(s.issuer!).pathname;
      const asked = [
        raw(s.url, `${path}/.well-known/openid-configuration`, { host: 'evil.example' }),
        raw(s.url, `${path}/.well-known/openid-configuration`, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }),
        raw(s.url, `http://evil.example${path}/.well-known/openid-configuration`, {}),
        raw(s.url, `${path}/.well-known/oauth-authorization-server`, { host: 'evil.example' }),
      ];
      for (const r of await Promise.all(asked)) {
        assert.equal(r.status, 200);
        const m = JSON.parse(r.body) as Record<string, unknown>;
        assert.ok(endpoints(m).length >= 6, r.body);
        for (const [k, v] of endpoints(m)) {
          assert.equal(new URL(v).origin, origin, `${k} is ${v}`);
          assert.ok(new URL(v).pathname.startsWith(path), `${k} is ${v}`);
        }
        assert.match(String(r.headers['cache-control']), /max-age=\d+/, 'the same for everyone, so a cache may keep it');
      }
      const jwks = await raw(s.url, `${path}/jwks`, { host: 'evil.example' });
      assert.equal(jwks.status, 200);
      assert.match(String(jwks.headers['cache-control']), /max-age=\d+/);
    });

    it('the interaction’s way back and the sign-out form are on the issuer too', async () => {
      const url = new URL(await authorizationUrl());
      const started = await raw(s.url, url.pathname + url.search, { host: 'evil.example', 'x-forwarded-for': '203.0.113.200' });
      assert.equal(started.status, 303);
      const uid = interactionUid(String(started.headers.location));
      assert.ok(uid, String(started.headers.location));
      const stored = JSON.parse((await s.ctx.store.kv.get(`oidc:Interaction:${idDigest(uid!)}`))!) as { returnTo: string };
      assert.equal(stored.returnTo, `${s.issuer}/auth/${uid}`, 'the browser comes back to the issuer');
      const out = await raw(s.url, `${new URL(s.issuer!).pathname}/session/end`, { host: 'evil.example', 'x-forwarded-for': '203.0.113.201' });
      assert.equal(out.status, 200);
      const action = /action="([^"]+)"/.exec(out.body)?.[1];
      assert.equal(action, `${s.issuer}/session/end/confirm`);
    });
  });

  it('the address a phone is shown for a CIBA request is the one the trusted proxy saw, not one the caller wrote', async () => {
    await s.api('POST', '/api/v1/users', { name: 'alice', password: 'alice-pw' });
    await s.api('POST', '/api/v1/users/factors', { users: ['alice'], factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/alice/enrolments')).body.uri, {});
    const res = await fetch(`${s.issuer}/backchannel`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from('desk:desk-secret-0123456789abcdefgh').toString('base64')}`,
        // The caller wrote the first entry; the one proxy hop (http.trustProxy 1) appended the second.
        'x-forwarded-for': '192.0.2.66, 198.51.100.20',
      },
      body: new URLSearchParams({ scope: 'openid', login_hint: 'alice' }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const [p] = await phone.pending();
    assert.equal(p?.ip, '198.51.100.20');
  });

  describe('framing', () => {
    const forbidsFraming = (res: Response, what: string) => {
      assert.equal(res.headers.get('x-frame-options'), 'DENY', `${what}: X-Frame-Options`);
      assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, `${what}: CSP frame-ancestors`);
    };

    it('the sign-out pages, anonymous or signed in, and the provider’s error page cannot be framed', async () => {
      const anonymous = browserAt();
      const bare = await anonymous.request(`${s.issuer}/session/end`);
      forbidsFraming(bare, 'anonymous sign-out');
      assert.match(await bare.text(), /<form/);
      forbidsFraming(await anonymous.request(`${s.issuer}/session/end?client_id=nobody`), 'error page');

      const b = browserAt();
      const login = await b.follow(await authorizationUrl(), {}, toRp);
      assert.match(login.body, /Sign in/);
      const done = await b.follow(new URL(`${new URL(login.url).pathname}/login`, login.url).toString(), {
        form: { csrf: field(login.body, 'csrf'), user: 'pwonly', password: 'pwonly-pw' },
      }, toRp);
      assert.ok(toRp(done.url), done.body);

      const confirm = await b.request(`${s.issuer}/session/end`);
      forbidsFraming(confirm, 'sign-out confirmation');
      const page = await confirm.text();
      assert.match(page, /Sign out of Countersign/);
      const signedOut = await b.follow(`${s.issuer}/session/end/confirm`, { form: { xsrf: field(page, 'xsrf'), logout: 'yes' } });
      assert.match(signedOut.body, /You are signed out/);
      forbidsFraming(signedOut.res, 'signed-out page');
    });
  });
});
