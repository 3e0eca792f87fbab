import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { Authenticator } from '../../src/cli/authenticator.js';
import { ScriptedBrowser, field } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const REDIRECT = 'http://127.0.0.1:1/cb'; // never fetched: the test stops at the redirect

describe('OpenID Connect with openid-client as the relying party', () => {
  let s: TestServer;
  let rp: client.Configuration;
  let lenient: client.Configuration;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.oidc.clients = [
        { client_id: 'intranet', client_secret: 'intranet-secret-0123456789', client_name: 'Intranet', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] },
        { client_id: 'wiki', client_secret: 'wiki-secret-0123456789abc', redirect_uris: [REDIRECT], countersign_no_factor: 'allow' },
        { client_id: 'helpdesk', client_secret: 'helpdesk-secret-0123456789', redirect_uris: [REDIRECT], grant_types: ['urn:openid:params:grant-type:ciba'], response_types: [], backchannel_token_delivery_mode: 'poll' },
      ];
    });
    const opts = { execute: [client.allowInsecureRequests] };
    rp = await client.discovery(new URL(s.issuer!), 'intranet', 'intranet-secret-0123456789', undefined, opts);
    lenient = await client.discovery(new URL(s.issuer!), 'wiki', 'wiki-secret-0123456789abc', undefined, opts);
    await s.api('POST', '/api/v1/users', { name: 'alice', password: 'alice-pw', displayName: 'Alice Liddell', email: 'alice@example.org' });
    await s.api('POST', '/api/v1/users', { name: 'nofactor', password: 'nf-pw' });
  });
  after(() => s.close());

  /** Runs the browser part up to the second-factor page. */
  const start = async (config: client.Configuration, user: string, password: string, extra: Record<string, string> = {}) => {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid profile email',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      ...extra,
    });
    const b = new ScriptedBrowser();
    const login = await b.follow(url.toString());
    assert.equal(login.res.status, 200, login.body);
    assert.match(login.body, /Sign in/);
    const after = await b.follow(new URL(`${new URL(login.url).pathname}/login`, login.url).toString(), {
      form: { csrf: field(login.body, 'csrf'), user, password },
    }, (u) => u.startsWith(REDIRECT));
    return { b, verifier, state, page: after };
  };
  const redeem = async (config: client.Configuration, r: Awaited<ReturnType<typeof start>>, callback: string) =>
    client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: r.verifier, expectedState: r.state });

  it('publishes discovery with CIBA, PKCE and the acr values', async () => {
    const m = rp.serverMetadata();
    assert.ok(m.backchannel_authentication_endpoint);
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    assert.ok(m.acr_values_supported?.includes('urn:countersign:mfa'));
  });

  it('signs in with password and an OTP from oathtool; amr says pwd+otp+mfa', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const { secret } = (await s.api('POST', '/api/v1/users/alice/otp', {})).body;
    const r = await start(rp, 'alice', 'alice-pw');
    assert.match(r.page.body, /Enter your one-time code/);
    const done = await r.b.follow(new URL(`${new URL(r.page.url).pathname}/otp`, r.page.url).toString(), {
      form: { csrf: field(r.page.body, 'csrf'), code: oathTotp(secret) },
    }, (u) => u.startsWith(REDIRECT));
    assert.ok(done.url.startsWith(REDIRECT), done.body);
    const tokens = await redeem(rp, r, done.url);
    const claims = tokens.claims()!;
    assert.equal(claims.sub, 'alice');
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(claims.acr, 'urn:countersign:mfa');
    assert.ok(typeof claims.auth_time === 'number');
    const info = await client.fetchUserInfo(rp, tokens.access_token, 'alice');
    assert.equal(info.name, 'Alice Liddell');
    assert.equal(info.email, 'alice@example.org');
    assert.ok(tokens.refresh_token, 'refresh tokens for clients allowed them');
    const refreshed = await client.refreshTokenGrant(rp, tokens.refresh_token!);
    assert.ok(refreshed.access_token);
  });

  it('a password reset or "revoke sessions" ends refresh tokens, access tokens and single sign-on', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    await s.api('POST', '/api/v1/users', { name: 'rhea', password: 'rhea-pw' });
    const { secret } = (await s.api('POST', '/api/v1/users/rhea/otp', {})).body;
    const signIn = async (password: string, code: string) => {
      const r = await start(rp, 'rhea', password);
      const done = await r.b.follow(new URL(`${new URL(r.page.url).pathname}/otp`, r.page.url).toString(), {
        form: { csrf: field(r.page.body, 'csrf'), code },
      }, (u) => u.startsWith(REDIRECT));
      return { r, tokens: await redeem(rp, r, done.url) };
    };
    const { r, tokens } = await signIn('rhea-pw', oathTotp(secret));
    assert.ok(tokens.refresh_token);
    await s.api('PATCH', '/api/v1/users/rhea', { password: 'rhea-new-pw' });
    const invalidGrant = (err: unknown) => (err as { error?: string }).error === 'invalid_grant';
    await assert.rejects(client.refreshTokenGrant(rp, tokens.refresh_token!), invalidGrant, 'the refresh token is dead');
    await assert.rejects(client.fetchUserInfo(rp, tokens.access_token, 'rhea'), 'the access token is dead');
    // Single sign-on: the same browser is asked to sign in again.
    const again = await r.b.follow(
      client.buildAuthorizationUrl(rp, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(r.verifier), code_challenge_method: 'S256', state: r.state }).toString(),
      undefined,
      (u) => u.startsWith(REDIRECT),
    );
    assert.match(again.body, /Sign in/, 'no silent single sign-on after the reset');
    // "Revoke sessions" does the same to a later sign-in.
    const later = await signIn('rhea-new-pw', oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]));
    const revoked = await s.api('POST', '/api/v1/users/rhea/sessions/revoke');
    assert.ok(revoked.body.ended.oidc >= 1, JSON.stringify(revoked.body));
    await assert.rejects(client.refreshTokenGrant(rp, later.tokens.refresh_token!), invalidGrant);
  });

  it('an authorization code redeemed twice at the same moment yields tokens once; so does a refresh token', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const { secret } = (await s.api('POST', '/api/v1/users/alice/otp', {})).body;
    const token = (form: Record<string, string>) =>
      fetch(rp.serverMetadata().token_endpoint!, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('intranet:intranet-secret-0123456789').toString('base64')}`,
        },
        body: new URLSearchParams(form),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, string> }));
    const r = await start(rp, 'alice', 'alice-pw');
    const done = await r.b.follow(new URL(`${new URL(r.page.url).pathname}/otp`, r.page.url).toString(), {
      form: { csrf: field(r.page.body, 'csrf'), code: oathTotp(secret) },
    }, (u) => u.startsWith(REDIRECT));
    const code = new URL(done.url).searchParams.get('code')!;
    assert.ok(code, done.url);
    const form = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: r.verifier };
    const results = await Promise.all(Array.from({ length: 4 }, () => token(form)));
    const ok = results.filter((x) => x.status === 200);
    assert.equal(ok.length, 1, `one redemption succeeds: ${JSON.stringify(results.map((x) => [x.status, x.body.error]))}`);
    for (const x of results.filter((y) => y.status !== 200)) assert.equal(x.body.error, 'invalid_grant');

    const refresh = ok[0]!.body.refresh_token!;
    const refreshed = await Promise.all(Array.from({ length: 4 }, () => token({ grant_type: 'refresh_token', refresh_token: refresh })));
    assert.ok(refreshed.filter((x) => x.status === 200).length <= 1, `a refresh token rotates once: ${JSON.stringify(refreshed.map((x) => [x.status, x.body.error]))}`);
  });

  it('signs in with a push approved by the reference authenticator; amr says pwd+swk+mfa', async () => {
    await s.api('POST', '/api/v1/users/factors', { users: ['alice'], factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/alice/enrolments')).body.uri, {});
    const r = await start(rp, 'alice', 'alice-pw');
    const shown = /id="display-code"[^>]*>(\d+)</.exec(r.page.body)?.[1];
    const [p] = await phone.pending();
    assert.equal(p!.displayCode, shown, 'the page shows the same ID as the phone');
    // The page's live wait, as its script would do it.
    const events = r.b.request(new URL(`${new URL(r.page.url).pathname}/events`, r.page.url).toString());
    await phone.answer(p!.challengeId, 'approve');
    const stream = await (await events).text();
    assert.match(stream, /event: outcome\ndata: \{"state":"approved"\}/);
    const done = await r.b.follow(new URL(`${new URL(r.page.url).pathname}/finish`, r.page.url).toString(), {
      form: { csrf: field(r.page.body, 'csrf') },
    }, (u) => u.startsWith(REDIRECT));
    const claims = (await redeem(rp, r, done.url)).claims()!;
    assert.deepEqual(claims.amr, ['pwd', 'swk', 'mfa']);
  });

  it('a rejected push returns access_denied to the relying party', async () => {
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/alice/enrolments')).body.uri, {});
    const r = await start(rp, 'alice', 'alice-pw');
    const [p] = await phone.pending();
    await phone.answer(p!.challengeId, 'reject');
    const done = await r.b.follow(new URL(`${new URL(r.page.url).pathname}/finish`, r.page.url).toString(), {
      form: { csrf: field(r.page.body, 'csrf') },
    }, (u) => u.startsWith(REDIRECT));
    const cb = new URL(done.url);
    assert.equal(cb.searchParams.get('error'), 'access_denied');
    assert.match(cb.searchParams.get('error_description')!, /rejected on your phone/);
    await assert.rejects(redeem(rp, r, done.url), { error: 'access_denied' });
    await s.api('POST', '/api/v1/users/alice/unlock');
  });

  it('a user without a factor is denied by default, let through with pwd only where the client allows', async () => {
    const denied = await start(rp, 'nofactor', 'nf-pw');
    assert.equal(new URL(denied.page.url).searchParams.get('error'), 'access_denied');
    const allowed = await start(lenient, 'nofactor', 'nf-pw');
    const claims = (await redeem(lenient, allowed, allowed.page.url)).claims()!;
    assert.deepEqual(claims.amr, ['pwd']);
    assert.equal(claims.acr, 'urn:countersign:pwd');
    const forced = await start(lenient, 'nofactor', 'nf-pw', { acr_values: 'urn:countersign:mfa' });
    assert.equal(new URL(forced.page.url).searchParams.get('error'), 'access_denied', 'acr_values asking for MFA forces it');
  });

  it('refuses bad input on the pages without signing anyone in', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    await s.api('POST', '/api/v1/users/factors', { users: ['alice'], factor: 'push', enabled: false });
    const wrongPw = await start(rp, 'alice', 'nope');
    assert.equal(wrongPw.page.res.status, 401);
    assert.match(wrongPw.page.body, /Wrong user name or password/);
    const r = await start(rp, 'alice', 'alice-pw');
    const otpUrl = new URL(`${new URL(r.page.url).pathname}/otp`, r.page.url).toString();
    const badFormat = await r.b.follow(otpUrl, { form: { csrf: field(r.page.body, 'csrf'), code: 'abc' } });
    assert.equal(badFormat.res.status, 400);
    assert.match(badFormat.body, /6 to 8 digits/);
    const noCsrf = await r.b.follow(otpUrl, { form: { csrf: 'forged', code: '123456' } });
    assert.equal(noCsrf.res.status, 403);
    const wrong = await r.b.follow(otpUrl, { form: { csrf: field(r.page.body, 'csrf'), code: '000000' } });
    assert.equal(wrong.res.status, 401);
    assert.match(wrong.body, /Wrong code\. \d+ attempts left/);
    const huge = await r.b.follow(otpUrl, { form: { csrf: field(r.page.body, 'csrf'), code: '1'.repeat(20000) } });
    assert.ok(huge.res.status >= 400 && huge.res.status < 500);
    // Another browser with a forged interaction id gets nowhere.
    const stranger = await new ScriptedBrowser().follow(r.page.url);
    assert.equal(stranger.res.status, 400);
    assert.match(stranger.body, /expired/);
    await s.api('POST', '/api/v1/users/alice/unlock');
  });

  it('relying parties registered through the admin API work at once; bad metadata is refused', async () => {
    const added = await s.api('POST', '/api/v1/oidc-clients', { client_id: 'added-app', redirect_uris: [REDIRECT], countersign_no_factor: 'allow' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.ok(added.body.client_secret.length >= 32, 'a secret is generated and shown once');
    const list = await s.api('GET', '/api/v1/oidc-clients');
    assert.equal(list.body.clients.find((c: any) => c.client_id === 'added-app').client_secret, undefined);
    const cfg = await client.discovery(new URL(s.issuer!), 'added-app', added.body.client_secret, undefined, { execute: [client.allowInsecureRequests] });
    const r = await start(cfg, 'nofactor', 'nf-pw');
    assert.equal((await redeem(cfg, r, r.page.url)).claims()!.sub, 'nofactor');
    assert.equal((await s.api('POST', '/api/v1/oidc-clients', { client_id: 'x', redirect_uris: ['not a url'] })).status, 400);
    assert.equal((await s.api('POST', '/api/v1/oidc-clients', { client_id: 'added-app', redirect_uris: [REDIRECT] })).status, 409);
    assert.equal((await s.api('DELETE', '/api/v1/oidc-clients/intranet')).status, 400, 'config clients stay');
    assert.equal((await s.api('DELETE', '/api/v1/oidc-clients/added-app')).status, 200);
  });

  it('CIBA: a backchannel request is approved on the phone, and rejections come back as access_denied', async () => {
    await s.api('POST', '/api/v1/users/factors', { users: ['alice'], factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/alice/enrolments')).body.uri, {});
    const helpdesk = await client.discovery(new URL(s.issuer!), 'helpdesk', 'helpdesk-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    const req = await client.initiateBackchannelAuthentication(helpdesk, { scope: 'openid', login_hint: 'alice', binding_message: 'Ticket 4711' });
    const [p] = await phone.pending();
    assert.equal(p!.bindingMessage, 'Ticket 4711');
    const polling = client.pollBackchannelAuthenticationGrant(helpdesk, { ...req, interval: 1 });
    await phone.answer(p!.challengeId, 'approve');
    const tokens = await polling;
    assert.equal(tokens.claims()!.sub, 'alice');
    assert.deepEqual(tokens.claims()!.amr, ['swk']);

    const req2 = await client.initiateBackchannelAuthentication(helpdesk, { scope: 'openid', login_hint: 'alice' });
    const [p2] = await phone.pending();
    await phone.answer(p2!.challengeId, 'reject');
    await assert.rejects(client.pollBackchannelAuthenticationGrant(helpdesk, { ...req2, interval: 1 }), { error: 'access_denied' });
    // An unknown user gets the answer any user who cannot be pushed gets (oidc-security.test.ts).
    await assert.rejects(client.initiateBackchannelAuthentication(helpdesk, { scope: 'openid', login_hint: 'ghost' }), { error: 'access_denied' });
  });
});
