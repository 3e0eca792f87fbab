import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { loadConfig } from '../../src/config/load.js';
import { base32Decode, hotp } from '../../src/core/otp.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { startPairOnRedis, startTestServer, type TestServer } from '../helpers/server.js';

interface Answer {
  status: number;
  body: any;
  text: string;
  setCookies: string[];
}

/** One HTTP call as a browser or a scraper makes it: cookie, CSRF header and bearer token all optional. */
async function call(
  s: TestServer,
  method: string,
  path: string,
  opts: { body?: unknown; cookie?: string; csrf?: string; token?: string } = {},
): Promise<Answer> {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: {
      ...(opts.cookie ? { cookie: opts.cookie } : {}),
      ...(opts.csrf ? { 'x-csrf-token': opts.csrf } : {}),
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
  });
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: res.status, body, text, setCookies: res.headers.getSetCookie() };
}

const cookiePairs = (setCookies: string[]) => setCookies.map((c) => c.split(';')[0]!).filter((c) => !c.endsWith('='));

/** A console user with a password and an OTP seed, so a sign-in has a second factor to wait on. */
async function consoleUser(s: TestServer, name: string, role: 'admin' | 'helpdesk') {
  assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, role })).status, 201);
  assert.equal((await s.api('POST', `/api/v1/users/${name}/otp`, {})).status, 200);
}

/** The password step of a console sign-in; the second step is left pending. */
async function beginSignIn(s: TestServer, user: string, password = `${user}-pw`) {
  const start = await call(s, 'POST', '/console/api/login', { body: { user, password } });
  assert.equal(start.status, 200, JSON.stringify(start.body));
  const list = (await s.api('GET', '/api/v1/challenges')).body.challenges as { id: string; user: string; displayCode: string }[];
  const c = list.find((x) => x.user === user && x.displayCode === start.body.displayCode);
  assert.ok(c, 'the sign-in is a pending login');
  return { loginCookie: cookiePairs(start.setCookies).join('; '), challengeId: c.id };
}

/**
 * A whole console sign-in. The second factor is granted by the admin token
 * approving the sign-in's login, so a test may sign one user in many times
 * without waiting for new TOTP steps.
 */
async function signIn(s: TestServer, user: string, password = `${user}-pw`) {
  const { loginCookie, challengeId } = await beginSignIn(s, user, password);
  assert.equal((await s.api('POST', `/api/v1/challenges/${challengeId}/approve`, {})).status, 200);
  const done = await call(s, 'POST', '/console/api/login/finish', { body: {}, cookie: loginCookie });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  return {
    cookie: cookiePairs(done.setCookies).filter((c) => c.startsWith('cs_console=')).join('; '),
    csrf: done.body.csrf as string,
    role: done.body.role as string,
    setCookies: done.setCookies,
  };
}

type Session = Awaited<ReturnType<typeof signIn>>;
const asSession = (s: TestServer, method: string, path: string, who: Session, body?: unknown) =>
  call(s, method, path, { cookie: who.cookie, csrf: method === 'GET' ? undefined : who.csrf, body });

const adminEvents = async (s: TestServer) =>
  ((await s.api('GET', '/api/v1/audit?limit=1000')).body.events as any[]).filter((e) => e.type === 'admin');

