import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import createApnsTransport, { type ApnsOptions } from '../../plugins/push-apns/index.js';
import type { PushMessage, PushResult, PushTarget, PushTransport } from '../../src/core/push.js';
import { FakeApns } from '../helpers/fake-apns.js';
import { selfSignedCertificate, type TlsMaterial } from '../helpers/fake-fcm.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';

const TEAM = 'ABCDE12345';
const KEY_ID = 'KEY1234567';
const TOPIC = 'org.countersign.app';
const NOW = Date.UTC(2030, 0, 2, 3, 4, 5);
const TOKEN = 'a1'.repeat(32);
const device = (token: string): PushTarget => ({ deviceId: 'dev-1', platform: 'ios', token });

const message = (over: Partial<PushMessage> = {}): PushMessage => ({
  challengeId: 'ch_8fK2qLx',
  displayCode: '4821',
  user: 'alice',
  client: 'VPN',
  ip: '203.0.113.7',
  createdAt: NOW - 1_000,
  deadline: NOW + 150_500,
  watch: 'approve-reject',
  numberMatching: true,
  ...over,
});

const failure = (r: PushResult) => (r.ok ? r : { ok: r.ok, stale: r.stale });
const pem = (k: { export(o: { type: 'pkcs8'; format: 'pem' }): string | Buffer }) => k.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('push-apns against a local APNs', { concurrency: false }, () => {
  let tls: TlsMaterial | undefined;
  let fake: FakeApns;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const transports: PushTransport[] = [];
  const transport = (over: Partial<ApnsOptions> = {}) => {
    const t = createApnsTransport({
      token: { key: pem(privateKey), keyId: KEY_ID, teamId: TEAM },
      production: false,
      topic: TOPIC,
      address: '127.0.0.1',
      port: fake.port,
      ca: tls!.cert,
      timeoutMs: 2_000,
      ...over,
    });
    transports.push(t);
    return t;
  };

  before(async () => {
    if (!hasCommand('openssl')) return;
    tls = selfSignedCertificate();
    fake = await FakeApns.start({ tls, teamId: TEAM, keyId: KEY_ID, publicKey, topic: TOPIC });
  });
  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await fake?.close();
  });
  const ready = (t: TestContext) => {
    if (!requirePeer(t, tls !== undefined, 'openssl (to make the test TLS certificate)')) return false;
    fake.requests.length = 0;
    fake.delayMs = 0;
    fake.failWith = undefined;
    return true;
  };

  test('sends a time-sensitive alert with the challenge, signed with the provider key', async (t) => {
    if (!ready(t)) return;
    const apns = transport();
    assert.equal(apns.platform, 'ios');
    const result = await apns.send(device(TOKEN), message({ bindingMessage: 'Order #42' }), NOW);

    assert.equal(fake.requests.length, 1);
    const req = fake.requests[0]!;
    assert.equal(req.status, 200, req.reason);
    assert.ok(result.ok);
    assert.match(result.messageId ?? '', /^[0-9a-f-]{36}$/i);
    assert.equal(req.device, TOKEN);
    assert.equal(req.headers[':method'], 'POST');
    assert.equal(req.headers[':path'], `/3/device/${TOKEN}`);
    assert.equal(req.headers['apns-topic'], TOPIC);
    assert.equal(req.headers['apns-push-type'], 'alert');
    assert.equal(req.headers['apns-priority'], '10');
    assert.equal(req.headers['apns-expiration'], String(Math.floor((NOW + 150_500) / 1000)));
    assert.equal(req.headers['apns-collapse-id'], 'ch_8fK2qLx');
    assert.deepEqual(req.body, {
      aps: {
        alert: { title: 'Sign-in request', body: 'Approve sign-in to VPN from 203.0.113.7? ID 4821' },
        category: 'COUNTERSIGN_APPROVE_REJECT',
        'interruption-level': 'time-sensitive',
      },
      countersign: {
        type: 'countersign.challenge',
        challengeId: 'ch_8fK2qLx',
        displayCode: '4821',
        user: 'alice',
        client: 'VPN',
        ip: '203.0.113.7',
        createdAt: String(NOW - 1_000),
        deadline: String(NOW + 150_500),
        watch: 'approve-reject',
        numberMatching: 'true',
        bindingMessage: 'Order #42',
      },
    });
  });

  test('a reject-only login gets the reject-only category; missing client and IP are left out', async (t) => {
    if (!ready(t)) return;
    const bare = message({ client: undefined, ip: undefined, watch: 'reject-only', numberMatching: false });
    assert.ok((await transport().send(device(TOKEN), bare, NOW)).ok);
    const body = fake.requests[0]!.body;
    assert.equal(body.aps.category, 'COUNTERSIGN_REJECT_ONLY');
    assert.equal(body.aps.alert.body, 'Approve sign-in? ID 4821');
    assert.equal(body.countersign.numberMatching, 'false');
    assert.equal('client' in body.countersign || 'ip' in body.countersign || 'bindingMessage' in body.countersign, false);
  });

  test('reads the .p8 key from a path', async (t) => {
    if (!ready(t)) return;
    const dir = mkdtempSync(join(tmpdir(), 'countersign-apns-'));
    try {
      const path = join(dir, `AuthKey_${KEY_ID}.p8`);
      writeFileSync(path, pem(privateKey));
      assert.ok((await transport({ token: { key: path, keyId: KEY_ID, teamId: TEAM } }).send(device(TOKEN), message(), NOW)).ok);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an unregistered device token is reported stale', async (t) => {
    if (!ready(t)) return;
    const dead = 'de'.repeat(32);
    fake.deadTokens.set(dead, NOW - 86_400_000);
    const result = await transport().send(device(dead), message(), NOW);
    assert.equal(fake.requests[0]?.status, 410);
    assert.deepEqual(failure(result), { ok: false, stale: true });
    assert.match(!result.ok ? result.error : '', /410 Unregistered/);
  });

  test('a malformed device token is reported stale', async (t) => {
    if (!ready(t)) return;
    const result = await transport().send(device('not-a-device-token'), message(), NOW);
    assert.equal(fake.requests[0]?.reason, 'BadDeviceToken');
    assert.deepEqual(failure(result), { ok: false, stale: true });
  });

  test('a wrong topic is an error, not a dead token', async (t) => {
    if (!ready(t)) return;
    const result = await transport({ topic: 'com.example.other' }).send(device(TOKEN), message(), NOW);
    assert.equal(fake.requests[0]?.reason, 'DeviceTokenNotForTopic');
    assert.deepEqual(failure(result), { ok: false, stale: false });
  });

  test('a JWT signed with another key, or naming another key ID, is refused', async (t) => {
    if (!ready(t)) return;
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    for (const token of [
      { key: pem(other), keyId: KEY_ID, teamId: TEAM },
      { key: pem(privateKey), keyId: 'OTHERKEY00', teamId: TEAM },
      { key: pem(privateKey), keyId: KEY_ID, teamId: 'OTHERTEAM0' },
    ]) {
      fake.requests.length = 0;
      const result = await transport({ token }).send(device(TOKEN), message(), NOW);
      assert.equal(fake.requests[0]?.reason, 'InvalidProviderToken');
      assert.deepEqual(failure(result), { ok: false, stale: false });
      assert.match(!result.ok ? result.error : '', /403 InvalidProviderToken/);
    }
  });

  for (const status of [503, 500] as const) {
    test(`APNs answering ${status} is a failure, not stale`, async (t) => {
      if (!ready(t)) return;
      fake.failWith = status;
      const result = await transport().send(device(TOKEN), message(), NOW);
      assert.deepEqual(failure(result), { ok: false, stale: false });
      assert.ok(fake.requests.length >= 1);
    });
  }

  test('an unreachable APNs is a failure, not a throw', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    const closedPort = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const apns = transport({ port: closedPort, timeoutMs: 300 });
    const result = await apns.send(device(TOKEN), message(), NOW);
    assert.deepEqual(failure(result), { ok: false, stale: false });
    assert.match(!result.ok ? result.error : '', /ECONNREFUSED/);
    // node-apn's own shutdown never calls back after a connection error.
    const started = performance.now();
    await apns.close();
    assert.ok(performance.now() - started < 1_000);
  });

  test('a server with a certificate we do not trust is a failure', async (t) => {
    if (!ready(t)) return;
    const result = await transport({ ca: undefined, timeoutMs: 300 }).send(device(TOKEN), message(), NOW);
    assert.deepEqual(failure(result), { ok: false, stale: false });
    assert.match(!result.ok ? result.error : '', /self-signed certificate/);
    assert.equal(fake.requests.length, 0);
  });

  test('a slow APNs is cut off at the timeout', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    const apns = transport({ timeoutMs: 300 });
    fake.delayMs = 5_000;
    const started = performance.now();
    const result = await apns.send(device(TOKEN), message(), NOW);
    const took = performance.now() - started;
    assert.deepEqual(failure(result), { ok: false, stale: false });
    assert.ok(took >= 290 && took < 1_000, `took ${took} ms`);
    // The stream is cancelled, not left to run on after the caller gave up.
    for (let i = 0; i < 50 && !fake.requests.at(-1)?.abandoned; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fake.requests.at(-1)?.abandoned, true);
  });

  test('close() ends the connection, and later sends fail without throwing', async (t) => {
    if (!ready(t)) return;
    const apns = createApnsTransport({
      token: { key: pem(privateKey), keyId: KEY_ID, teamId: TEAM },
      production: false,
      topic: TOPIC,
      address: '127.0.0.1',
      port: fake.port,
      ca: tls!.cert,
    });
    assert.ok((await apns.send(device(TOKEN), message(), NOW)).ok);
    const before = fake.openSessions;
    await apns.close();
    for (let i = 0; i < 50 && fake.openSessions >= before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fake.openSessions, before - 1);
    assert.deepEqual(failure(await apns.send(device(TOKEN), message(), NOW)), { ok: false, stale: false });
    await apns.close();
  });
});
