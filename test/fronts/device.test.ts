import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { pushServices, until } from '../helpers/push.js';
import { startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const bin = fileURLToPath(new URL('../../bin/countersign.js', import.meta.url));
const haveOpenssl = hasCommand('openssl');
const FCM_TOKEN = `fcm_${'x'.repeat(150)}`;
const APNS_TOKEN = 'a'.repeat(64);

const rejectsWith = async (p: Promise<unknown>, code: string) => {
  await assert.rejects(p, (e: Error & { cause?: { error?: string } }) => {
    assert.equal(e.cause?.error, code, e.message);
    return true;
  });
};

describe('push channel end to end', () => {
  let s: TestServer;
  let push: Awaited<ReturnType<typeof pushServices>>;
  let users = 0;

  before(async (t) => {
    if (!haveOpenssl) return;
    push = await pushServices();
    s = await startTestServer({}, { pushTransports: push.transports() });
  });
  after(async () => {
    await s?.close();
    await push?.close();
  });

  /** A fresh user with push on and a device enrolled through a real enrolment link. */
  const userWithDevice = async (opts: Parameters<typeof Authenticator.enrol>[1] = {}, password = 'pw') => {
    const name = `u${++users}`;
    await s.api('POST', '/api/v1/users', { name, password });
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    const link = await s.api('POST', `/api/v1/users/${name}/enrolments`);
    assert.equal(link.status, 201);
    return { name, device: await Authenticator.enrol(link.body.uri, opts) };
  };
  const login = async (name: string, body: Record<string, unknown> = {}) => {
    const r = await s.api('POST', '/api/v1/challenges', { user: name, origin: { client: 'vpn-gw', ip: '198.51.100.4' }, ...body });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
  };

  it('pushes to Android over FCM with the login screen’s ID, and an approval wakes the waiter', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice({ platform: 'android', pushToken: FCM_TOKEN, name: 'Pixel' });
    const c = await login(name);
    assert.deepEqual(c.factors, ['push']);
    const sent = await until(() => push.fcm.requests.find((r: any) => r.body?.message?.data?.challengeId === c.id));
    const msg = (sent.body as any).message;
    assert.equal(msg.token, FCM_TOKEN);
    assert.equal(msg.data.displayCode, c.displayCode, 'the push shows the same ID as the login screen');
    assert.equal(msg.data.client, 'vpn-gw');
    assert.equal(msg.data.ip, '198.51.100.4');
    assert.equal(msg.data.watch, 'approve-reject');
    assert.equal(msg.android.priority, 'HIGH');
    assert.ok(!JSON.stringify(msg).includes(c.number ?? '§'), 'no number in the push');

    const waiting = s.api('GET', `/api/v1/challenges/${c.id}/wait?timeout=10`);
    const pending = await device.pending();
    assert.equal(pending[0]!.displayCode, c.displayCode);
    const started = Date.now();
    assert.deepEqual(await device.answer(c.id, 'approve'), { challengeId: c.id, state: 'approved' });
    const done = await waiting;
    assert.equal(done.body.state, 'approved');
    assert.equal(done.body.method, 'push');
    assert.ok(Date.now() - started < 1000);
  });

  it('pushes to iOS over APNs with an Approve/Reject category and expiry at the deadline', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice({ platform: 'ios', pushToken: APNS_TOKEN });
    const c = await login(name);
    const sent = await until(() => push.apns.requests.find((r: any) => r.body?.countersign?.challengeId === c.id));
    assert.equal(sent.headers['apns-push-type'], 'alert');
    assert.equal(Number(sent.headers['apns-expiration']), Math.floor(c.deadline / 1000));
    assert.equal(sent.body.aps.category, 'COUNTERSIGN_APPROVE_REJECT');
    assert.match(sent.body.aps.alert.body, new RegExp(c.displayCode));
    await device.answer(c.id, 'reject');
    assert.equal((await s.api('GET', `/api/v1/challenges/${c.id}`)).body.state, 'rejected', 'a rejection ends the login at once');
  });

  it('lets a PIN-protected device approve on the phone only, never from the watch', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice({ platform: 'android', pushToken: FCM_TOKEN + 'p', protected: true });
    const c = await login(name);
    const sent = await until(() => push.fcm.requests.find((r: any) => r.body?.message?.data?.challengeId === c.id));
    assert.equal((sent.body as any).message.data.watch, 'reject-only');
    await rejectsWith(device.answer(c.id, 'approve', { via: 'watch' }), 'approve_on_phone');
    assert.equal((await device.answer(c.id, 'approve', { via: 'phone' })).state, 'approved');
  });

  it('matches numbers: the right one approves, a wrong one rejects', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice();
    await s.api('PATCH', `/api/v1/users/${name}`, { numberMatching: true });
    const c1 = await login(name);
    assert.match(c1.number, /^\d{2}$/);
    assert.equal((await device.pending())[0]!.numberMatching, true);
    assert.equal((await device.pending() as any)[0].number, undefined, 'the device is never told the number');
    await rejectsWith(device.answer(c1.id, 'approve'), 'wrong_number');
    assert.equal((await s.api('GET', `/api/v1/challenges/${c1.id}`)).body.state, 'rejected');
    const c2 = await login(name);
    assert.equal((await device.answer(c2.id, 'approve', { number: c2.number })).state, 'approved');
  });

  it('keeps one pending push per user: a new login cancels the older one', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice();
    const first = await login(name);
    const second = await login(name);
    const old = (await s.api('GET', `/api/v1/challenges/${first.id}`)).body;
    assert.equal(old.state, 'cancelled');
    assert.match(old.reason, /superseded/);
    assert.deepEqual((await device.pending()).map((p) => p.challengeId), [second.id]);
    await rejectsWith(device.answer(first.id, 'approve'), 'challenge_cancelled');
  });

  it('"this wasn’t me" audits fraud and mutes push for the user', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice();
    const c = await login(name);
    await device.answer(c.id, 'reject', { reason: 'not-me' });
    const again = await s.api('POST', '/api/v1/challenges', { user: name });
    assert.equal(again.status, 423);
    assert.equal(again.body.error, 'push_locked');
    const audit = await s.api('GET', `/api/v1/audit?user=${name}`);
    const fraud = audit.body.events.find((e: any) => e.type === 'fraud');
    assert.equal(fraud.challengeId, c.id);
    assert.equal(fraud.detail.reason, 'not-me');
    assert.match((await s.api('GET', '/metrics')).body, /countersign_push_fraud_reports_total [1-9]/);
    assert.equal((await s.api('POST', `/api/v1/users/${name}/unlock`)).body.push.lockedUntil, undefined);
    assert.equal((await s.api('POST', '/api/v1/challenges', { user: name })).status, 201, 'an administrator lifts the mute');
  });

  it('locks push after repeated rejections and rate-limits pushes', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice();
    for (let i = 0; i < 3; i++) await device.answer((await login(name)).id, 'reject');
    assert.equal((await s.api('POST', '/api/v1/challenges', { user: name })).body.error, 'push_locked');
    const other = await userWithDevice();
    for (let i = 0; i < 5; i++) await login(other.name);
    const sixth = await s.api('POST', '/api/v1/challenges', { user: other.name });
    assert.equal(sixth.status, 429);
    assert.equal(sixth.body.error, 'push_rate_limited');
  });

  it('marks a device stale when FCM says its token is dead; it can still poll and answer', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const dead = `dead_${randomBytes(20).toString('hex')}`;
    push.fcm.deadTokens.add(dead);
    const { name, device } = await userWithDevice({ pushToken: dead });
    const c = await login(name);
    await until(() => push.fcm.requests.find((r: any) => r.body?.message?.data?.challengeId === c.id && r.status === 404));
    let list: any[] = [];
    for (let i = 0; i < 100 && !list[0]?.stale; i++) {
      list = (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(list[0].stale, true);
    assert.equal(list[0].push, false);
    assert.equal((await device.answer(c.id, 'approve')).state, 'approved');
    await device.setPushToken(FCM_TOKEN + 'new');
    assert.equal((await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices[0].push, true, 'a new token revives it');
  });

  it('serves poll-only devices', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const { name, device } = await userWithDevice({});
    const before = push.fcm.requests.length + push.apns.requests.length;
    const c = await login(name);
    const otp = await s.api('POST', `/api/v1/challenges/${c.id}/otp`, { code: '123456' });
    assert.equal(otp.body.error, 'otp_not_offered', 'a push-only login takes no OTP');
    const [p] = await device.pending();
    assert.equal(p!.challengeId, c.id);
    assert.equal(p!.displayCode, c.displayCode);
    assert.equal(push.fcm.requests.length + push.apns.requests.length, before, 'nothing was pushed');
    assert.equal((await device.answer(c.id, 'approve')).state, 'approved');
    assert.deepEqual(await device.pending(), []);
  });

  describe('refuses bad answers, approving nothing', () => {
    it('forged signatures, other devices, other users’ logins, replays and late answers', async (t) => {
      if (!requirePeer(t, haveOpenssl, 'openssl')) return;
      const alice = await userWithDevice();
      const bob = await userWithDevice();
      const c = await login(alice.name);
      const post = (request: string) => s.api('POST', '/device/v1/answer', { request });

      // Signed with a key that is not the enrolled one.
      const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const forged = await new SignJWT({ cid: c.id, decision: 'approve' })
        .setProtectedHeader({ alg: 'ES256', typ: 'countersign-answer+jwt', kid: alice.device.file.deviceId })
        .setSubject(alice.name).setIssuedAt().setJti(randomBytes(16).toString('hex')).sign(stranger);
      assert.equal((await post(forged)).status, 401);
      // Bob's device claiming to be Alice's.
      const impostor = await new SignJWT({ cid: c.id, decision: 'approve' })
        .setProtectedHeader({ alg: 'ES256', typ: 'countersign-answer+jwt', kid: alice.device.file.deviceId })
        .setSubject(alice.name).setIssuedAt().setJti(randomBytes(16).toString('hex'))
        .sign(await import('jose').then((j) => j.importJWK(bob.device.file.privateJwk, 'ES256')));
      assert.equal((await post(impostor)).status, 401);
      // Bob's own device answering Alice's login.
      await rejectsWith(bob.device.answer(c.id, 'approve'), 'not_your_challenge');
      // A poll token used as an answer, an old request, garbage.
      assert.equal((await post(await alice.device.sign('poll', { cid: c.id, decision: 'approve' }))).status, 401);
      const old = await new SignJWT({ cid: c.id, decision: 'approve' })
        .setProtectedHeader({ alg: 'ES256', typ: 'countersign-answer+jwt', kid: alice.device.file.deviceId })
        .setSubject(alice.name).setIssuedAt(Math.floor(Date.now() / 1000) - 600).setJti(randomBytes(16).toString('hex'))
        .sign(await import('jose').then((j) => j.importJWK(alice.device.file.privateJwk, 'ES256')));
      assert.match((await post(old)).body.message, /too old/);
      // The window is requestMaxAgeSeconds (60 s) either side of now, not twice that.
      const at = async (offsetSeconds: number) =>
        new SignJWT({ cid: c.id, decision: 'approve' })
          .setProtectedHeader({ alg: 'ES256', typ: 'countersign-answer+jwt', kid: alice.device.file.deviceId })
          .setSubject(alice.name).setIssuedAt(Math.floor(Date.now() / 1000) + offsetSeconds).setJti(randomBytes(16).toString('hex'))
          .sign(await import('jose').then((j) => j.importJWK(alice.device.file.privateJwk, 'ES256')));
      for (const offset of [-90, -119, 75, 59 + 30]) assert.match((await post(await at(offset))).body.message, /too old|from the future/, `iat ${offset} s`);
      assert.equal((await post('not.a.jws')).status, 400);
      assert.equal((await s.api('POST', '/device/v1/answer', { request: 42 })).status, 400);
      assert.equal((await s.api('GET', `/api/v1/challenges/${c.id}`)).body.state, 'pending', 'none of that decided anything');

      // A reject, then a replay of it and a late approval.
      const reject = await alice.device.sign('answer', { cid: c.id, decision: 'reject' });
      assert.equal((await post(reject)).body.state, 'rejected');
      const replay = await post(reject);
      assert.equal(replay.status, 409);
      assert.equal(replay.body.error, 'replayed');
      await rejectsWith(alice.device.answer(c.id, 'approve'), 'challenge_rejected');
      assert.equal((await s.api('GET', `/api/v1/challenges/${c.id}`)).body.state, 'rejected');

      // A revoked device is nobody.
      const c2 = await login(alice.name);
      await s.api('DELETE', `/api/v1/users/${alice.name}/devices/${alice.device.file.deviceId}`);
      await rejectsWith(alice.device.answer(c2.id, 'approve'), 'device_unauthorized');
    });

    it('used enrolment links and malformed keys', async (t) => {
      if (!requirePeer(t, haveOpenssl, 'openssl')) return;
      await s.api('POST', '/api/v1/users', { name: 'enrol-test' });
      const link = (await s.api('POST', '/api/v1/users/enrol-test/enrolments')).body.uri as string;
      const token = new URL(link).searchParams.get('token')!;
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const body = (key: unknown, tok = token) => ({ token: tok, platform: 'android', publicKey: key, name: 'x', protected: false });
      const bad: [unknown, RegExp][] = [
        [privateKey.export({ format: 'jwk' }), /private key/],
        [generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' }), /P-256/],
        [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }, /not a valid point/],
        [generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }), /P-256/],
      ];
      for (const [key, message] of bad) {
        const r = await s.api('POST', '/device/v1/enrol', body(key));
        assert.equal(r.status, 400);
        assert.match(r.body.message, message);
      }
      assert.equal((await s.api('POST', '/device/v1/enrol', body(publicKey.export({ format: 'jwk' })))).status, 201, 'bad attempts did not use the link up');
      const reuse = await s.api('POST', '/device/v1/enrol', body(publicKey.export({ format: 'jwk' })));
      assert.equal(reuse.status, 410);
      assert.equal((await s.api('POST', '/device/v1/enrol', body(publicKey.export({ format: 'jwk' }), 'x'.repeat(32)))).status, 410);
    });
  });

  it('the countersign device CLI enrols, watches and approves', async (t) => {
    if (!requirePeer(t, haveOpenssl, 'openssl')) return;
    const name = 'cli-phone';
    await s.api('POST', '/api/v1/users', { name });
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    const dir = mkdtempSync(join(tmpdir(), 'cs-device-'));
    const keyFile = join(dir, 'phone.json');
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      });
    const enrol = await run(['enrol', name, '--json']);
    assert.equal(enrol.code, 0, enrol.stderr);
    const uri = JSON.parse(enrol.stdout).uri;
    assert.equal(JSON.parse(enrol.stdout).appUrl, `${s.url}/app/#enrol=${uri.split('?')[1]}`, 'and the web app’s link');
    const dev = await run(['device', 'enrol', uri, '--key-file', keyFile, '--name', 'Test phone']);
    assert.equal(dev.code, 0, dev.stderr);
    assert.match(dev.stdout, new RegExp(`enrolled device \\S+ for ${name}`));
    const watcher = run(['device', 'watch', '--approve', '--once', '--interval', '100', '--seconds', '20', '--key-file', keyFile]);
    const c = await login(name);
    const w = await watcher;
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, new RegExp(`ID ${c.displayCode}\\s+${name}\\s+vpn-gw from 198\\.51\\.100\\.4`));
    assert.match(w.stdout, /approved: approved/);
    const devices = await run(['user', 'devices', name]);
    assert.match(devices.stdout, /Test phone\s+android \(poll only\)/);
  });
});

