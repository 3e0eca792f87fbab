import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { DEMO_PASSWORD, DEMO_RADIUS_SECRET, DEMO_USER, seedDemo } from '../../src/demo.js';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { dropPrefix } from '../helpers/scale.js';
import { startTestServer } from '../helpers/server.js';

const up = await redisAvailable();

/** The demo's public password and secrets must never reach a store a production server could share. */
describe('development demo records', () => {
  const prefix = uniquePrefix('demo');
  const key = randomBytes(32).toString('base64');
  const onRedis = (mode: 'development' | 'production') =>
    startTestServer({
      COUNTERSIGN_MODE: mode,
      COUNTERSIGN_SECRET_KEY: key,
      COUNTERSIGN_REDIS_URL: testRedisUrl(),
      COUNTERSIGN_REDIS_PREFIX: prefix,
      COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org',
    });
  after(async () => {
    if (!up) return;
    const raw = new Redis(testRedisUrl());
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  it('are seeded on the in-memory store only', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    const mem = await startTestServer({ COUNTERSIGN_MODE: 'development' });
    assert.match(await seedDemo(mem), /Demo user/);
    assert.ok(await mem.ctx.store.users.get(DEMO_USER));
    await mem.close();

    const dev = await onRedis('development');
    const banner = await seedDemo(dev);
    assert.match(banner, /No demo records were created/);
    assert.equal(await dev.ctx.store.users.get(DEMO_USER), null);
    assert.deepEqual(dev.registries.radiusClients.withSecret(DEMO_RADIUS_SECRET), []);
    await dev.close();
  });

  it('left in a shared store by an older version, they stop a production start', async (t) => {
    if (!requirePeer(t, up, 'redis-server')) return;
    const dev = await onRedis('development');
    await dev.api('POST', '/api/v1/users', { name: DEMO_USER, password: DEMO_PASSWORD, role: 'admin' });
    await dev.api('POST', '/api/v1/radius-clients', { name: 'demo-nas', address: '127.0.0.1/32', secret: DEMO_RADIUS_SECRET });
    await dev.close();
    await assert.rejects(onRedis('production'), (err: Error) => {
      assert.match(err.message, /refuses to serve/);
      assert.match(err.message, /user 'demo'/);
      assert.match(err.message, /RADIUS client 'demo-nas'/);
      return true;
    });
    // Once the operator removed them (or gave them their own password and secret), it starts.
    const fix = await onRedis('development');
    await fix.api('PATCH', `/api/v1/users/${DEMO_USER}`, { password: 'a-private-password' });
    await fix.api('DELETE', '/api/v1/radius-clients/demo-nas');
    await fix.close();
    const prod = await onRedis('production');
    assert.equal(prod.ctx.config.mode, 'production');
    await prod.close();
  });
});

it('development on a Redis that does not answer says so in one line, with no stack', async () => {
  const s = await startTestServer({ COUNTERSIGN_MODE: 'development', COUNTERSIGN_REDIS_URL: 'redis://127.0.0.1:1' });
  try {
    const banner = await seedDemo(s);
    assert.match(banner, /Redis at redis:\/\/127\.0\.0\.1:1 does not answer: logins are denied/);
    assert.doesNotMatch(banner, /\bat .*\.ts:\d+/);
  } finally {
    await s.close();
  }
});
