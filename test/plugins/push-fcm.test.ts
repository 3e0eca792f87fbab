import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import createFcmTransport, { type FcmOptions } from '../../plugins/push-fcm/index.js';
import type { PushMessage, PushTarget, PushTransport } from '../../src/core/push.js';
import { FakeFcm, selfSignedCertificate, type TlsMaterial } from '../helpers/fake-fcm.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';

const PROJECT = 'countersign-test';
const NOW = Date.UTC(2030, 0, 2, 3, 4, 5);
const device = (token: string): PushTarget => ({ deviceId: 'dev-1', platform: 'android', token });
const TOKEN = `fcm-token_${'a'.repeat(140)}:APA91b`;

const message = (over: Partial<PushMessage> = {}): PushMessage => ({
  challengeId: 'ch_8fK2qLx',
  displayCode: '4821',
  user: 'alice',
  client: 'VPN',
  ip: '203.0.113.7',
  createdAt: NOW - 1_000,
  deadline: NOW + 150_000,
  watch: 'approve-reject',
  numberMatching: true,
  ...over,
});

describe('push-fcm against a local FCM', { concurrency: false }, () => {
  let tls: TlsMaterial | undefined;
  let fake: FakeFcm;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const account = (fake: FakeFcm) => ({
    type: 'service_account',
    project_id: PROJECT,
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    client_email: `push@${PROJECT}.iam.gserviceaccount.com`,
    token_uri: fake.tokenUri,
  });
  const transports: PushTransport[] = [];
  const transport = (over: Partial<FcmOptions> = {}) => {
    const t = createFcmTransport({ projectId: PROJECT, serviceAccount: account(fake), endpoint: fake.url, ca: tls!.cert, timeoutMs: 2_000, ...over });
    transports.push(t);
    return t;
  };

  before(async () => {
    if (!hasCommand('openssl')) return;
    tls = selfSignedCertificate();
    fake = await FakeFcm.start({ tls, projectId: PROJECT });
    fake.addServiceAccount(`push@${PROJECT}.iam.gserviceaccount.com`, publicKey);
  });
  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await fake?.close();
  });
  const ready = (t: TestContext) => {
    if (!requirePeer(t, tls !== undefined, 'openssl (to make the test TLS certificate)')) return false;
    fake.requests.length = 0;
    fake.tokenRequests.length = 0;
    fake.delayMs = 0;
    fake.failWith = undefined;
    return true;
  };

  test('sends a high-priority data message with the challenge, authorised by a service-account token', async (t) => {
    if (!ready(t)) return;
    const fcm = transport();
    assert.equal(fcm.platform, 'android');
    const result = await fcm.send(device(TOKEN), message({ bindingMessage: 'Order #42' }), NOW);

    assert.equal(fake.requests.length, 1);
    const req = fake.requests[0]!;
    assert.ok(result.ok, JSON.stringify(result));
    assert.match(result.messageId ?? '', new RegExp(`^projects/${PROJECT}/messages/`));
    assert.equal(req.path, `/v1/projects/${PROJECT}/messages:send`);
    assert.equal(req.headers[':method'], 'POST');
    assert.match(String(req.headers['content-type']), /^application\/json/);
    assert.deepEqual(req.body, {
      message: {
        token: TOKEN,
        data: {
          type: 'countersign.challenge',
          challengeId: 'ch_8fK2qLx',
          displayCode: '4821',
          user: 'alice',
          client: 'VPN',
          ip: '203.0.113.7',
          createdAt: String(NOW - 1_000),
          deadline: String(NOW + 150_000),
          watch: 'approve-reject',
          numberMatching: 'true',
          bindingMessage: 'Order #42',
        },
        android: { priority: 'HIGH', ttl: '150s', collapse_key: 'ch_8fK2qLx' },
      },
    });

    // The bearer is the access token the token endpoint issued for the signed JWT.
    assert.equal(fake.tokenRequests.length, 1);
    const form = fake.tokenRequests[0]!.body as Record<string, string>;
    assert.equal(form.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
    const claims = JSON.parse(Buffer.from(form.assertion!.split('.')[1]!, 'base64url').toString());
    assert.equal(claims.iss, `push@${PROJECT}.iam.gserviceaccount.com`);
    assert.equal(claims.scope, 'https://www.googleapis.com/auth/firebase.messaging');
    assert.equal(claims.aud, fake.tokenUri);
    assert.match(String(req.headers.authorization), /^Bearer ya29\./);
  });

  test('reuses the access token across sends', async (t) => {
    if (!ready(t)) return;
    const fcm = transport();
    const results = await Promise.all([1, 2, 3].map(() => fcm.send(device(TOKEN), message(), NOW)));
    assert.ok(results.every((r) => r.ok), JSON.stringify(results));
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    assert.equal(fake.tokenRequests.length, 1);
    assert.equal(fake.requests.length, 4);
  });

  test('leaves optional fields out and derives the TTL from the deadline, never below 0', async (t) => {
    if (!ready(t)) return;
    const fcm = transport();
    const bare = message({ client: undefined, ip: undefined, watch: 'reject-only', numberMatching: false });
    assert.ok((await fcm.send(device(TOKEN), bare, NOW + 29_500)).ok);
    assert.ok((await fcm.send(device(TOKEN), bare, NOW + 200_000)).ok);
    const [first, late] = fake.requests.map((r) => (r.body as any).message);
    assert.deepEqual(Object.keys(first.data).sort(), ['challengeId', 'createdAt', 'deadline', 'displayCode', 'numberMatching', 'type', 'user', 'watch']);
    assert.equal(first.data.watch, 'reject-only');
    assert.equal(first.data.numberMatching, 'false');
    assert.equal(first.android.ttl, '120.500s');
    assert.equal(late.android.ttl, '0s');
  });

  test('a token FCM calls UNREGISTERED is reported stale', async (t) => {
    if (!ready(t)) return;
    const dead = `dead-token_${'b'.repeat(140)}`;
    fake.deadTokens.add(dead);
    const result = await transport().send(device(dead), message(), NOW);
    assert.equal(fake.requests[0]?.status, 404);
    assert.deepEqual({ ok: result.ok, stale: !result.ok && result.stale }, { ok: false, stale: true });
    assert.match(!result.ok ? result.error : '', /404 UNREGISTERED/);
  });

  test('a token FCM rejects as malformed is an error, not stale', async (t) => {
    if (!ready(t)) return;
    const result = await transport().send(device('short'), message(), NOW);
    assert.equal(fake.requests[0]?.status, 400);
    assert.deepEqual(result.ok ? result : { ok: result.ok, stale: result.stale }, { ok: false, stale: false });
  });

  for (const status of [503, 500] as const) {
    test(`FCM answering ${status} is a failure, not stale`, async (t) => {
      if (!ready(t)) return;
      fake.failWith = status;
      const result = await transport().send(device(TOKEN), message(), NOW);
      assert.equal(fake.requests.length, 1, 'no hidden retries');
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.stale, false);
      assert.match(!result.ok ? result.error : '', new RegExp(`FCM ${status}`));
    });
  }

  test('an unreachable FCM is a failure, not a throw', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    const closedPort = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const fcm = transport({ credential: { getAccessToken: async () => ({ access_token: fake.issueAccessToken(), expires_in: 3600 }) }, endpoint: `https://127.0.0.1:${closedPort}` });
    const result = await fcm.send(device(TOKEN), message(), NOW);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.stale, false);
    assert.match(!result.ok ? result.error : '', /ECONNREFUSED/);
  });

  test('a server with a certificate we do not trust is a failure', async (t) => {
    if (!ready(t)) return;
    const result = await transport({ ca: undefined }).send(device(TOKEN), message(), NOW);
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.error : '', /self-signed certificate/);
    assert.equal(fake.requests.length, 0);
  });

  test('a slow FCM is cut off at the timeout', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    // A credential object, so the only connection is the one to FCM.
    const credential = { getAccessToken: async () => ({ access_token: fake.issueAccessToken(), expires_in: 3600 }) };
    const fcm = transport({ timeoutMs: 300, credential });
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok, 'token fetched and connected before the slow part');
    const connections = fake.connections;
    fake.delayMs = 5_000;
    const started = performance.now();
    const result = await fcm.send(device(TOKEN), message(), NOW);
    const took = performance.now() - started;
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.stale, false);
    assert.match(!result.ok ? result.error : '', /within 300 ms/);
    assert.ok(took >= 290 && took < 1_000, `took ${took} ms`);
    // The stream is cancelled, not left to run on after the caller gave up.
    for (let i = 0; i < 50 && !fake.requests.at(-1)?.abandoned; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fake.requests.at(-1)?.abandoned, true);

    // The connection that timed out is retired, in case it silently died.
    fake.delayMs = 0;
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    assert.equal(fake.connections, connections + 1);
  });

  test('close() right after a timed-out send does not wait for the abandoned request', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    const fcm = createFcmTransport({ projectId: PROJECT, serviceAccount: account(fake), endpoint: fake.url, ca: tls!.cert, timeoutMs: 300 });
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    fake.delayMs = 5_000;
    assert.equal((await fcm.send(device(TOKEN), message(), NOW)).ok, false);
    const started = performance.now();
    await fcm.close();
    assert.ok(performance.now() - started < 1_000);
  });

  test('a slow token endpoint counts against the same timeout', { timeout: 5_000 }, async (t) => {
    if (!ready(t)) return;
    const slow = { getAccessToken: () => new Promise<never>(() => {}) };
    const started = performance.now();
    const result = await transport({ credential: slow, timeoutMs: 200 }).send(device(TOKEN), message(), NOW);
    assert.equal(result.ok, false);
    assert.ok(performance.now() - started < 1_000);
    assert.equal(fake.requests.length, 0);
  });

  test('a service account the token endpoint does not know gets no token and sends nothing', async (t) => {
    if (!ready(t)) return;
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const result = await transport({ serviceAccount: { ...account(fake), private_key: other } }).send(device(TOKEN), message(), NOW);
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.error : '', /token endpoint 400: invalid_grant Invalid JWT Signature/);
    assert.equal(fake.requests.length, 0);
  });

  test('a credential object supplies the token; after a 401 a fresh one is fetched', async (t) => {
    if (!ready(t)) return;
    let fetched = 0;
    const credential = { getAccessToken: async () => (fetched++, { access_token: fake.issueAccessToken(), expires_in: 3600 }) };
    const fcm = transport({ serviceAccount: undefined, credential });
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    fake.revokeAccessTokens();
    const refused = await fcm.send(device(TOKEN), message(), NOW);
    assert.deepEqual(refused.ok ? refused : { ok: refused.ok, stale: refused.stale }, { ok: false, stale: false });
    assert.match(!refused.ok ? refused.error : '', /401 UNAUTHENTICATED/);
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    assert.equal(fetched, 2);
  });

  test('reads the service account from a key file', async (t) => {
    if (!ready(t)) return;
    const dir = mkdtempSync(join(tmpdir(), 'countersign-fcm-'));
    try {
      const path = join(dir, 'service-account.json');
      writeFileSync(path, JSON.stringify(account(fake)));
      assert.ok((await transport({ serviceAccount: path }).send(device(TOKEN), message(), NOW)).ok);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('close() ends the connection, and later sends fail without throwing', async (t) => {
    if (!ready(t)) return;
    // A credential object, so no short-lived token-endpoint connection muddles the count.
    const credential = { getAccessToken: async () => ({ access_token: fake.issueAccessToken(), expires_in: 3600 }) };
    const fcm = createFcmTransport({ projectId: PROJECT, credential, endpoint: fake.url, ca: tls!.cert });
    assert.ok((await fcm.send(device(TOKEN), message(), NOW)).ok);
    const before = fake.openSessions;
    await fcm.close();
    for (let i = 0; i < 50 && fake.openSessions >= before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fake.openSessions, before - 1);
    const result = await fcm.send(device(TOKEN), message(), NOW);
    assert.deepEqual(result.ok ? result : { ok: result.ok, stale: result.stale }, { ok: false, stale: false });
    await fcm.close();
  });

  test('needs a project and a credential', () => {
    assert.throws(() => createFcmTransport({ projectId: PROJECT }), /serviceAccount or credential/);
    assert.throws(() => createFcmTransport({ projectId: '', credential: { getAccessToken: async () => ({ access_token: 'x', expires_in: 1 }) } }), /projectId/);
  });
});
