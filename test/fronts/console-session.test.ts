import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

/** The console's sign-in and sessions at the HTTP level: the gate to the admin API. */
describe('console sign-in and sessions', () => {
  let s: TestServer;
  const secrets: Record<string, string> = {};
  before(async () => {
    s = await startTestServer();
    for (const [name, role] of [['root', 'admin'], ['desk', 'helpdesk']] as const) {
      await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, role });
      secrets[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    await s.api('POST', '/api/v1/users', { name: 'plain', password: 'plain-pw' });
  });
  after(() => s.close());

  const call = async (method: string, path: string, body?: unknown, cookie = '', csrf?: string) => {
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: { ...(cookie ? { cookie } : {}), ...(body ? { 'content-type': 'application/json' } : {}), ...(csrf ? { 'x-csrf-token': csrf } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]!).filter((c) => !c.endsWith('='));
    return { status: res.status, body: (await res.json().catch(() => ({}))) as any, cookies, raw: res.headers.getSetCookie() };
  };
  /** Each TOTP step counts once per user, so a second sign-in uses the next step's code. */
  const signIn = async (user: string, step = 0) => {
    const start = await call('POST', '/console/api/login', { user, password: `${user}-pw` });
    assert.equal(start.status, 200, JSON.stringify(start.body));
    const loginCookie = start.cookies.join('; ');
    const at = ['-N', `@${Math.floor(Date.now() / 1000) + step * 30}`];
    const otp = await call('POST', '/console/api/login/otp', { code: oathTotp(secrets[user]!, 6, at) }, loginCookie);
    assert.equal(otp.body.state, 'approved', JSON.stringify(otp.body));
    const done = await call('POST', '/console/api/login/finish', {}, loginCookie);
    assert.equal(done.status, 200);
    assert.ok(done.raw.some((c) => /cs_console=.+HttpOnly; SameSite=Strict/.test(c)), done.raw.join());
    return { cookie: done.cookies.filter((c) => c.startsWith('cs_console=')).join('; '), csrf: done.body.csrf as string, role: done.body.role };
  };

  it('needs the password, a console role and the administrator’s own second factor', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    assert.equal((await call('POST', '/console/api/login', { user: 'root', password: 'wrong' })).status, 401);
    assert.equal((await call('POST', '/console/api/login', { user: 'plain', password: 'plain-pw' })).status, 401, 'no role, no console');
    const start = await call('POST', '/console/api/login', { user: 'root', password: 'root-pw' });
    assert.match(start.body.displayCode, /^\d{4}$/);
    assert.equal((await call('POST', '/console/api/login/finish', {}, start.cookies.join('; '))).status, 403, 'not before the second factor');
    assert.equal((await call('POST', '/console/api/login/finish', {})).status, 401, 'not from another browser');
    const session = await signIn('root');
    assert.equal(session.role, 'admin');
    assert.equal((await call('GET', '/console/api/session', undefined, session.cookie)).body.user, 'root');
  });

  it('password guessing against one administrator is throttled without holding up the others', async () => {
    // A server of its own (behind a proxy that says who is calling), so its limits meet no other test's sign-ins.
    const own = await startTestServer({}, {}, (c) => {
      c.http.trustProxy = true;
    });
    try {
      await own.api('POST', '/api/v1/users', { name: 'target', password: 'target-pw', role: 'admin' });
      await own.api('POST', '/api/v1/users', { name: 'plain', password: 'plain-pw' });
      const login = (user: string, password: string, from: string) =>
        fetch(`${own.url}/console/api/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': from }, body: JSON.stringify({ user, password }) });
      for (let i = 0; i < 10; i++) assert.equal((await login('target', `guess-${i}`, '203.0.113.5')).status, 401);
      const held = await login('target', 'target-pw', '203.0.113.5');
      assert.equal(held.status, 429, 'this source waits, even with the right password');
      assert.equal(((await held.json()) as any).error, 'too_many_attempts');
      assert.equal((await login('plain', 'plain-pw', '203.0.113.5')).status, 429, 'that address has used its failures for the minute, whoever it names');
      assert.equal((await login('plain', 'plain-pw', '198.51.100.5')).status, 401, 'another user elsewhere is answered as before');
    } finally {
      await own.close();
    }
  });

  it('an admin session changes things only with its CSRF token', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const { cookie, csrf } = await signIn('root', 1);
    assert.equal((await call('GET', '/api/v1/users?limit=5', undefined, cookie)).status, 200);
    const noCsrf = await call('POST', '/api/v1/users', { name: 'x1' }, cookie);
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.body.error, 'csrf');
    assert.equal((await call('POST', '/api/v1/users', { name: 'x1' }, cookie, 'wrong-token')).status, 403);
    assert.equal((await s.api('GET', '/api/v1/users/x1')).status, 404, 'nothing was created');
    assert.equal((await call('POST', '/api/v1/users', { name: 'x1' }, cookie, csrf)).status, 201);
  });

  it('helpdesk may look but not change; expired sessions and sign-out are refused', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const desk = await signIn('desk');
    assert.equal((await call('GET', '/api/v1/users/root', undefined, desk.cookie)).status, 200);
    const change = await call('POST', '/api/v1/users/factors', { users: ['plain'], factor: 'push', enabled: true }, desk.cookie, desk.csrf);
    assert.equal(change.status, 403);
    assert.equal(change.body.error, 'read_only');
    assert.equal((await s.api('GET', '/api/v1/users/plain')).body.push.enabled, false, 'nothing changed');
    assert.equal((await call('GET', '/api/v1/users', undefined, 'cs_console=forged')).body.error, 'session_expired');
    assert.equal((await call('POST', '/console/api/logout', {}, desk.cookie)).status, 403, 'signing out needs the CSRF token too');
    assert.equal((await call('POST', '/console/api/logout', {}, desk.cookie, desk.csrf)).status, 200);
    assert.equal((await call('GET', '/api/v1/users', undefined, desk.cookie)).status, 401);
  });
});
