import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.js';

const empty = () => mkdtempSync(join(tmpdir(), 'cs-config-'));
const key = Buffer.alloc(32, 7).toString('base64');

it('has working defaults with no file and no environment', () => {
  const c = loadConfig({}, empty());
  assert.equal(c.mode, 'development');
  assert.equal(c.http.port, 8080);
  assert.equal(c.radius.port, 1812);
  assert.equal(c.store.kind, 'memory');
  assert.equal(c.challenge.deadlineSeconds, 150);
  assert.equal(c.otp.maxFailures, 10);
});

it('reads the file, then lets the environment override it', () => {
  const dir = empty();
  writeFileSync(join(dir, 'cs.json'), JSON.stringify({ http: { port: 9000 }, challenge: { deadlineSeconds: 60 } }));
  const c = loadConfig(
    { COUNTERSIGN_CONFIG: 'cs.json', COUNTERSIGN_DEADLINE_SECONDS: '90', COUNTERSIGN_REDIS_URL: 'redis://10.0.0.5:6380', COUNTERSIGN_RADIUS_PORT: '11812' },
    dir,
  );
  assert.equal(c.http.port, 9000);
  assert.equal(c.challenge.deadlineSeconds, 90);
  assert.equal(c.store.kind, 'redis');
  assert.equal(c.store.redis.url, 'redis://10.0.0.5:6380');
  assert.equal(c.radius.port, 11812);
});

it('stops with a message that names the bad setting', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ COUNTERSIGN_HTTP_PORT: 'eighty' }, /http\.port/],
    [{ COUNTERSIGN_HTTP_PORT: '70000' }, /http\.port/],
    [{ COUNTERSIGN_DEADLINE_SECONDS: '2' }, /deadlineSeconds/],
    [{ COUNTERSIGN_ADMIN_TOKEN: 'short' }, /at least 24 characters/],
    [{ COUNTERSIGN_SECRET_KEY: 'c2hvcnQ=' }, /32 bytes/],
    [{ COUNTERSIGN_MODE: 'prod' }, /mode/],
    [{ COUNTERSIGN_CONFIG: 'missing.json' }, /does not exist/],
  ];
  for (const [env, message] of bad) assert.throws(() => loadConfig(env, empty()), (e: Error) => e instanceof ConfigError && message.test(e.message));
  const dir = empty();
  writeFileSync(join(dir, 'broken.json'), '{ "http": ');
  assert.throws(() => loadConfig({ COUNTERSIGN_CONFIG: 'broken.json' }, dir), /not valid JSON/);
});

it('refuses production without a secret key and an admin token', () => {
  assert.throws(() => loadConfig({ COUNTERSIGN_MODE: 'production' }, empty()), /secretKey.*admin\.token/);
  const c = loadConfig({ COUNTERSIGN_MODE: 'production', COUNTERSIGN_SECRET_KEY: key, COUNTERSIGN_ADMIN_TOKEN: 'x'.repeat(32) }, empty());
  assert.equal(c.demo, false, 'no demo user in production');
});