/** Audit records are written without holding up the answer; wait until the one looked for is there. */
async function eventually<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never happened: ${what}`);
}

describe('console sessions follow the user record', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    for (const name of ['ann', 'bea', 'cid', 'dee', 'fay']) await consoleUser(s, name, 'admin');
    for (const name of ['eve', 'hal']) await consoleUser(s, name, 'helpdesk');
  });
  after(() => s.close());

  it('an admin demoted and deleted cannot create an admin with the old session cookie', async () => {
    const ann = await signIn(s, 'ann');
    assert.equal((await s.api('PATCH', '/api/v1/users/ann', { role: null })).status, 200);
    assert.equal((await s.api('DELETE', '/api/v1/users/ann')).status, 200);
    const r = await asSession(s, 'POST', '/api/v1/users', ann, { name: 'ann2', password: 'x', role: 'admin' });
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal((await s.api('GET', '/api/v1/users/ann2')).status, 404, 'nobody was created');
  });

  it('reads the role on every request: admin→helpdesk is read-only at once, no role ends the session for good', async () => {
    const bea = await signIn(s, 'bea');
    // Changed under the API (another tool, another instance): the session must not keep the old role.
    await s.ctx.store.users.update('bea', { role: 'helpdesk' });
    assert.equal((await asSession(s, 'GET', '/console/api/session', bea)).body.role, 'helpdesk');
    assert.equal((await asSession(s, 'GET', '/api/v1/users/bea', bea)).status, 200, 'still may look');
    const change = await asSession(s, 'POST', '/api/v1/users', bea, { name: 'bea-made' });
    assert.equal(change.status, 403);
    assert.equal(change.body.error, 'read_only');

    await s.ctx.store.users.update('bea', { unset: ['role'] });
    const gone = await asSession(s, 'GET', '/api/v1/users', bea);
    assert.equal(gone.status, 401);
    assert.ok(gone.setCookies.some((c) => /^cs_console=;.*Max-Age=0/.test(c)), `the cookie is cleared: ${gone.setCookies.join()}`);
    await s.ctx.store.users.update('bea', { role: 'admin' });
    assert.equal((await asSession(s, 'GET', '/api/v1/users', bea)).status, 401, 'the session was destroyed, not just refused');
  });

  it('a password or role change through the admin API ends all the user’s sessions, other changes do not', async () => {
    const one = await signIn(s, 'cid');
    const two = await signIn(s, 'cid');
    assert.equal((await s.api('PATCH', '/api/v1/users/cid', { password: 'cid-new' })).status, 200);
    for (const who of [one, two]) assert.equal((await asSession(s, 'GET', '/api/v1/users', who)).status, 401);

    const three = await signIn(s, 'cid', 'cid-new');
    assert.equal((await s.api('PATCH', '/api/v1/users/cid', { displayName: 'Cid' })).status, 200);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', three)).status, 200, 'a display name does not end sessions');
    assert.equal((await s.api('PATCH', '/api/v1/users/cid', { role: 'admin' })).status, 200);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', three)).status, 200, 'the same role is no change');
    assert.equal((await s.api('PATCH', '/api/v1/users/cid', { role: 'helpdesk' })).status, 200);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', three)).status, 401);
  });

  it('a sign-in begun before a password reset cannot finish', async () => {
    const { loginCookie, challengeId } = await beginSignIn(s, 'fay');
    assert.equal((await s.api('PATCH', '/api/v1/users/fay', { password: 'fay-new' })).status, 200);
    await s.api('POST', `/api/v1/challenges/${challengeId}/approve`, {});
    const done = await call(s, 'POST', '/console/api/login/finish', { body: {}, cookie: loginCookie });
    assert.equal(done.status, 401, JSON.stringify(done.body));
    assert.equal(done.body.error, 'sign_in_revoked');
    assert.ok(!cookiePairs(done.setCookies).some((c) => c.startsWith('cs_console=')), 'no session cookie');
  });

  it('sign out everywhere: the administrator ends all their own sessions, with the CSRF token', async () => {
    const here = await signIn(s, 'dee');
    const there = await signIn(s, 'dee');
    const forged = await call(s, 'POST', '/console/api/logout-everywhere', { cookie: here.cookie });
    assert.equal(forged.status, 403);
    assert.equal(forged.body.error, 'csrf');
    assert.equal((await asSession(s, 'GET', '/api/v1/users', there)).status, 200, 'nothing ended');

    const r = await asSession(s, 'POST', '/console/api/logout-everywhere', here, {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.sessionsEnded, 2);
    for (const who of [here, there]) assert.equal((await asSession(s, 'GET', '/api/v1/users', who)).status, 401);
    const e = await eventually(async () => (await adminEvents(s)).find((x) => x.detail?.action === 'console.sign-out-everywhere'), 'audit');
    assert.equal(e.actor, 'dee');
    assert.equal(e.user, 'dee');
    assert.ok(e.ip);
  });

  it('an administrator ends any user’s sessions through the admin API; the helpdesk may not', async () => {
    const eve = await signIn(s, 'eve');
    const hal = await signIn(s, 'hal');
    const refused = await asSession(s, 'POST', '/api/v1/users/eve/sessions/revoke', hal, {});
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error, 'read_only');
    assert.equal((await asSession(s, 'GET', '/api/v1/users', eve)).status, 200);

    const r = await s.api('POST', '/api/v1/users/eve/sessions/revoke');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.sessionsEnded, 1);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', eve)).status, 401);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', hal)).status, 200, 'only that user’s sessions');
    assert.equal((await s.api('POST', '/api/v1/users/nobody/sessions/revoke')).status, 404);
    const e = await eventually(async () => (await adminEvents(s)).find((x) => x.detail?.action === 'user.sessions-revoke'), 'audit');
    assert.equal(e.actor, 'admin-token');
    assert.equal(e.user, 'eve');
    assert.ok(e.ip);
  });

  it('signing out needs the CSRF token of a live session', async () => {
    const hal = await signIn(s, 'hal');
    const forged = await call(s, 'POST', '/console/api/logout', { cookie: hal.cookie, body: {} });
    assert.equal(forged.status, 403);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', hal)).status, 200, 'still signed in');
    assert.equal((await asSession(s, 'POST', '/console/api/logout', hal, {})).status, 200);
    assert.equal((await asSession(s, 'GET', '/api/v1/users', hal)).status, 401);
    assert.equal((await call(s, 'POST', '/console/api/logout', { body: {} })).status, 200, 'no session: nothing to protect');
  });
});

describe('cookies and /metrics behind a TLS-terminating proxy', () => {
  const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
  let s: TestServer;
  let plain: TestServer;
  before(async () => {
    s = await startTestServer({ COUNTERSIGN_HTTP_SECURE_COOKIES: 'true', COUNTERSIGN_METRICS_TOKEN: METRICS_TOKEN });
    plain = await startTestServer();
    for (const server of [s, plain]) await consoleUser(server, 'root', 'admin');
  });
  after(async () => {
    await s?.close();
    await plain?.close();
  });

  it('the environment sets http.secureCookies and metrics.token', () => {
    const c = loadConfig({ COUNTERSIGN_HTTP_SECURE_COOKIES: 'true', COUNTERSIGN_METRICS_TOKEN: METRICS_TOKEN }, '/nonexistent');
    assert.equal(c.http.secureCookies, true);
    assert.equal(c.metrics.token, METRICS_TOKEN);
    const d = loadConfig({}, '/nonexistent');
    assert.equal(d.http.secureCookies, false);
    assert.equal(d.metrics.token, undefined);
  });

  it('http.secureCookies marks the console cookies Secure over plain HTTP; without it they are not', async () => {
    const start = await call(s, 'POST', '/console/api/login', { body: { user: 'root', password: 'root-pw' } });
    assert.ok(start.setCookies.some((c) => /^cs_console_login=.+; Secure/.test(c)), start.setCookies.join());
    const session = await signIn(s, 'root');
    assert.ok(session.setCookies.some((c) => /^cs_console=[^;]+;.*HttpOnly; SameSite=Strict;.*; Secure$/.test(c)), session.setCookies.join());
    const unset = await signIn(plain, 'root');
    assert.ok(!unset.setCookies.some((c) => /Secure/.test(c)), 'plain HTTP and no setting: no Secure');
  });

  it('/metrics wants the bearer token when one is configured, and stays public otherwise', async () => {
    for (const token of [undefined, 'wrong', `${METRICS_TOKEN}x`]) {
      const r = await call(s, 'GET', '/metrics', { token });
      assert.equal(r.status, 401, `token ${token}`);
      assert.equal(r.body.error, 'unauthorized');
      assert.match(r.body.message, /Bearer/);
      assert.doesNotMatch(r.text, /countersign_/);
    }
    const ok = await call(s, 'GET', '/metrics', { token: METRICS_TOKEN });
    assert.equal(ok.status, 200);
    assert.match(ok.text, /countersign_challenges_opened_total/);
    assert.equal((await call(s, 'GET', '/metrics', { token: 'test-admin-token-0123456789abcdef' })).status, 401, 'the admin token is not the metrics token');
    const open = await call(plain, 'GET', '/metrics');
    assert.equal(open.status, 200);
    assert.match(open.text, /countersign_challenges_opened_total/);
  });
});

describe('what the helpdesk sees of pending logins', () => {
  let s: TestServer;
  let desk: Session;
  let root: Session;
  let login: { id: string; number?: string; displayCode: string };
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.push.numberMatching = true;
    });
    await consoleUser(s, 'root', 'admin');
    await consoleUser(s, 'desk', 'helpdesk');
    await s.api('POST', '/api/v1/users', { name: 'gus', password: 'gus-pw' });
    await s.api('POST', '/api/v1/users/factors', { users: ['gus'], factor: 'push', enabled: true });
    await Authenticator.enrol((await s.api('POST', '/api/v1/users/gus/enrolments')).body.uri, { name: 'Gus phone' });
    desk = await signIn(s, 'desk');
    root = await signIn(s, 'root');
    const open = await s.api('POST', '/api/v1/challenges', { user: 'gus', origin: { client: 'vpn' } });
    assert.equal(open.status, 201, JSON.stringify(open.body));
    login = open.body;
  });
  after(() => s.close());

  it('the token keeps the id and the matching number', async () => {
    assert.match(login.id, /^[A-Za-z0-9_-]{16,}$/);
    assert.match(login.number ?? '', /^\d+$/, 'number matching is on');
    const one = await s.api('GET', `/api/v1/challenges/${login.id}`);
    assert.equal(one.body.id, login.id);
    assert.equal(one.body.number, login.number);
    const list = (await s.api('GET', '/api/v1/challenges')).body.challenges;
    assert.ok(list.some((c: any) => c.id === login.id));
  });

  it('the helpdesk gets neither id nor number, in the list, one login, its wait, or the audit', async () => {
    const list = await asSession(s, 'GET', '/api/v1/challenges', desk);
    assert.equal(list.status, 200);
    const row = list.body.challenges.find((c: any) => c.user === 'gus');
    assert.ok(row, 'the login is listed');
    for (const c of list.body.challenges) {
      assert.equal(c.id, undefined);
      assert.equal(c.number, undefined);
    }
    assert.doesNotMatch(list.text, new RegExp(login.id), 'the id appears nowhere');
    assert.equal(row.displayCode, login.displayCode);
    assert.equal(typeof row.ref, 'string', 'an opaque key for the live view');
    for (const path of [`/api/v1/challenges/${login.id}`, `/api/v1/challenges/${login.id}/wait?timeout=0`]) {
      const r = await asSession(s, 'GET', path, desk);
      assert.equal(r.status, 200);
      assert.equal(r.body.state, 'pending');
      assert.equal(r.body.id, undefined, path);
      assert.equal(r.body.number, undefined, path);
    }
    await eventually(async () => ((await adminEvents(s)).some((e) => e.detail?.action === 'challenge.open') ? true : undefined), 'open audited');
    const audit = await asSession(s, 'GET', '/api/v1/audit?limit=1000', desk);
    assert.equal(audit.status, 200);
    assert.doesNotMatch(audit.text, new RegExp(login.id), 'the audit gives the pending id away neither');
  });

  it('a console admin still gets the id to approve or reject with', async () => {
    const list = await asSession(s, 'GET', '/api/v1/challenges', root);
    const row = list.body.challenges.find((c: any) => c.user === 'gus');
    assert.equal(row.id, login.id);
    assert.equal((await asSession(s, 'GET', `/api/v1/challenges/${login.id}`, root)).body.number, login.number);
    const audit = await asSession(s, 'GET', `/api/v1/audit?limit=1000`, root);
    assert.match(audit.text, new RegExp(login.id));
  });
});

describe('the audit names who changed what, from where', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    await consoleUser(s, 'root', 'admin');
  });
  after(() => s.close());

  it('every change through the admin token is an admin event with actor, ip, action and target', async () => {
    const ok = async (r: Promise<{ status: number; body: any }>, status = 200) => {
      const a = await r;
      assert.equal(a.status, status, JSON.stringify(a.body));
      return a.body;
    };
    await ok(s.api('POST', '/api/v1/users', { name: 'ivy', password: 'ivy-pw' }), 201);
    await ok(s.api('PATCH', '/api/v1/users/ivy', { displayName: 'Ivy' }));
    const enrol = await ok(s.api('POST', '/api/v1/users/ivy/otp', { type: 'hotp' }));
    const seed = base32Decode(enrol.secret);
    await ok(s.api('POST', '/api/v1/users/ivy/otp/resync', { code1: hotp(seed, 40, 'SHA1', 6), code2: hotp(seed, 41, 'SHA1', 6) }));
    await ok(s.api('POST', '/api/v1/users/ivy/unlock'));
    await ok(s.api('POST', '/api/v1/users/factors', { users: ['ivy'], factor: 'push', enabled: true }));
    const phone = await Authenticator.enrol((await ok(s.api('POST', '/api/v1/users/ivy/enrolments'), 201)).uri, { name: 'Ivy phone' });
    await ok(s.api('PATCH', `/api/v1/users/ivy/devices/${phone.file.deviceId}`, { name: 'Ivy old phone' }));
    await ok(s.api('DELETE', `/api/v1/users/ivy/devices/${phone.file.deviceId}`));
    await ok(s.api('POST', '/api/v1/radius-clients', { name: 'nas1', address: '10.9.0.0/24', secret: 'radius-secret-123', mode: 'challenge' }), 201);
    await ok(s.api('DELETE', '/api/v1/radius-clients/nas1'));
    await ok(s.api('POST', '/api/v1/oidc-clients', { client_id: 'app1', redirect_uris: ['https://app.example.test/cb'] }), 201);
    await ok(s.api('DELETE', '/api/v1/oidc-clients/app1'));
    await ok(s.api('POST', '/api/v1/bridge-credentials', { name: 'ws1', scope: 'workstation' }), 201);
    await ok(s.api('DELETE', '/api/v1/bridge-credentials/ws1'));
    await ok(s.api('POST', '/api/v1/users/factors', { users: ['ivy'], factor: 'push', enabled: false }));
    const ids: Record<string, string> = {};
    for (const action of ['approve', 'reject', 'cancel']) {
      ids[action] = (await ok(s.api('POST', '/api/v1/challenges', { user: 'ivy' }), 201)).id;
      await ok(s.api('POST', `/api/v1/challenges/${ids[action]}/${action}`, {}));
    }
    const revoke = await s.api('POST', '/api/v1/users/ivy/sessions/revoke');
    await ok(s.api('DELETE', '/api/v1/users/ivy'));

    const want: [string, { user?: string; client?: string }][] = [
      ['user.create', { user: 'ivy' }],
      ['user.update', { user: 'ivy' }],
      ['otp.enrol', { user: 'ivy' }],
      ['otp.resync', { user: 'ivy' }],
      ['otp.unlock', { user: 'ivy' }],
      ['push.enable', { user: 'ivy' }],
      ['push.disable', { user: 'ivy' }],
      ['factors.bulk', {}],
      ['device.enrolment', { user: 'ivy' }],
      ['device.rename', { user: 'ivy' }],
      ['device.revoke', { user: 'ivy' }],
      ['radius-client.add', { client: 'nas1' }],
      ['radius-client.remove', { client: 'nas1' }],
      ['oidc-client.add', { client: 'app1' }],
      ['oidc-client.remove', { client: 'app1' }],
      ['bridge-credential.add', { client: 'ws1' }],
      ['bridge-credential.revoke', { client: 'ws1' }],
      ['challenge.open', { user: 'ivy' }],
      ['challenge.approve', { user: 'ivy' }],
      ['challenge.reject', { user: 'ivy' }],
      ['challenge.cancel', { user: 'ivy' }],
      ['user.sessions-revoke', { user: 'ivy' }],
      ['user.delete', { user: 'ivy' }],
    ];
    const events = await eventually(async () => {
      const all = await adminEvents(s);
      return all.some((e) => e.detail?.action === 'user.delete') ? all : undefined;
    }, 'the last change audited');
    for (const [action, target] of want) {
      const e = events.find((x) => x.detail?.action === action);
      assert.ok(e, `${action} is audited`);
      assert.equal(e.actor, 'admin-token', `${action}: actor`);
      assert.ok(e.ip, `${action}: ip`);
      for (const [k, v] of Object.entries(target)) assert.equal(e[k], v, `${action}: ${k}`);
    }
    for (const action of ['approve', 'reject', 'cancel']) {
      assert.equal(events.find((e) => e.detail?.action === `challenge.${action}`).challengeId, ids[action]);
    }
    assert.equal(revoke.status, 200);
    assert.ok(!JSON.stringify(events).includes('ivy-pw'), 'no password in the audit');
  });

  it('a bulk change is an event of each user it actually changed; a console change names the administrator and role', async () => {
    for (const name of ['b1', 'b2', 'b3']) await s.api('POST', '/api/v1/users', { name });
    await s.api('POST', '/api/v1/users/factors', { users: ['b2'], factor: 'push', enabled: true });
    const root = await signIn(s, 'root');
    const r = await asSession(s, 'POST', '/api/v1/users/factors', root, { users: ['b1', 'b2', 'b3', 'ghost'], factor: 'push', enabled: true });
    assert.equal(r.status, 200);
    const e = await eventually(
      async () => (await adminEvents(s)).find((x) => x.detail?.action === 'factors.bulk' && x.actor === 'root'),
      'the bulk change audited',
    );
    assert.equal(e.detail.requested, 4);
    assert.equal(e.detail.failed, 1);
    assert.equal(e.detail.changed, 2);
    assert.equal(e.detail.actorRole, 'admin');
    assert.ok(e.ip);
    const perUser = (await adminEvents(s)).filter((x) => x.detail?.action === 'push.enable' && x.detail.batch === e.detail.batch);
    assert.deepEqual(perUser.map((x) => x.user).sort(), ['b1', 'b3'], 'b2 had push already, ghost does not exist');
    for (const x of perUser) {
      assert.equal(x.actor, 'root');
      assert.equal(x.detail.actorRole, 'admin');
    }
    const signInEvent = (await adminEvents(s)).find((x) => x.detail?.action === 'console.sign-in' && x.user === 'root');
    assert.equal(signInEvent?.actor, 'root');
  });
});

describe('console sessions across two instances on one Redis', () => {
  let a: TestServer;
  let b: TestServer;
  let up = false;
  before(async () => {
    up = await redisAvailable();
    if (!up) return;
    [a, b] = await startPairOnRedis(testRedisUrl(), uniquePrefix('console-sec'));
  });
  after(async () => {
    await a?.close();
    await b?.close();
  });

  it('sessions made on A are ended from B, and the audit keeps the actor', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    await consoleUser(a, 'rita', 'admin');
    const one = await signIn(a, 'rita');
    const two = await signIn(b, 'rita');
    assert.equal((await asSession(b, 'GET', '/api/v1/users', one)).status, 200, 'a session works on either instance');
    const r = await b.api('POST', '/api/v1/users/rita/sessions/revoke');
    assert.equal(r.body.sessionsEnded, 2);
    for (const who of [one, two]) {
      assert.equal((await asSession(a, 'GET', '/api/v1/users', who)).status, 401);
      assert.equal((await asSession(b, 'GET', '/api/v1/users', who)).status, 401);
    }
    const e = await eventually(async () => (await adminEvents(a)).find((x) => x.detail?.action === 'user.sessions-revoke'), 'audit');
    assert.equal(e.actor, 'admin-token');
    assert.equal(e.user, 'rita');
  });
});