describe('devices per user', () => {
  let s: TestServer;

  before(async () => {
    s = await startTestServer({}, {}, (config) => void (config.push.maxDevicesPerUser = 2));
  });
  after(async () => {
    await s?.close();
  });

  it('enrolling more than push.maxDevicesPerUser is refused with a 409; removing one makes room', async () => {
    await s.api('POST', '/api/v1/users', { name: 'collector' });
    const link = async () => {
      const r = await s.api('POST', '/api/v1/users/collector/enrolments');
      return { status: r.status, body: r.body, token: r.status === 201 ? new URL(r.body.uri).searchParams.get('token')! : '' };
    };
    const enrol = (token: string) =>
      s.api('POST', '/device/v1/enrol', { token, platform: 'android', publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), name: 'x', protected: false }, '');
    // One live link per user: a link made while another is out voids it.
    const stale = await link();
    const first = await link();
    assert.equal((await enrol(stale.token)).status, 410, 'the earlier link is void');
    assert.equal((await enrol(first.token)).status, 201);
    assert.equal((await enrol((await link()).token)).status, 201);
    // At the cap a new link is refused at once, saying why. (The store's add is atomic too:
    // enrolments that race past the link's check cannot go over; see the store contract.)
    const more = await link();
    assert.equal(more.status, 409);
    assert.equal(more.body.error, 'too_many_devices');
    assert.match(more.body.message, /collector already has 2 enrolled devices.*push\.maxDevicesPerUser.*remove one first/);
    const devices = (await s.api('GET', '/api/v1/users/collector/devices')).body.devices as { id: string }[];
    assert.equal(devices.length, 2);
    assert.equal((await s.api('DELETE', `/api/v1/users/collector/devices/${devices[0]!.id}`)).status, 200);
    assert.equal((await enrol((await link()).token)).status, 201);
    assert.equal((await s.api('GET', '/api/v1/users/collector/devices')).body.devices.length, 2);
  });
});
