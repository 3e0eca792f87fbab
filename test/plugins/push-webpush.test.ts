import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import webpush from 'web-push';
import createWebPushTransport, { storedVapidKeys } from '../../plugins/push-webpush/index.js';
import { Authenticator } from '../../src/cli/authenticator.js';
import type { PushMessage, PushResult, PushTarget } from '../../src/core/push.js';
import { SecretBox } from '../../src/core/secretbox.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { systemClock } from '../../src/core/clock.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { until } from '../helpers/push.js';
import { dropPrefix } from '../helpers/scale.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WebPushReceiver, type Subscription } from '../helpers/webpush-receiver.js';

const NOW = Date.now();
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
const target = (s: Subscription, deviceId = 'dev-1'): PushTarget => ({ deviceId, platform: 'webpush', token: JSON.stringify(s) });

/** A subscription's keys as a browser makes them, for an endpoint of the test's choosing. */
const subscriptionAt = (endpoint: string): Subscription => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { endpoint, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') } };
};

/** A TCP listener that counts every connection made to it (and drops each at once): what the server must never reach. */
async function tripwire(host: string): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const wire = { port: 0, connections: 0, close: () => new Promise<void>((r) => server.close(() => r())) };
  const server: Server = createServer((socket) => {
    wire.connections++;
    sockets.add(socket);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  wire.port = (server.address() as { port: number }).port;
  return wire;
}

describe('push-webpush against a local Web Push service', () => {
  let receiver: WebPushReceiver;
  const keys = webpush.generateVAPIDKeys();
  // The local push service is on 127.0.0.1, which only allowPrivateAddresses lets through.
  const transport = createWebPushTransport({ subject: 'mailto:ops@example.org', vapid: keys, timeoutMs: 500, endpoints: { allowPrivateAddresses: true } });

  before(async () => {
    receiver = await WebPushReceiver.start();
  });
  after(async () => {
    await transport.close();
    await receiver.close();
  });

  it('sends an aes128gcm message, VAPID-signed, with TTL to the deadline, Urgency high and a Topic', async () => {
    const sub = receiver.subscribe(keys.publicKey);
    const r = await transport.send(target(sub), message({ bindingMessage: 'Order #42' }), NOW);
    assert.ok(r.ok, JSON.stringify(r));
    assert.match(r.messageId ?? '', /\/message\/\d+$/, 'the push service’s Location');
    const [got] = receiver.for(sub.id);
    assert.equal(got!.error, undefined);
    assert.equal(got!.status, 201);
    assert.deepEqual(got!.json, {
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
    });
    assert.equal(got!.ttl, 150);
    assert.equal(got!.urgency, 'high');
    assert.match(got!.topic ?? '', /^[A-Za-z0-9_-]{1,32}$/);
    assert.equal(got!.vapid!.k, keys.publicKey);
    assert.equal(got!.vapid!.aud, receiver.origin);
    assert.equal(got!.vapid!.sub, 'mailto:ops@example.org');
    assert.ok(got!.vapid!.exp > NOW / 1000 + 3600 && got!.vapid!.exp <= NOW / 1000 + 24 * 3600);
  });

  it('keeps one Topic per device, so a newer login replaces an older undelivered one; TTL never below 0', async () => {
    const sub = receiver.subscribe();
    const other = receiver.subscribe();
    assert.ok((await transport.send(target(sub), message({ challengeId: 'a' }), NOW)).ok);
    assert.ok((await transport.send(target(sub), message({ challengeId: 'b' }), NOW + 200_000)).ok);
    assert.ok((await transport.send(target(other, 'dev-2'), message({ challengeId: 'c' }), NOW)).ok);
    const [a, b] = receiver.for(sub.id);
    assert.equal(a!.topic, b!.topic);
    assert.notEqual(receiver.for(other.id)[0]!.topic, a!.topic);
    assert.equal(b!.ttl, 0);
    assert.ok(!a!.topic!.includes('alice'), 'the topic does not name the user');
  });

  it('404 and 410 mean the subscription is gone (stale); other answers are errors, not stale', async () => {
    for (const [status, stale] of [[404, true], [410, true], [429, false], [500, false], [413, false]] as const) {
      const sub = receiver.subscribe();
      receiver.answer(sub.id, status);
      const r = await transport.send(target(sub), message(), NOW);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.stale, stale, `status ${status}`);
      assert.match(!r.ok ? r.error : '', new RegExp(`${status}`));
      assert.ok(!(!r.ok && r.error.includes(sub.id)), 'the endpoint’s capability path is never in the error');
    }
  });

  it('never throws, and gives up after its timeout', async () => {
    const sub = receiver.subscribe();
    receiver.delayMs = 2_000;
    const started = Date.now();
    const slow = await transport.send(target(sub), message(), NOW);
    receiver.delayMs = 0;
    assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
    assert.deepEqual({ ok: slow.ok, stale: !slow.ok && slow.stale }, { ok: false, stale: false });
    assert.match(!slow.ok ? slow.error : '', /within 500 ms/);

    const closedPort = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const nowhere = { ...receiver.subscribe(), endpoint: `http://127.0.0.1:${closedPort}/push/x` };
    const refused = await transport.send(target(nowhere), message(), NOW);
    assert.deepEqual({ ok: refused.ok, stale: !refused.ok && refused.stale }, { ok: false, stale: false });
    const garbage = await transport.send({ deviceId: 'd', platform: 'webpush', token: 'not json' }, message(), NOW);
    assert.equal(garbage.ok, false);
  });

  it('the receiver refuses what a push service refuses: another VAPID key than the subscription’s', async () => {
    const sub = receiver.subscribe(webpush.generateVAPIDKeys().publicKey);
    const r = await transport.send(target(sub), message(), NOW);
    assert.equal(r.ok, false);
    assert.match(receiver.for(sub.id)[0]!.error ?? '', /not the key this subscription was made with/);
  });

  it('refuses VAPID keys that do not belong together', () => {
    const other = webpush.generateVAPIDKeys();
    assert.throws(() => createWebPushTransport({ subject: 'mailto:a@b.c', vapid: { publicKey: keys.publicKey, privateKey: other.privateKey } }), /does not belong/);
    assert.throws(() => createWebPushTransport({ subject: 'http://example.org', vapid: keys }), /mailto: or https:/);
  });

  it('generates VAPID keys once and keeps them sealed in the store', async () => {
    const store = new MemoryStore({ clock: systemClock, auditLimit: 100 });
    const box = new SecretBox(randomBytes(32));
    const [a, b] = await Promise.all([storedVapidKeys(store.kv, box)(), storedVapidKeys(store.kv, box)()]);
    assert.deepEqual(a, b, 'two instances racing agree on one key');
    const sealed = (await store.kv.get('webpush-vapid'))!;
    assert.match(sealed, /^v1\./);
    assert.ok(!sealed.includes(a.privateKey));
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(a.privateKey, 'base64url'));
    assert.equal(ecdh.getPublicKey().toString('base64url'), a.publicKey);
    await store.close();
  });
});

