/**
 * The self-service portal's door (issue 21, findings 4, 5, 10 and 14): what a password alone,
 * an old session or an administrator's incident response does to a portal session. Plain HTTP
 * with a cookie jar against a real server whose clock can be moved forward.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Clock } from '../../src/core/clock.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const up = hasCommand('oathtool');
const ready = (t: TestContext) => requirePeer(t, up, 'oathtool');

/** The system clock, moved forward by hand: sessions can age without the test waiting. */
function movableClock(): Clock & { skip(ms: number): void } {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    at(at, fn) {
      const handle = setTimeout(fn, Math.max(0, at - (Date.now() + offset)));
      handle.unref?.();
      return { cancel: () => clearTimeout(handle) };
    },
    skip(ms) {
      offset += ms;
    },
  };
}

/** One browser: its cookies and the portal's CSRF token. */
class Portal {
  private cookies = new Map<string, string>();
  csrf = '';
  constructor(
    private base: string,
    private clock: Clock,
  ) {}

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.base}/account/api${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.csrf ? { 'x-csrf-token': this.csrf } : {}),
        cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const [k, v] = [pair!.slice(0, i), pair!.slice(i + 1)];
      if (v === '' || /Max-Age=0/.test(c)) this.cookies.delete(k);
      else this.cookies.set(k, v);
    }
    const b = (await res.json().catch(() => ({}))) as any;
    if (b?.csrf) this.csrf = b.csrf;
    return { status: res.status, body: b };
  }

  /** Password, then the user's one-time code: a session that proved the user's own factor. */
  async signIn(user: string, password: string, totp: string): Promise<void> {
    const first = await this.call('POST', '/login', { user, password });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.signedIn, false);
    // The code of the server's time, which the tests move forward.
    const code = oathTotp(totp, 6, ['-N', `@${Math.floor(this.clock.now() / 1000)}`]);
    assert.equal((await this.call('POST', '/login/otp', { code })).body.state, 'approved');
    const done = await this.call('POST', '/login/finish');
    assert.equal(done.status, 200, JSON.stringify(done.body));
  }
}

