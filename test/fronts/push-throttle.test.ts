import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { Authenticator } from '../../src/cli/authenticator.js';
import { ScriptedBrowser, field } from '../helpers/browser.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { q, radclient } from '../helpers/radclient.js';
import { startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const REDIRECT = 'http://127.0.0.1:1/cb'; // never fetched: the test stops at the redirect
const SECRET = 'push-throttle-radius-secret';
const bin = fileURLToPath(new URL('../../bin/countersign.js', import.meta.url));
const haveRadclient = hasCommand('radclient');

/**
 * The push rate limit (5 per user per 10 minutes, the default) as users and
 * administrators meet it: only pushes sent count, the state shows in the user's
 * view, unlock clears it, and the sign-in says why no push came.
 */
describe('push rate limit and hold-backs, seen and cleared', () => {
  let s: TestServer;
  let rp: client.Configuration;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.oidc.clients = [{ client_id: 'intranet', client_secret: 'intranet-secret-0123456789', client_name: 'Intranet', redirect_uris: [REDIRECT] }];
    });
    rp = await client.discovery(new URL(s.issuer!), 'intranet', 'intranet-secret-0123456789', undefined, { execute: [client.allowInsecureRequests] });
    assert.equal(s.ctx.config.push.rateLimit.count, 5, 'the default limit');
  });
  after(() => s.close());

  /** A user with a password, push on and a poll-only phone (nothing to deliver, still a push), and OTP when asked. */
  const pushUser = async (name: string, opts: { otp?: boolean; phone?: boolean } = {}) => {
    assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
    if (opts.otp) await s.api('POST', `/api/v1/users/${name}/otp`, {});
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    if (opts.phone === false) return undefined;
    return Authenticator.enrol((await s.api('POST', `/api/v1/users/${name}/enrolments`)).body.uri, {});
  };
  const openLogin = (user: string) => s.api('POST', '/api/v1/challenges', { user });
  const useUpPushes = async (user: string) => {
    for (let i = 0; i < 5; i++) {
      const r = await openLogin(user);
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.ok(r.body.factors.includes('push'), `push ${i + 1} of 5 goes out`);
    }
  };
  const radiusMode = async (mode: 'push-wait' | 'challenge') => {
    await s.api('DELETE', '/api/v1/radius-clients/vpn');
    const r = await s.api('POST', '/api/v1/radius-clients', { name: 'vpn', address: '127.0.0.0/8', secret: SECRET, mode });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.stdin.end();
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  /** The OIDC sign-in up to the second-factor page. */
  const oidcSecondStep = async (user: string, password: string) => {
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      state: client.randomState(),
    });
    const b = new ScriptedBrowser();
    const login = await b.follow(url.toString());
    assert.equal(login.res.status, 200, login.body);
    return b.follow(new URL(`${new URL(login.url).pathname}/login`, login.url).toString(), { form: { csrf: field(login.body, 'csrf'), user, password } }, (u) =>
      u.startsWith(REDIRECT),
    );
  };

  it('a push refused for number matching (RADIUS push-wait) does not use up the allowance', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await pushUser('nina');
    await s.api('PATCH', '/api/v1/users/nina', { numberMatching: true });
    await radiusMode('push-wait');
    for (let i = 0; i < 6; i++) {
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'nina', 'User-Password': q('nina-pw') });
      assert.equal(r.code, 'Access-Reject', r.output);
      assert.match(r.attributes['Reply-Message'] ?? '', /number matching is on/, `attempt ${i + 1}: refused for number matching, not for the rate`);
    }
    const nina = (await s.api('GET', '/api/v1/users/nina')).body;
    assert.equal(nina.push.sent, 0, 'nothing was sent, nothing counted');
    assert.equal(nina.push.limit, 5);
    assert.equal(nina.push.rateLimitedUntil, undefined);
    await s.api('PATCH', '/api/v1/users/nina', { numberMatching: null });
    await useUpPushes('nina');
  });

  it('the 6th push in the window is refused, the user view shows it, and unlock clears it', async () => {
    await pushUser('rita');
    const fresh = (await s.api('GET', '/api/v1/users/rita')).body;
    assert.deepEqual([fresh.push.sent, fresh.push.limit], [0, 5]);
    await useUpPushes('rita');
    const sixth = await openLogin('rita');
    assert.equal(sixth.status, 429);
    assert.equal(sixth.body.error, 'push_rate_limited');

    const before = Date.now();
    const rita = (await s.api('GET', '/api/v1/users/rita')).body;
    assert.equal(rita.push.sent, 5);
    assert.equal(rita.push.limit, 5);
    assert.ok(rita.push.rateLimitedUntil > before && rita.push.rateLimitedUntil <= before + 600_000, `window end ${rita.push.rateLimitedUntil}`);
    const list = (await s.api('GET', '/api/v1/users?prefix=rita')).body;
    assert.equal(list.users[0].push.sent, undefined, 'a list does not read every user’s counter');

    const show = await cli(['user', 'show', 'rita']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /push: rate-limited until \d{4}-\d\d-\d\dT[\d:]+Z \(5\/5 sent in this window\)/);

    const unlocked = await s.api('POST', '/api/v1/users/rita/unlock');
    assert.equal(unlocked.status, 200);
    assert.equal(unlocked.body.push.sent, 0);
    assert.equal(unlocked.body.push.rateLimitedUntil, undefined);
    const next = await openLogin('rita');
    assert.equal(next.status, 201, JSON.stringify(next.body));
    assert.deepEqual(next.body.factors, ['push'], 'the next login pushes again');

    const viaCli = await cli(['user', 'unlock', 'rita']);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    assert.match(viaCli.stdout, /unlocked rita\s+otp: off\s+push: on \(0\/5 sent in this window\)/);
  });

  it('unlock also forgets earlier rejections: one more after an unlock does not lock push again', async () => {
    const phone = (await pushUser('rex'))!;
    const rejectOne = async () => {
      const c = (await openLogin('rex')).body;
      await phone.answer(c.id, 'reject');
    };
    await rejectOne();
    await rejectOne();
    await s.api('POST', '/api/v1/users/rex/unlock');
    await rejectOne();
    const rex = (await s.api('GET', '/api/v1/users/rex')).body;
    assert.equal(rex.push.lockedUntil, undefined, 'three rejections, but two were before the unlock');
  });

  it('the OIDC second-factor page says why no push was sent, only after the password was right', async () => {
    const phone = (await pushUser('olive', { otp: true }))!;
    await useUpPushes('olive');

    const wrong = await oidcSecondStep('olive', 'not-her-password');
    assert.equal(wrong.res.status, 401);
    assert.doesNotMatch(wrong.body, /No push was sent/);

    const limited = await oidcSecondStep('olive', 'olive-pw');
    assert.equal(limited.res.status, 200, limited.body);
    assert.match(limited.body, /Enter your one-time code/);
    assert.match(limited.body, /id="no-push"[^>]*>No push was sent: there were too many sign-in requests in the last minutes\. Use a code from your app, or try again in (9|10) minutes\./);

    // Muted after "this wasn't me": the page says to call the help desk.
    await s.api('POST', '/api/v1/users/olive/unlock');
    const c = (await openLogin('olive')).body;
    await phone.answer(c.id, 'reject', { reason: 'not-me' });
    const muted = await oidcSecondStep('olive', 'olive-pw');
    assert.match(muted.body, /No push was sent: push is paused because a sign-in request was reported as not you\. Use a code from your app, or contact your help desk\./);

    // Push on, but no phone yet.
    await pushUser('otto', { otp: true, phone: false });
    const noPhone = await oidcSecondStep('otto', 'otto-pw');
    assert.match(noPhone.body, /No push was sent: no phone is enrolled for push/);
  });

  it('the RADIUS challenge prompt says why no push was sent', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await pushUser('rob', { otp: true });
    await useUpPushes('rob');
    await radiusMode('challenge');
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'rob', 'User-Password': q('rob-pw') });
    assert.equal(r.code, 'Access-Challenge', r.output);
    const message = r.attributes['Reply-Message'] ?? '';
    assert.match(message, /^Enter your one-time code \(No push sent: too many sign-in requests; try push again in (9|10) minutes\)$/);
    assert.ok(message.length <= 250);
    const wrong = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'rob', 'User-Password': q('nope') });
    assert.equal(wrong.attributes['Reply-Message'], 'Wrong user name or password', 'a wrong password is told nothing more');
  });
});