describe('push-webpush connects to public addresses only', () => {
  const keys = webpush.generateVAPIDKeys();
  // The transport's default, what production passes: public addresses of any host.
  const transport = createWebPushTransport({ subject: 'mailto:ops@example.org', vapid: keys, timeoutMs: 500 });
  const allowingPrivate = createWebPushTransport({ subject: 'mailto:ops@example.org', vapid: keys, timeoutMs: 500, endpoints: { allowPrivateAddresses: true } });
  let one: Awaited<ReturnType<typeof tripwire>>;
  let two: Awaited<ReturnType<typeof tripwire>>;

  before(async () => {
    one = await tripwire('127.0.0.1');
    two = await tripwire('127.0.0.2');
  });
  after(async () => {
    await Promise.all([transport.close(), allowingPrivate.close()]);
    await Promise.all([one?.close(), two?.close()]);
  });

  const send = (t: typeof transport, endpoint: string) => t.send(target(subscriptionAt(endpoint)), message(), NOW);

  it('refuses loopback, its IPv4-mapped and unspecified forms and a name that resolves to loopback, at connect time: no connection is made', async () => {
    const cases: [string, string][] = [
      [`https://127.0.0.1:${one.port}/push/a`, 'loopback'],
      [`https://127.0.0.2:${two.port}/push/a`, 'loopback'],
      // A name: only the lookup at connect time knows where it goes (here /etc/hosts).
      [`https://localhost:${one.port}/push/a`, 'loopback'],
      [`https://[::ffff:127.0.0.2]:${two.port}/push/a`, 'loopback'],
      [`https://[::ffff:7f00:1]:${one.port}/push/a`, 'loopback'],
      // Linux connects 0.0.0.0 to the local host.
      [`https://0.0.0.0:${one.port}/push/a`, 'unspecified'],
      // Spelled as a number: the URL parser makes it 127.0.0.1.
      [`https://2130706433:${one.port}/push/a`, 'loopback'],
      [`http://127.0.0.1:${one.port}/push/a`, 'scheme'],
    ];
    const results: PushResult[] = [];
    for (const [endpoint] of cases) results.push(await send(transport, endpoint));
    assert.deepEqual({ at127001: one.connections, at127002: two.connections }, { at127001: 0, at127002: 0 }, 'no connection reached the listeners');
    for (const [i, [endpoint, why]] of cases.entries()) {
      const r = results[i]!;
      assert.equal(r.ok, false, endpoint);
      assert.equal(!r.ok && r.refused, why, `${endpoint}: ${JSON.stringify(r)}`);
      assert.equal(!r.ok && r.stale, false, 'refused by this server, not gone at the push service');
      assert.ok(!(!r.ok && r.error.includes('/push/a')), 'the endpoint’s capability path is never in the error');
    }
  });

  it('refuses private, shared, link-local, multicast and cloud metadata addresses, IPv4 and IPv6', async () => {
    const cases: [string, string][] = [
      ['https://169.254.169.254/latest/meta-data/iam/security-credentials/', 'metadata'],
      ['https://[::ffff:169.254.169.254]/latest/api/token', 'metadata'],
      ['https://[fd00:ec2::254]/latest/meta-data/', 'metadata'],
      ['https://10.20.30.40/push', 'private'],
      ['https://172.16.5.4/push', 'private'],
      ['https://192.168.1.1/push', 'private'],
      ['https://[fd12:3456::1]/push', 'private'],
      ['https://100.64.0.1/push', 'cgnat'],
      ['https://169.254.10.10/push', 'link-local'],
      ['https://[fe80::1]/push', 'link-local'],
      ['https://224.0.0.251/push', 'multicast'],
      ['https://[ff02::1]/push', 'multicast'],
      ['https://[::]/push', 'unspecified'],
      ['https://[::1]/push', 'loopback'],
    ];
    for (const [endpoint, why] of cases) {
      const r = await send(transport, endpoint);
      assert.equal(!r.ok && r.refused, why, `${endpoint}: ${JSON.stringify(r)}`);
    }
    // Allowing private addresses (a push service inside the network) never opens the metadata service or link-local.
    for (const [endpoint, why] of cases.filter(([, w]) => ['metadata', 'link-local', 'multicast', 'unspecified'].includes(w))) {
      const r = await send(allowingPrivate, endpoint);
      assert.equal(!r.ok && r.refused, why, `allowPrivateAddresses, ${endpoint}: ${JSON.stringify(r)}`);
    }
    const zero = await send(allowingPrivate, `https://0.0.0.0:${one.port}/push/a`);
    assert.equal(!zero.ok && zero.refused, 'unspecified');
    assert.equal(one.connections, 0);
  });

  it('with allowedHosts, sends only to those hosts: by name, or below a *. suffix', async () => {
    const receiver = await WebPushReceiver.start();
    const only = (allowedHosts: string[]) =>
      createWebPushTransport({ subject: 'mailto:ops@example.org', vapid: keys, timeoutMs: 500, endpoints: { allowPrivateAddresses: true, allowedHosts } });
    const elsewhere = only(['fcm.googleapis.com', '*.push.services.mozilla.com']);
    const local = only(['localhost']);
    try {
      const sub = receiver.subscribe();
      const r = await elsewhere.send(target(sub), message(), NOW);
      assert.equal(!r.ok && r.refused, 'host-not-allowed', JSON.stringify(r));
      assert.deepEqual(receiver.for(sub.id), [], 'nothing reached the push service');
      // The listed host is served; an address of it is not the host.
      const named = receiver.subscribe(undefined, 'localhost');
      assert.ok((await local.send(target(named), message(), NOW)).ok);
      assert.equal(receiver.for(named.id)[0]!.status, 201);
      const byAddress = await local.send(target(receiver.subscribe()), message(), NOW);
      assert.equal(!byAddress.ok && byAddress.refused, 'host-not-allowed');
    } finally {
      await Promise.all([elsewhere.close(), local.close()]);
      await receiver.close();
    }
  });
});