describe('the portal’s door', () => {
  let s: TestServer;
  const clock = movableClock();
  const totp: Record<string, string> = {};
  const portal = () => new Portal(s.url, clock);
  const addUser = async (name: string, opts: { otp?: boolean; role?: 'admin' } = {}) => {
    await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, ...(opts.role ? { role: opts.role } : {}) });
    if (opts.otp !== false) totp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
  };

  before(async () => {
    if (!up) return;
    s = await startTestServer({}, { clock }, (c) => {
      c.policy.enrolAtSignIn = 'on';
    });
  });
  after(() => s?.close());

  describe('finding 4: an administrator’s incident response ends portal sessions too', () => {
    const cases: [string, (user: string) => Promise<unknown>][] = [
      ['a password reset', (u) => s.api('PATCH', `/api/v1/users/${u}`, { password: 'a-new-password' })],
      ['revoke sessions', (u) => s.api('POST', `/api/v1/users/${u}/sessions/revoke`)],
      ['OTP re-enrolment', (u) => s.api('POST', `/api/v1/users/${u}/otp`, {})],
      ['a role change', (u) => s.api('PATCH', `/api/v1/users/${u}`, { role: 'helpdesk' })],
      ['deletion', (u) => s.api('DELETE', `/api/v1/users/${u}`)],
    ];
    for (const [what, act] of cases) {
      it(`${what} signs the user out of the portal`, async (t) => {
        if (!ready(t)) return;
        const user = `ir-${what.replace(/\W+/g, '-')}`;
        await addUser(user);
        const p = portal();
        await p.signIn(user, `${user}-pw`, totp[user]!);
        assert.equal((await p.call('GET', '/me')).status, 200);
        await act(user);
        const after = await p.call('GET', '/me');
        assert.equal(after.status, 401, `${what}: ${JSON.stringify(after.body)}`);
        assert.equal((await p.call('POST', '/recovery')).status, 401, 'and it can mint nothing');
      });
    }

    it('removing the user’s device or passkey ends their portal sessions', async (t) => {
      if (!ready(t)) return;
      await addUser('lost-phone');
      const link = (await s.api('POST', '/api/v1/users/lost-phone/enrolments')).body;
      const { Authenticator } = await import('../../src/cli/authenticator.js');
      await Authenticator.enrol(link.uri, { name: 'Stolen phone' });
      const p = portal();
      await p.signIn('lost-phone', 'lost-phone-pw', totp['lost-phone']!);
      const [device] = (await s.api('GET', '/api/v1/users/lost-phone/devices')).body.devices;
      await s.api('DELETE', `/api/v1/users/lost-phone/devices/${device.id}`);
      assert.equal((await p.call('GET', '/me')).status, 401);
    });
  });

  describe('finding 5: the enrolment grace is a first enrolment, not a session', () => {
    it('a password-alone session may set up the first factor and nothing else, and ends with it', async (t) => {
      if (!ready(t)) return;
      await addUser('newbie', { otp: false });
      const p = portal();
      const first = await p.call('POST', '/login', { user: 'newbie', password: 'newbie-pw' });
      assert.equal(first.body.signedIn, true);
      assert.equal(first.body.grace, true);
      assert.equal((await p.call('GET', '/me')).body.grace, true);
      assert.equal((await p.call('GET', '/activity')).status, 403, 'not the history');
      assert.equal((await p.call('POST', '/recovery')).status, 403, 'no recovery codes before a factor');
      const started = await p.call('POST', '/otp/start');
      assert.equal(started.status, 200);
      const done = await p.call('POST', '/otp/confirm', { code: oathTotp(started.body.secret) });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.signedOut, true);
      assert.equal((await p.call('GET', '/me')).status, 401, 'the grace session ended with the enrolment');
    });

    it('once the real user has a factor, a grace session opened before cannot replace it', async (t) => {
      if (!ready(t)) return;
      await addUser('racer', { otp: false });
      const attacker = portal();
      assert.equal((await attacker.call('POST', '/login', { user: 'racer', password: 'racer-pw' })).body.grace, true);
      // The real user sets up TOTP (here: their own grace sign-in, in another browser).
      const real = portal();
      await real.call('POST', '/login', { user: 'racer', password: 'racer-pw' });
      const seed = (await real.call('POST', '/otp/start')).body.secret;
      assert.equal((await real.call('POST', '/otp/confirm', { code: oathTotp(seed) })).status, 200);
      const before = (await s.ctx.store.users.get('racer'))!.otpSecret;
      const tried = await attacker.call('POST', '/otp/start');
      assert.equal(tried.status, 403);
      assert.equal(tried.body.error, 'factor_exists');
      assert.equal((await attacker.call('GET', '/me')).status, 401, 'and it is over');
      assert.equal((await s.ctx.store.users.get('racer'))!.otpSecret, before);
      // A fresh sign-in now needs the factor.
      assert.equal((await portal().call('POST', '/login', { user: 'racer', password: 'racer-pw' })).body.signedIn, false);
    });

    it('never for a console user', async (t) => {
      if (!ready(t)) return;
      await addUser('new-admin', { otp: false, role: 'admin' });
      const r = await portal().call('POST', '/login', { user: 'new-admin', password: 'new-admin-pw' });
      assert.equal(r.status, 403);
      assert.equal(r.body.error, 'no_factor');
    });
  });

  describe('finding 14: adding a way in needs the current factor within 15 minutes, in the portal as in the console', () => {
    it('an 18-minute-old session adds no passkey, device, TOTP or recovery codes; a fresh sign-in may', async (t) => {
      if (!ready(t)) return;
      await addUser('boss', { role: 'admin' });
      const p = portal();
      await p.signIn('boss', 'boss-pw', totp.boss!);
      clock.skip(18 * 60_000);
      for (const path of ['/passkeys/options', '/devices/enrolment', '/otp/start', '/recovery']) {
        const r = await p.call('POST', path);
        assert.equal(r.status, 403, `${path}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error, 'sign_in_again');
      }
      assert.equal((await p.call('GET', '/me')).status, 200, 'the session itself still reads');
      // A code of a step the first sign-in did not use.
      const again = portal();
      await again.call('POST', '/login', { user: 'boss', password: 'boss-pw' });
      assert.equal((await again.call('POST', '/login/otp', { code: oathTotp(totp.boss!, 6, ['-N', `@${Math.floor(clock.now() / 1000)}`]) })).body.state, 'approved');
      await again.call('POST', '/login/finish');
      assert.equal((await again.call('POST', '/recovery')).status, 200);
    });
  });

  describe('finding 12: a wrong recovery code is an audit event of the user', () => {
    it('names the user, the front and the address', async (t) => {
      if (!ready(t)) return;
      await addUser('forgetful');
      await s.ctx.recovery.create('forgetful');
      const p = portal();
      await p.call('POST', '/login', { user: 'forgetful', password: 'forgetful-pw' });
      assert.equal((await p.call('POST', '/login/recovery', { code: 'abcd-efgh-ijkl' })).status, 401);
      const events = (await s.api('GET', '/api/v1/audit?user=forgetful')).body.events as any[];
      const e = events.find((x) => x.type === 'otp');
      assert.ok(e, JSON.stringify(events));
      assert.equal(e.method, 'recovery');
      assert.equal(e.outcome, 'recovery_invalid');
      assert.equal(e.front, 'account');
      assert.ok(e.ip);
    });
  });

  describe('finding 10: a portal session cannot pile up links or flood changes', () => {
    it('a new device link voids the one before', async (t) => {
      if (!ready(t)) return;
      await addUser('linker');
      const p = portal();
      await p.signIn('linker', 'linker-pw', totp.linker!);
      const first = (await p.call('POST', '/devices/enrolment')).body;
      const second = (await p.call('POST', '/devices/enrolment')).body;
      const { Authenticator } = await import('../../src/cli/authenticator.js');
      await assert.rejects(Authenticator.enrol(first.uri, { name: 'first' }), /unknown, used or expired/, 'the first link is void');
      await Authenticator.enrol(second.uri, { name: 'second' });
      assert.equal((await s.api('GET', '/api/v1/users/linker/devices')).body.devices.length, 1);
    });

    it('changes are limited per user', async (t) => {
      if (!ready(t)) return;
      await addUser('busy');
      const p = portal();
      await p.signIn('busy', 'busy-pw', totp.busy!);
      const statuses: number[] = [];
      for (let i = 0; i < 32; i++) statuses.push((await p.call('POST', '/devices/enrolment')).status);
      assert.deepEqual([...new Set(statuses.slice(0, 30))], [200]);
      assert.deepEqual(statuses.slice(30), [429, 429]);
    });
  });
});
