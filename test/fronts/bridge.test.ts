import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { checkOffline, type OfflineBatch } from '../../src/core/offline.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const hotpCode = (secret: string, counter: number) =>
  execFileSync('oathtool', ['--hotp', '-b', '-c', String(counter), secret], { encoding: 'utf8' }).trim();

describe('Windows logon bridge', () => {
  let s: TestServer;
  let token: string;
  let phone: Authenticator;
  let totpSecret: string;

  before(async () => {
    s = await startTestServer({ COUNTERSIGN_DEADLINE_SECONDS: '5' }, {}, (c) => {
      c.push.rateLimit.count = 100;
      c.push.rejectLockout.count = 100;
    });
    token = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'fleet-1' })).body.token;
    await s.api('POST', '/api/v1/users', { name: 'dana', password: 'dana-pw' });
    totpSecret = (await s.api('POST', '/api/v1/users/dana/otp', {})).body.secret;
    await s.api('POST', '/api/v1/users/factors', { users: ['dana'], factor: 'push', enabled: true });
    phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/dana/enrolments')).body.uri, {});
  });
  after(() => s.close());

  const bridge = (method: string, path: string, body?: unknown, auth = token) => s.api(method, `/bridge/v1${path}`, body, auth);
  /** privacyIDEA's API as its credential provider calls it: form-encoded POSTs, query-string GETs. */
  const pi = async (method: 'GET' | 'POST', path: string, fields: Record<string, string>, headers: Record<string, string> = {}) => {
    const q = new URLSearchParams(fields).toString();
    const res = await fetch(`${s.url}${path}${method === 'GET' ? `?${q}` : ''}`, {
      method,
      headers: { ...(method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...headers },
      body: method === 'POST' ? q : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const pending = async () => {
    for (let i = 0; i < 100; i++) {
      const [p] = await phone.pending();
      if (p) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no pending push');
  };

  describe('native API', () => {
    it('refuses unknown and revoked credentials', async () => {
      assert.equal((await bridge('POST', '/logins', { user: 'dana', workstation: 'ws-1' }, '')).status, 401);
      assert.equal((await bridge('POST', '/logins', { user: 'dana', workstation: 'ws-1' }, 'csb_forged')).status, 401);
      const temp = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'temp' })).body.token;
      assert.equal((await s.api('DELETE', '/api/v1/bridge-credentials/temp')).status, 200);
      const revoked = await bridge('POST', '/logins', { user: 'dana', workstation: 'ws-1' }, temp);
      assert.equal(revoked.status, 401);
      assert.match(revoked.body.message, /revoked/);
    });

    it('starts a logon, and a long-poll wakes the moment the phone approves; the audit names the workstation', async () => {
      const start = await bridge('POST', '/logins', { user: 'dana', password: 'dana-pw', workstation: 'WS-0042', scenario: 'unlock' });
      assert.equal(start.status, 201, JSON.stringify(start.body));
      assert.deepEqual(start.body.factors, ['otp', 'push']);
      const waiting = bridge('GET', `/logins/${start.body.challengeId}?wait=10`);
      const p = await pending();
      assert.equal(p.displayCode, start.body.displayCode);
      assert.equal(p.client, 'WS-0042');
      const t = Date.now();
      await phone.answer(p.challengeId, 'approve');
      const done = await waiting;
      assert.equal(done.body.status, 'approved');
      assert.ok(Date.now() - t < 500, `woke after ${Date.now() - t} ms`);
      await new Promise((r) => setTimeout(r, 20));
      const audit = await s.api('GET', '/api/v1/audit?user=dana&front=bridge');
      assert.equal(audit.body.events.find((e: any) => e.challengeId === start.body.challengeId).client, 'WS-0042');
    });

    it('takes an OTP, refuses wrong passwords and bad input, and cancels', async (t) => {
      if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
      assert.equal((await bridge('POST', '/logins', { user: 'dana', password: 'nope', workstation: 'ws-1' })).status, 401);
      assert.equal((await bridge('POST', '/logins', { user: 'dana', workstation: 'bad name!' })).status, 400);
      assert.equal((await bridge('GET', '/logins/AAAAAAAAAAAAAAAAAAAAAAAA')).status, 404);
      const a = await bridge('POST', '/logins', { user: 'dana', workstation: 'ws-1' });
      assert.equal((await bridge('POST', `/logins/${a.body.challengeId}/otp`, { code: '12' })).status, 400);
      const ok = await bridge('POST', `/logins/${a.body.challengeId}/otp`, { code: oathTotp(totpSecret) });
      assert.equal(ok.body.status, 'approved', JSON.stringify(ok.body));
      const b = await bridge('POST', '/logins', { user: 'dana', workstation: 'ws-1' });
      assert.equal((await bridge('POST', `/logins/${b.body.challengeId}/cancel`)).body.status, 'cancelled');
      // A login opened elsewhere (the admin API) is not the bridge's to see.
      const other = await s.api('POST', '/api/v1/challenges', { user: 'dana' });
      assert.equal((await bridge('GET', `/logins/${other.body.id}`)).status, 404);
    });

    it('hands out offline HOTP values as salted hashes, and retires the used ones when back online', async (t) => {
      if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
      await s.api('POST', '/api/v1/users', { name: 'erik', password: 'erik-pw' });
      const secret = (await s.api('POST', '/api/v1/users/erik/otp', { type: 'hotp' })).body.secret;
      assert.equal((await bridge('POST', '/offline', { user: 'erik', workstation: 'ws-9', loginId: 'A'.repeat(24) })).body.error, 'no_approved_logon');
      // Offline values come right after an approved online logon at that workstation.
      const online = await bridge('POST', '/logins', { user: 'erik', password: 'erik-pw', workstation: 'ws-9' });
      assert.equal((await bridge('POST', `/logins/${online.body.challengeId}/otp`, { code: hotpCode(secret, 0) })).body.status, 'approved');
      const r = await bridge('POST', '/offline', { user: 'erik', workstation: 'ws-9', loginId: online.body.challengeId });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const batch = r.body as OfflineBatch;
      assert.equal(batch.values.length, 20);
      assert.equal(batch.values[0]!.counter, 1);
      assert.ok(!JSON.stringify(batch).includes(hotpCode(secret, 1)), 'no code in clear');
      // The workstation, offline, checks what the user types.
      assert.equal(await checkOffline(batch, hotpCode(secret, 3)), 3);
      assert.equal(await checkOffline(batch, '000000'), null);
      // Back online: counter 3 was used, so it and everything before it are dead online.
      assert.equal((await bridge('POST', '/offline/used', { user: 'erik', workstation: 'ws-9', counters: [3] })).status, 200);
      const again = await s.api('POST', '/api/v1/otp/verify', { user: 'erik', code: hotpCode(secret, 3) });
      assert.equal(again.body.error, 'otp_replayed');
      assert.equal((await s.api('POST', '/api/v1/otp/verify', { user: 'erik', code: hotpCode(secret, 4) })).status, 200);
    });
  });

  describe('privacyIDEA-compatible API, as the privacyIDEA Credential Provider calls it', () => {
    /** Two-step with the Windows password (otppin=userstore): it triggers the challenges, then poll every 500 ms. */
    const startPi = async () => {
      const r = await pi('POST', '/validate/check', { user: 'dana', realm: 'corp', pass: 'dana-pw' });
      assert.equal(r.status, 200);
      assert.equal(r.body.result.authentication, 'CHALLENGE');
      assert.equal(r.body.result.value, false);
      return r.body.detail;
    };
    const poll = async (tid: string, until: (s: string) => boolean, max = 20) => {
      for (let i = 0; i < max; i++) {
        const r = await pi('GET', '/validate/polltransaction', { transaction_id: tid });
        if (until(r.body.detail.challenge_status)) return r.body;
        await new Promise((res) => setTimeout(res, 500));
      }
      throw new Error('poll never ended');
    };

    it('push approved: CHALLENGE, poll, single-use finalising check → ACCEPT', async () => {
      const d = await startPi();
      assert.equal(d.preferred_client_mode, 'poll');
      const modes = d.multi_challenge.map((m: any) => `${m.type}:${m.client_mode}`).sort();
      assert.deepEqual(modes, ['push:poll', 'totp:interactive']);
      const p = await pending();
      assert.match(d.multi_challenge.find((m: any) => m.type === 'push').message, new RegExp(`ID ${p.displayCode}`));
      const early = await pi('POST', '/validate/check', { user: 'dana', pass: '', transaction_id: d.transaction_id });
      assert.equal(early.body.result.authentication, 'REJECT', 'finalise before approval logs nobody in');
      setTimeout(() => void phone.answer(p.challengeId, 'approve'), 700);
      const polled = await poll(d.transaction_id, (st) => st !== 'pending');
      assert.equal(polled.result.value, true);
      const final = await pi('POST', '/validate/check', { user: 'dana', pass: '', transaction_id: d.transaction_id });
      assert.deepEqual(final.body.result, { status: true, value: true, authentication: 'ACCEPT' });
      const twice = await pi('POST', '/validate/check', { user: 'dana', pass: '', transaction_id: d.transaction_id });
      assert.equal(twice.body.result.authentication, 'REJECT', 'double finalise');
    });

    it('push rejected: the poll ends at once and the finalising check is DECLINED', async () => {
      const d = await startPi();
      const started = Date.now();
      await phone.answer((await pending()).challengeId, 'reject');
      const polled = await poll(d.transaction_id, (st) => st !== 'pending');
      assert.equal(polled.detail.challenge_status, 'declined');
      assert.ok(Date.now() - started < 3000);
      const final = await pi('POST', '/validate/check', { user: 'dana', pass: '', transaction_id: d.transaction_id });
      assert.equal(final.body.result.authentication, 'DECLINED');
      assert.equal(final.body.result.value, false);
    });

    it('OTP typed into the credential provider → ACCEPT; a wrong one → REJECT', async (t) => {
      if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
      await s.api('POST', '/api/v1/users/dana/unlock');
      const d = await startPi();
      const wrong = await pi('POST', '/validate/check', { user: 'dana', pass: '000000', transaction_id: d.transaction_id });
      assert.equal(wrong.body.result.authentication, 'REJECT');
      await new Promise((r) => setTimeout(r, 1000)); // a fresh TOTP step may be needed after the previous test's code
      const ok = await pi('POST', '/validate/check', { user: 'dana', pass: oathTotp(totpSecret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]), transaction_id: d.transaction_id });
      assert.equal(ok.body.result.authentication, 'ACCEPT', JSON.stringify(ok.body));
    });

    it('nobody answers: the poll sees the deadline pass and the finalising check rejects', async () => {
      const d = await startPi();
      const polled = await poll(d.transaction_id, (st) => st !== 'pending', 20);
      assert.equal(polled.detail.challenge_status, 'expired');
      const final = await pi('POST', '/validate/check', { user: 'dana', pass: '', transaction_id: d.transaction_id });
      assert.equal(final.body.result.authentication, 'REJECT');
    });

    it('bad input: another user’s transaction, missing fields, no service account', async () => {
      await s.api('POST', '/api/v1/users', { name: 'mallory', password: 'm-pw' });
      const d = await startPi();
      const stolen = await pi('POST', '/validate/check', { user: 'mallory', pass: '', transaction_id: d.transaction_id });
      assert.equal(stolen.body.result.authentication, 'REJECT');
      const missing = await pi('POST', '/validate/check', { pass: '' });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.result.status, false);
      assert.match(missing.body.result.error.message, /ERR905/);
      const noAuth = await pi('POST', '/validate/triggerchallenge', { user: 'dana' });
      assert.equal(noAuth.status, 401);
      const auth = await pi('POST', '/auth', { username: 'fleet-1', password: token });
      const trig = await pi('POST', '/validate/triggerchallenge', { user: 'dana' }, { authorization: auth.body.result.value.token });
      assert.equal(trig.body.result.authentication, 'CHALLENGE');
      assert.equal((await pi('GET', '/validate/polltransaction', { transaction_id: 'nonsense' })).body.detail.challenge_status, 'none');
    });
  });
});
