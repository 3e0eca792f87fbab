/**
 * The OpenID Connect front's security properties, with openid-client as the
 * relying party: single sign-on honours each client's factor policy and
 * acr_values, acr says how the login was decided, the store holds no usable
 * token or session id, and CIBA does not tell who exists or can be pushed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import * as client from 'openid-client';
import { Authenticator } from '../../src/cli/authenticator.js';
import { ScriptedBrowser, field } from '../helpers/browser.js';
import { redisAvailable, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const REDIRECT = 'http://127.0.0.1:1/cb'; // never fetched: the browser stops at the redirect
const toRp = (u: string) => u.startsWith(REDIRECT);
const REFUSED = 'this user cannot be asked to approve a sign-in';

const onRedis = await redisAvailable();

describe('OpenID Connect front: security', () => {
  let s: TestServer;
  const rp: Record<string, client.Configuration> = {};
  const phones: Record<string, Authenticator> = {};
  const prefix = uniquePrefix('oidcsec');

  before(async () => {
    // On Redis when there is one, so the store scan below sees what a copy of Redis would.
    s = await startTestServer(onRedis ? { COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: prefix } : {}, {}, (config) => {
      const secret = (id: string) => `${id}-secret-0123456789abcdefgh`;
      config.oidc.clients = [
        { client_id: 'intranet', client_secret: secret('intranet'), redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] },
        { client_id: 'portal', client_secret: secret('portal'), redirect_uris: [REDIRECT] },
        { client_id: 'wiki', client_secret: secret('wiki'), redirect_uris: [REDIRECT], countersign_no_factor: 'allow' },
        { client_id: 'helpdesk', client_secret: secret('helpdesk'), redirect_uris: [REDIRECT], grant_types: ['urn:openid:params:grant-type:ciba'], response_types: [], backchannel_token_delivery_mode: 'poll' },
      ];
      config.push.rateLimit.count = 100;
    });
    for (const id of ['intranet', 'portal', 'wiki', 'helpdesk']) {
      rp[id] = await client.discovery(new URL(s.issuer!), id, `${id}-secret-0123456789abcdefgh`, undefined, { execute: [client.allowInsecureRequests] });
    }
    await s.api('POST', '/api/v1/users', { name: 'pwonly', password: 'pwonly-pw' });
    for (const name of ['alice', 'bob', 'carol']) {
      await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` });
      await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
      phones[name] = await Authenticator.enrol((await s.api('POST', `/api/v1/users/${name}/enrolments`)).body.uri, {});
    }
    // Known, but not pushable: OTP only, and push on without a device.
    await s.api('POST', '/api/v1/users', { name: 'otponly', password: 'otponly-pw' });
    await s.api('POST', '/api/v1/users/otponly/otp', {});
    await s.api('POST', '/api/v1/users', { name: 'nodevice', password: 'nodevice-pw' });
    await s.api('POST', '/api/v1/users/factors', { users: ['nodevice'], factor: 'push', enabled: true });
  });
  after(async () => {
    await s.close();
    if (!onRedis) return;
    const raw = new Redis(testRedisUrl());
    const keys = await raw.keys(`${prefix}:*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  /** One authorization request in browser `b`: ends on a page (a prompt) or at the redirect to the app. */
  const authorize = async (b: ScriptedBrowser, id: string, extra: Record<string, string> = {}) => {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(rp[id]!, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      ...extra,
    });
    return { id, verifier, state, page: await b.follow(url.toString(), {}, toRp) };
  };
  type Flow = Awaited<ReturnType<typeof authorize>>;
  const prompted = (f: Flow) => !toRp(f.page.url) && /Sign in/.test(f.page.body);
  const signIn = (b: ScriptedBrowser, f: Flow, user: string) =>
    b.follow(new URL(`${new URL(f.page.url).pathname}/login`, f.page.url).toString(), {
      form: { csrf: field(f.page.body, 'csrf'), user, password: `${user}-pw` },
    }, toRp);
  /** The push page's continue step, after the phone or an administrator decided. */
  const finishStep = (b: ScriptedBrowser, page: { url: string; body: string }) =>
    b.follow(new URL(`${new URL(page.url).pathname}/finish`, page.url).toString(), { form: { csrf: field(page.body, 'csrf') } }, toRp);
  const pendingFor = async (user: string) => {
    const [p] = await phones[user]!.pending();
    assert.ok(p, `a push is waiting for ${user}`);
    return p!.challengeId;
  };
  /** Password, then the second step decided by the phone or by an administrator. */
  const withSecondStep = async (b: ScriptedBrowser, f: Flow, user: string, by: 'phone' | 'admin') => {
    const page = await signIn(b, f, user);
    assert.match(page.body, /Approve on your phone/);
    const cid = await pendingFor(user);
    if (by === 'phone') await phones[user]!.answer(cid, 'approve');
    else assert.equal((await s.api('POST', `/api/v1/challenges/${cid}/approve`)).status, 200);
    return finishStep(b, page);
  };
  const redeem = (f: Flow, callback: string) =>
    client.authorizationCodeGrant(rp[f.id]!, new URL(callback), { pkceCodeVerifier: f.verifier, expectedState: f.state });
  const refusal = (url: string) => {
    const u = new URL(url);
    return { error: u.searchParams.get('error'), description: u.searchParams.get('error_description') ?? '' };
  };

  describe('single sign-on and the per-client factor policy', () => {
    it('a password-only session is not reused by a client that needs a second factor, nor for acr_values=mfa', async () => {
      const b = new ScriptedBrowser();
      const lenient = await authorize(b, 'wiki');
      assert.ok(prompted(lenient));
      const signedIn = await signIn(b, lenient, 'pwonly');
      assert.ok(toRp(signedIn.url), signedIn.body);
      assert.deepEqual((await redeem(lenient, signedIn.url)).claims()!.amr, ['pwd']);

      const mfa = await authorize(b, 'intranet', { acr_values: 'urn:countersign:mfa' });
      assert.ok(prompted(mfa), `acr_values=mfa asks to sign in again instead of reusing the session: ${mfa.page.url}`);
      const denied = await signIn(b, mfa, 'pwonly');
      assert.equal(refusal(denied.url).error, 'access_denied');
      assert.match(refusal(denied.url).description, /no second factor/);

      const strict = await authorize(b, 'portal');
      assert.ok(prompted(strict), `a client that needs a second factor asks to sign in again: ${strict.page.url}`);
      const silent = await authorize(b, 'portal', { prompt: 'none' });
      assert.equal(refusal(silent.page.url).error, 'login_required', 'prompt=none cannot get around it');

      const again = await authorize(b, 'wiki');
      assert.ok(toRp(again.page.url), 'the lenient client still reuses the session');
    });

    it('a session with a second factor is reused without a prompt by every client', async () => {
      const b = new ScriptedBrowser();
      const first = await authorize(b, 'intranet');
      const done = await withSecondStep(b, first, 'alice', 'phone');
      assert.equal((await redeem(first, done.url)).claims()!.acr, 'urn:countersign:mfa');
      for (const [id, extra] of [['wiki', {}], ['portal', {}], ['portal', { acr_values: 'urn:countersign:mfa' }]] as const) {
        const f = await authorize(b, id, extra);
        assert.ok(toRp(f.page.url), `${id} ${JSON.stringify(extra)}: ${f.page.url}`);
        const claims = (await redeem(f, f.page.url)).claims()!;
        assert.equal(claims.sub, 'alice');
        assert.equal(claims.acr, 'urn:countersign:mfa');
        assert.deepEqual(claims.amr, ['pwd', 'swk', 'mfa']);
      }
    });
  });

  describe('acr follows how the login was decided', () => {
    it('discovery lists urn:countersign:approved', () => {
      assert.ok(rp.intranet!.serverMetadata().acr_values_supported?.includes('urn:countersign:approved'));
    });

    it('an administrator’s approval is acr approved: enough for a default client, not for acr_values=mfa', async () => {
      const b = new ScriptedBrowser();
      const first = await authorize(b, 'intranet');
      const done = await withSecondStep(b, first, 'bob', 'admin');
      assert.ok(toRp(done.url), done.body);
      const claims = (await redeem(first, done.url)).claims()!;
      assert.equal(claims.acr, 'urn:countersign:approved');
      assert.deepEqual(claims.amr, ['pwd']);

      const sso = await authorize(b, 'portal');
      assert.ok(toRp(sso.page.url), 'a default client reuses the approved session');
      assert.equal((await redeem(sso, sso.page.url)).claims()!.acr, 'urn:countersign:approved');

      const mfa = await authorize(b, 'portal', { acr_values: 'urn:countersign:mfa' });
      assert.ok(prompted(mfa), `acr_values=mfa asks for the user's own factor: ${mfa.page.url}`);
      const refused = await withSecondStep(b, mfa, 'bob', 'admin');
      assert.equal(refusal(refused.url).error, 'access_denied', 'an approval does not loop back to the sign-in page');
      assert.match(refusal(refused.url).description, /own second factor.*administrator/);

      const stepUp = await authorize(b, 'portal', { acr_values: 'urn:countersign:mfa' });
      assert.ok(prompted(stepUp));
      const upgraded = await withSecondStep(b, stepUp, 'bob', 'phone');
      const up = (await redeem(stepUp, upgraded.url)).claims()!;
      assert.equal(up.acr, 'urn:countersign:mfa');
      assert.deepEqual(up.amr, ['pwd', 'swk', 'mfa']);
    });

    it('CIBA: an administrator’s approval is acr approved, not the phone’s swk', async () => {
      const req = await client.initiateBackchannelAuthentication(rp.helpdesk!, { scope: 'openid', login_hint: 'carol' });
      assert.equal((await s.api('POST', `/api/v1/challenges/${await pendingFor('carol')}/approve`)).status, 200);
      const claims = (await client.pollBackchannelAuthenticationGrant(rp.helpdesk!, { ...req, interval: 1 })).claims()!;
      assert.equal(claims.acr, 'urn:countersign:approved');
      assert.equal(claims.amr, undefined);
    });
  });

  it('the store holds no token, code or session id in clear, in keys or values', async () => {
    const dump = async (): Promise<string> => {
      if (!onRedis) {
        const kv = s.ctx.store.kv as unknown as { values: Map<string, { value: string }>; sets: Map<string, { members: Set<string> }> };
        return JSON.stringify([[...kv.values].map(([k, v]) => [k, v.value]), [...kv.sets].map(([k, v]) => [k, [...v.members]])]);
      }
      const raw = new Redis(testRedisUrl());
      const out: unknown[] = [];
      try {
        for await (const keys of raw.scanStream({ match: `${prefix}:*`, count: 500 })) {
          for (const key of keys as string[]) {
            const type = await raw.type(key);
            const value =
              type === 'string' ? await raw.get(key)
              : type === 'set' ? await raw.smembers(key)
              : type === 'hash' ? await raw.hgetall(key)
              : type === 'zset' ? await raw.zrange(key, '0', '-1', 'WITHSCORES')
              : type === 'list' ? await raw.lrange(key, 0, -1)
              : `(${type})`;
            out.push([key, value]);
          }
        }
      } finally {
        raw.disconnect();
      }
      return JSON.stringify(out);
    };
    const b = new ScriptedBrowser();
    const f = await authorize(b, 'intranet');
    const done = await withSecondStep(b, f, 'alice', 'phone');
    const code = new URL(done.url).searchParams.get('code')!;
    const session = (b as unknown as { cookies: Map<string, string> }).cookies.get('_session')!;
    assert.ok(code && session);
    const secrets: Record<string, string> = { code, session };
    const copies = [await dump()];

    const tokens = await redeem(f, done.url);
    const refreshed = await client.refreshTokenGrant(rp.intranet!, tokens.refresh_token!);
    Object.assign(secrets, { 'access token': tokens.access_token, 'refresh token': tokens.refresh_token!, 'refreshed access token': refreshed.access_token });
    // An interaction opened over a live session records that session.
    assert.ok(prompted(await authorize(b, 'intranet', { prompt: 'login' })));
    copies.push(await dump());

    for (const copy of copies) {
      assert.match(copy, /oidc:/, 'the scan sees the OIDC records');
      for (const [what, value] of Object.entries(secrets)) {
        assert.ok(value && !copy.includes(value), `the ${what} appears in the store`);
      }
    }
    // Everything still works off the digests, down to a replayed code revoking what its grant issued.
    assert.equal((await client.fetchUserInfo(rp.intranet!, refreshed.access_token, 'alice')).sub, 'alice');
    await assert.rejects(redeem(f, done.url), { error: 'invalid_grant' });
    await assert.rejects(client.fetchUserInfo(rp.intranet!, refreshed.access_token, 'alice'));
    await assert.rejects(client.refreshTokenGrant(rp.intranet!, tokens.refresh_token!), { error: 'invalid_grant' });
  });

  it('CIBA answers alike for unknown users and users who cannot be pushed', async () => {
    const ask = async (loginHint: string, extra: Record<string, string> = {}) => {
      const res = await fetch(rp.helpdesk!.serverMetadata().backchannel_authentication_endpoint!, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('helpdesk:helpdesk-secret-0123456789abcdefgh').toString('base64')}`,
        },
        body: new URLSearchParams({ scope: 'openid', login_hint: loginHint, ...extra }),
      });
      return { status: res.status, body: await res.json() };
    };
    const users = ['ghost', 'pwonly', 'otponly', 'nodevice'];
    for (const a of await Promise.all(users.map((u) => ask(u)))) {
      assert.deepEqual(a, { status: 400, body: { error: 'access_denied', error_description: REFUSED } });
    }
    // Nor does any other refusal tell them apart.
    const [first, ...rest] = await Promise.all(users.map((u) => ask(u, { binding_message: '<not allowed>' })));
    for (const a of rest) assert.deepEqual(a, first);
  });

  it('throttles password guessing per user and source, without holding up other users', async () => {
    const attempt = async (user: string, password: string) => {
      const b = new ScriptedBrowser();
      const f = await authorize(b, 'portal');
      return b.follow(new URL(`${new URL(f.page.url).pathname}/login`, f.page.url).toString(), {
        form: { csrf: field(f.page.body, 'csrf'), user, password },
      }, toRp);
    };
    for (let i = 0; i < 10; i++) assert.equal((await attempt('carol', `guess-${i}`)).res.status, 401);
    const held = await attempt('carol', 'carol-pw');
    assert.equal(held.res.status, 429, 'this source waits, even with the right password');
    assert.match(held.body, /Too many failed sign-ins/);
    assert.match((await attempt('bob', 'bob-pw')).body, /Approve on your phone/, 'another user is not held up');
  });
});
