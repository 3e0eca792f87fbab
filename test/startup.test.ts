import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from './helpers/peers.js';
import { ROOT } from './helpers/processes.js';
import { dropPrefix } from './helpers/scale.js';
import { startTestServer } from './helpers/server.js';

/** Something else holding a TCP port on loopback. */
const squat = async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as { port: number }).port, close: () => new Promise<void>((r) => s.close(() => r())) };
};

describe('a start that cannot complete stops with one clear message', () => {
  it('HTTP port in use: names the port and the setting, and leaves nothing running', async () => {
    const taken = await squat();
    try {
      await assert.rejects(startTestServer({ COUNTERSIGN_HTTP_PORT: String(taken.port) }), (err: Error) => {
        assert.equal(err.name, 'StartError');
        assert.match(err.message, new RegExp(`cannot listen for HTTP on 127\\.0\\.0\\.1:${taken.port}: the port is in use \\(set http\\.port`));
        return true;
      });
    } finally {
      await taken.close();
    }
  });

  it('countersign serve with the port taken prints one line and exits 1', async () => {
    const taken = await squat();
    try {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin/countersign.js'), 'serve'], {
        env: { PATH: process.env.PATH!, COUNTERSIGN_HTTP_HOST: '127.0.0.1', COUNTERSIGN_HTTP_PORT: String(taken.port), COUNTERSIGN_RADIUS_ENABLED: 'false', COUNTERSIGN_DEMO: 'false', COUNTERSIGN_LOG_LEVEL: 'silent', COUNTERSIGN_DATA_DIR: mkdtempSync(join(tmpdir(), 'cs-serve-')) },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l && !/Unsupported runtime/.test(l));
      assert.deepEqual(lines, [`countersign: cannot listen for HTTP on 127.0.0.1:${taken.port}: the port is in use (set http.port, COUNTERSIGN_HTTP_PORT)`]);
    } finally {
      await taken.close();
    }
  });

  it('RADIUS port in use: the HTTP port it had taken is given back', async () => {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const radiusPort = udp.address().port;
    const http = await squat();
    await http.close(); // a port known to be free
    try {
      await assert.rejects(
        startTestServer({ COUNTERSIGN_HTTP_PORT: String(http.port), COUNTERSIGN_RADIUS_PORT: String(radiusPort) }),
        /cannot listen for RADIUS on 127\.0\.0\.1:\d+: the port is in use/,
      );
      const again = await startTestServer({ COUNTERSIGN_HTTP_PORT: String(http.port) });
      assert.equal(new URL(again.url).port, String(http.port), 'the HTTP port was released');
      await again.close();
    } finally {
      udp.close();
    }
  });

  it('OpenID Connect cannot keep its keys: the start fails naming the settings, rather than serve half', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cs-start-'));
    writeFileSync(join(dir, 'a-file'), '');
    await assert.rejects(startTestServer({ COUNTERSIGN_DATA_DIR: join(dir, 'a-file', 'data') }), (err: Error) => {
      assert.match(err.message, /OpenID Connect cannot start: cannot keep generated signing keys/);
      assert.match(err.message, /COUNTERSIGN_DATA_DIR.*COUNTERSIGN_OIDC_JWKS_FILE/);
      return true;
    });
  });

  it('/readyz names every enabled front', async () => {
    const s = await startTestServer();
    try {
      const r = await fetch(`${s.url}/readyz`);
      assert.equal(r.status, 200);
      assert.deepEqual(((await r.json()) as any).fronts, { http: 'up', oidc: 'up', radius: 'up' });
    } finally {
      await s.close();
    }
  });
});

describe('production keeps generated OpenID Connect keys in the shared store', () => {
  it('two instances on one Redis publish and sign with the same key', async (t) => {
    if (!requirePeer(t, await redisAvailable(), 'redis-server')) return;
    const prefix = uniquePrefix('jwks');
    const env = {
      COUNTERSIGN_MODE: 'production',
      COUNTERSIGN_SECRET_KEY: randomBytes(32).toString('base64'),
      COUNTERSIGN_REDIS_URL: testRedisUrl(),
      COUNTERSIGN_REDIS_PREFIX: prefix,
      COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org',
      // A data dir nobody can write: production does not need one.
      COUNTERSIGN_DATA_DIR: '/proc/countersign-not-writable',
    };
    const [a, b] = await Promise.all([startTestServer(env), startTestServer(env)]);
    try {
      const keys = async (url: string) => ((await (await fetch(`${url}/oidc/jwks`)).json()) as { keys: { kid: string; n: string }[] }).keys;
      const [ka, kb] = await Promise.all([keys(a.url), keys(b.url)]);
      assert.equal(ka.length, 1);
      assert.deepEqual(ka, kb);
      assert.ok(!('d' in ka[0]!), 'only the public part is published');
      const raw = new Redis(testRedisUrl());
      const stored = await raw.keys(`${prefix}:*jwks*`);
      assert.equal(stored.length, 1);
      assert.ok(!(await raw.get(stored[0]!))!.includes(ka[0]!.n), 'kept sealed');
      await dropPrefix(raw, prefix);
      raw.disconnect();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