describe('Web Push endpoints on a production server', () => {
  let s: TestServer;
  let one: Awaited<ReturnType<typeof tripwire>>;
  let two: Awaited<ReturnType<typeof tripwire>>;
  let users = 0;
  const sent: { platform: string; result: PushResult }[] = [];

  before(async () => {
    one = await tripwire('127.0.0.1');
    two = await tripwire('127.0.0.2');
    s = await startTestServer({
      COUNTERSIGN_MODE: 'production',
      COUNTERSIGN_STORE_KIND: 'memory',
      COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org',
      COUNTERSIGN_OIDC_ENABLED: 'false',
      COUNTERSIGN_DATA_DIR: '/proc/countersign-not-writable',
      COUNTERSIGN_PUSH_SEND_TIMEOUT_MS: '1000',
    });
    s.ctx.push.on('sent', (platform, result) => void sent.push({ platform, result }));
  });
  after(async () => {
    await s?.close();
    await Promise.all([one?.close(), two?.close()]);
  });

  const newUser = async () => {
    const name = `p${++users}`;
    assert.equal((await s.api('POST', '/api/v1/users', { name })).status, 201);
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    return name;
  };
  const enrol = async (name: string, pushToken?: string) => {
    const link = new URL((await s.api('POST', `/api/v1/users/${name}/enrolments`)).body.uri);
    // The link names the public URL; this test reaches the server where it listens.
    link.searchParams.set('server', s.url);
    return Authenticator.enrol(link.toString(), { platform: 'webpush', pushToken, name: 'Browser' });
  };

  it('refuses a subscription on a loopback, private, link-local or metadata address at enrolment and in a token update: a clear 400', async () => {
    const name = await newUser();
    const link = (await s.api('POST', `/api/v1/users/${name}/enrolments`)).body;
    const token = new URL(link.uri).searchParams.get('token')!;
    const p256 = createECDH('prime256v1');
    p256.generateKeys();
    const publicKey = { kty: 'EC', crv: 'P-256', x: p256.getPublicKey().subarray(1, 33).toString('base64url'), y: p256.getPublicKey().subarray(33).toString('base64url') };
    const enrolWith = (endpoint: string) =>
      s.api('POST', '/device/v1/enrol', { token, platform: 'webpush', pushToken: JSON.stringify(subscriptionAt(endpoint)), publicKey, name: 'x', protected: false }, '');
    const refused: [string, RegExp][] = [
      ['https://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is a cloud metadata address/],
      ['https://[fd00:ec2::254]/latest/meta-data/', /cloud metadata address/],
      ['https://localhost/push/x', /localhost is a loopback address/],
      ['https://push.localhost/push/x', /loopback/],
      [`https://127.0.0.1:${one.port}/push/x`, /loopback/],
      [`https://127.0.0.2:${two.port}/push/x`, /loopback/],
      ['https://[::1]/push/x', /loopback/],
      ['https://[::ffff:127.0.0.1]/push/x', /loopback/],
      ['https://[::ffff:a9fe:a9fe]/push/x', /cloud metadata/],
      ['https://0.0.0.0/push/x', /unspecified/],
      ['https://10.0.0.8/push/x', /private/],
      ['https://192.168.178.1/push/x', /private/],
      ['https://[fc00::8]/push/x', /private/],
      ['https://100.100.1.1/push/x', /shared/],
      ['https://[fe80::1]/push/x', /link-local/],
    ];
    for (const [endpoint, why] of refused) {
      const r = await enrolWith(endpoint);
      assert.equal(r.status, 400, `${endpoint}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, 'push_endpoint_refused', endpoint);
      assert.match(r.body.message, why);
    }
    // Production never takes http:, not even on loopback.
    const http = await enrolWith(`http://127.0.0.1:${one.port}/push/x`);
    assert.equal(http.status, 400);
    assert.match(http.body.message, /https: URL/);
    // A public host is taken (names are resolved when a push is sent, not here), and the link was not used up.
    assert.equal((await enrolWith('https://updates.push.services.mozilla.com/wpush/v2/x')).status, 201);

    const device = await enrol(name);
    await assert.rejects(device.setPushToken(JSON.stringify(subscriptionAt('https://169.254.169.254/latest/api/token'))), /cloud metadata address/);
    assert.equal(one.connections + two.connections, 0);
  });

  it('a stored subscription whose host resolves to loopback (DNS rebinding) or names an internal address gets no connection: refused, counted, the device kept, the login still pending', async () => {
    const name = await newUser();
    // Enrolled while their names pointed elsewhere; what they point to now is what the transport checks.
    const endpoints = [`https://localhost:${one.port}/push/x`, `https://127.0.0.2:${two.port}/push/x`, 'https://169.254.169.254/latest/meta-data/'];
    const devices = [];
    for (const endpoint of endpoints) {
      const device = await enrol(name);
      await s.ctx.store.devices.update(name, device.file.deviceId, { pushToken: JSON.stringify(subscriptionAt(endpoint)) });
      devices.push(device);
    }
    sent.length = 0;
    const c = (await s.api('POST', '/api/v1/challenges', { user: name, origin: { client: 'vpn-gw', ip: '198.51.100.4' } })).body;
    await until(() => sent.length === 3, 5000);
    assert.deepEqual({ at127001: one.connections, at127002: two.connections }, { at127001: 0, at127002: 0 }, 'no connection reached the listeners');
    assert.deepEqual(
      sent.map(({ platform, result }) => [platform, !result.ok && result.refused]).sort(),
      [['webpush', 'loopback'], ['webpush', 'loopback'], ['webpush', 'metadata']],
    );
    const metrics = (await s.api('GET', '/metrics', undefined, '')).body as string;
    assert.match(metrics, /countersign_push_refused_total\{platform="webpush",reason="loopback"\} 2/);
    assert.match(metrics, /countersign_push_refused_total\{platform="webpush",reason="metadata"\} 1/);
    assert.match(metrics, /countersign_push_sent_total\{platform="webpush",result="refused"\} 3/);
    const list = (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices as { stale?: boolean }[];
    assert.deepEqual(list.map((d) => Boolean(d.stale)), [false, false, false], 'not stale: the subscription may be fine once its name or the rules change');
    assert.equal((await s.api('GET', `/api/v1/challenges/${c.id}`)).body.state, 'pending', 'a refused push decides nothing');
    assert.equal((await devices[0]!.answer(c.id, 'reject')).state, 'rejected', 'the devices still answer');
  });
});

describe('push.webpush.allowedHosts on a server', () => {
  let s: TestServer;
  let receiver: WebPushReceiver;
  const sent: PushResult[] = [];

  before(async () => {
    receiver = await WebPushReceiver.start();
    s = await startTestServer({}, {}, (config) => {
      config.push.webpush.allowPrivateAddresses = true; // the local push service
      config.push.webpush.allowedHosts = ['localhost'];
    });
    s.ctx.push.on('sent', (_platform, result) => void sent.push(result));
  });
  after(async () => {
    await s?.close();
    await receiver?.close();
  });

  it('refuses another host at enrolment (400) and at send time, and delivers to the listed one', async () => {
    await s.api('POST', '/api/v1/users', { name: 'listed' });
    await s.api('POST', '/api/v1/users/factors', { users: ['listed'], factor: 'push', enabled: true });
    const enrol = async (sub: Subscription) => {
      const link = (await s.api('POST', '/api/v1/users/listed/enrolments')).body;
      return Authenticator.enrol(link.uri, { platform: 'webpush', pushToken: JSON.stringify(sub), name: 'Browser' });
    };
    const vapidKey = (await s.api('GET', '/device/v1/webpush-key', undefined, '')).body.publicKey as string;
    for (const other of [receiver.subscribe(vapidKey), subscriptionAt('https://fcm.googleapis.com/fcm/send/x')]) {
      await assert.rejects(enrol(other), /is not one this server sends to \(push\.webpush\.allowedHosts\)/);
    }
    const named = receiver.subscribe(vapidKey, 'localhost');
    await enrol(named);
    // One enrolled before the list was set, on the address instead of the name.
    const byAddress = receiver.subscribe(vapidKey);
    const earlier = await enrol(named);
    await s.ctx.store.devices.update('listed', earlier.file.deviceId, { pushToken: JSON.stringify(byAddress) });
    sent.length = 0;
    const c = (await s.api('POST', '/api/v1/challenges', { user: 'listed', origin: { client: 'vpn-gw', ip: '198.51.100.4' } })).body;
    await until(() => sent.length === 2);
    assert.equal(receiver.for(named.id)[0]?.json?.challengeId, c.id, 'the listed host got the push');
    assert.deepEqual(receiver.for(byAddress.id), [], 'the other host got nothing');
    assert.deepEqual(sent.map((r) => (r.ok ? 'ok' : r.refused)).sort(), ['host-not-allowed', 'ok']);
  });
});

describe('Web Push through the server', () => {
  let receiver: WebPushReceiver;
  let s: TestServer;
  let users = 0;

  before(async () => {
    receiver = await WebPushReceiver.start();
    // Development, default configuration (Web Push is on), and the local push service on loopback allowed.
    s = await startTestServer({ COUNTERSIGN_PUSH_WEBPUSH_ALLOW_PRIVATE_ADDRESSES: 'true' });
  });
  after(async () => {
    await s?.close();
    await receiver?.close();
  });

  const vapidKey = async () => (await s.api('GET', '/device/v1/webpush-key', undefined, '')).body.publicKey as string;
  const userWithWebApp = async () => {
    const name = `w${++users}`;
    await s.api('POST', '/api/v1/users', { name });
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    const link = (await s.api('POST', `/api/v1/users/${name}/enrolments`)).body;
    const sub = receiver.subscribe(await vapidKey());
    const device = await Authenticator.enrol(link.uri, { platform: 'webpush', pushToken: JSON.stringify(sub), name: 'Firefox' });
    return { name, sub, device, link };
  };
  const login = async (name: string) => {
    const r = await s.api('POST', '/api/v1/challenges', { user: name, origin: { client: 'vpn-gw', ip: '198.51.100.4' } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
  };

  it('serves the VAPID public key anonymously', async () => {
    const r = await s.api('GET', '/device/v1/webpush-key', undefined, '');
    assert.equal(r.status, 200);
    assert.equal(Buffer.from(r.body.publicKey, 'base64url').length, 65);
    assert.equal(await vapidKey(), r.body.publicKey);
  });

  it('a login reaches the enrolled web app: encrypted, VAPID-signed, with the challenge and the login screen’s ID', async () => {
    const { name, sub, device, link } = await userWithWebApp();
    assert.match(link.appUrl, new RegExp(`^${s.url}/app/#enrol=server=`));
    assert.equal(link.appUrl.split('#enrol=')[1], link.uri.split('?')[1], 'the app link carries the same query string');
    const c = await login(name);
    const got = await until(() => receiver.for(sub.id)[0]);
    assert.equal(got.error, undefined);
    assert.equal(got.json.challengeId, c.id);
    assert.equal(got.json.displayCode, c.displayCode);
    assert.equal(got.json.client, 'vpn-gw');
    const secondsLeft = (c.deadline - Date.now()) / 1000;
    assert.ok(Math.abs(got.ttl! - secondsLeft) <= 2, `TTL ${got.ttl} vs ${secondsLeft.toFixed(1)} s to the deadline`);
    assert.equal(got.urgency, 'high');
    assert.match(got.topic!, /^[A-Za-z0-9_-]{1,32}$/);
    assert.equal(got.vapid!.k, await vapidKey());
    assert.equal(got.vapid!.sub, 'mailto:admin@localhost', 'development default subject');
    assert.ok(!got.text!.includes(c.number ?? '§'));
    // The app answers over the signed device API as any authenticator does.
    assert.equal((await device.answer(c.id, 'approve')).state, 'approved');
  });

  it('410 from the push service marks the device stale; a new subscription revives it', async () => {
    const { name, sub, device } = await userWithWebApp();
    receiver.answer(sub.id, 410);
    const c = await login(name);
    await until(() => receiver.for(sub.id)[0]);
    let list: any[] = [];
    for (let i = 0; i < 100 && !list[0]?.stale; i++) {
      list = (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(list[0].platform, 'webpush');
    assert.equal(list[0].stale, true);
    assert.equal(list[0].push, false);
    assert.equal((await device.answer(c.id, 'reject')).state, 'rejected', 'a stale device still answers');
    await device.setPushToken(JSON.stringify(receiver.subscribe()));
    assert.equal((await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices[0].push, true);
  });

  it('a malformed subscription at enrolment or in a token update is a clear 400', async () => {
    await s.api('POST', '/api/v1/users', { name: 'bad-sub' });
    const uri = (await s.api('POST', '/api/v1/users/bad-sub/enrolments')).body.uri as string;
    const token = new URL(uri).searchParams.get('token')!;
    const good = receiver.subscribe();
    const p256 = createECDH('prime256v1');
    p256.generateKeys();
    const publicKey = { kty: 'EC', crv: 'P-256', x: p256.getPublicKey().subarray(1, 33).toString('base64url'), y: p256.getPublicKey().subarray(33).toString('base64url') };
    const enrol = (pushToken: string) => s.api('POST', '/device/v1/enrol', { token, platform: 'webpush', pushToken, publicKey, name: 'x', protected: false }, '');
    const offCurve = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)]).toString('base64url');
    const bad: [string, RegExp][] = [
      ['not json', /not JSON/],
      [JSON.stringify({ ...good, endpoint: 'http://push.example.org/x' }), /https: URL/],
      [JSON.stringify({ ...good, endpoint: 'ftp://127.0.0.1/x' }), /https: URL/],
      [JSON.stringify({ ...good, endpoint: 'https://user:pw@push.example.org/x' }), /credentials/],
      [JSON.stringify({ endpoint: good.endpoint }), /keys/],
      [JSON.stringify({ ...good, keys: { ...good.keys, p256dh: good.keys.p256dh.slice(0, 40) } }), /65-byte/],
      [JSON.stringify({ ...good, keys: { ...good.keys, p256dh: offCurve } }), /not a point on P-256/],
      [JSON.stringify({ ...good, keys: { ...good.keys, auth: randomBytes(15).toString('base64url') } }), /16 bytes/],
      [JSON.stringify({ ...good, keys: { ...good.keys, auth: 'not base64url!' } }), /16 bytes/],
    ];
    for (const [pushToken, why] of bad) {
      const r = await enrol(pushToken);
      assert.equal(r.status, 400, pushToken);
      assert.equal(r.body.error, 'invalid_push_token');
      assert.match(r.body.message, why);
      assert.match(r.body.message, /PushSubscription/);
    }
    const ok = await enrol(JSON.stringify({ ...good, expirationTime: null }));
    assert.equal(ok.status, 201, 'the bad attempts did not use the link up');

    const { device } = await userWithWebApp();
    await assert.rejects(device.setPushToken(bad[1]![0]), /https: URL/);
  });

  it('is off when configured off', async () => {
    const off = await startTestServer({ COUNTERSIGN_PUSH_WEBPUSH_ENABLED: 'false' });
    try {
      const r = await off.api('GET', '/device/v1/webpush-key', undefined, '');
      assert.equal(r.status, 404);
      assert.equal(r.body.error, 'webpush_off');
    } finally {
      await off.close();
    }
  });
});

describe('production keeps the generated VAPID key in the shared store', () => {
  it('two instances on one Redis serve the same key, sealed, and a restart keeps it', async (t) => {
    if (!requirePeer(t, await redisAvailable(), 'redis-server')) return;
    const prefix = uniquePrefix('vapid');
    const env = {
      COUNTERSIGN_MODE: 'production',
      COUNTERSIGN_SECRET_KEY: randomBytes(32).toString('base64'),
      COUNTERSIGN_REDIS_URL: testRedisUrl(),
      COUNTERSIGN_REDIS_PREFIX: prefix,
      COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org',
      COUNTERSIGN_OIDC_ENABLED: 'false',
      COUNTERSIGN_DATA_DIR: '/proc/countersign-not-writable',
    };
    const key = async (s: TestServer) => (await s.api('GET', '/device/v1/webpush-key', undefined, '')).body.publicKey as string;
    const raw = new Redis(testRedisUrl());
    try {
      const [a, b] = await Promise.all([startTestServer(env), startTestServer(env)]);
      let first: string;
      try {
        const [ka, kb] = await Promise.all([key(a), key(b)]);
        assert.equal(Buffer.from(ka, 'base64url').length, 65);
        assert.equal(ka, kb);
        first = ka;
        const stored = await raw.keys(`${prefix}:*webpush-vapid*`);
        assert.equal(stored.length, 1);
        const sealed = (await raw.get(stored[0]!))!;
        assert.match(sealed, /^v1\./);
        assert.ok(!sealed.includes(ka), 'kept sealed');
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
      const again = await startTestServer(env);
      try {
        assert.equal(await key(again), first, 'a restart keeps the key the browsers subscribed with');
      } finally {
        await again.close();
      }
    } finally {
      await dropPrefix(raw, prefix);
      raw.disconnect();
    }
  });
});
