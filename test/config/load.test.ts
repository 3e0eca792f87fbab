import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { ConfigError, configEnvNames, loadConfig } from '../../src/config/load.js';

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
  writeFileSync(join(dir, 'mem.json'), JSON.stringify({ store: { kind: 'memory' } }));
  assert.equal(loadConfig({ COUNTERSIGN_CONFIG: 'mem.json', COUNTERSIGN_REDIS_URL: 'redis://r:6379' }, dir).store.kind, 'redis', 'a Redis named in the environment wins over the file');
  assert.equal(loadConfig({ COUNTERSIGN_CONFIG: 'mem.json', COUNTERSIGN_REDIS_URL: 'redis://r:6379', COUNTERSIGN_STORE_KIND: 'memory' }, dir).store.kind, 'memory');
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
    [{ COUNTERSIGN_RADIUS_RADSEC_MAX_CONNECTIONS: '64', COUNTERSIGN_RADIUS_RADSEC_MAX_HANDSHAKES: '65' }, /radius\.radsec\.maxHandshakes cannot be more than maxConnections/],
  ];
  for (const [env, message] of bad) assert.throws(() => loadConfig(env, empty()), (e: Error) => e instanceof ConfigError && message.test(e.message));
  const dir = empty();
  writeFileSync(join(dir, 'broken.json'), '{ "http": ');
  assert.throws(() => loadConfig({ COUNTERSIGN_CONFIG: 'broken.json' }, dir), /not valid JSON/);
});

it('refuses production without a secret key, an admin token, a public URL and a Redis (unless memory is chosen)', () => {
  assert.throws(() => loadConfig({ COUNTERSIGN_MODE: 'production' }, empty()), /secretKey.*admin\.token.*http\.publicUrl.*Redis/);
  const prod = { COUNTERSIGN_MODE: 'production', COUNTERSIGN_SECRET_KEY: key, COUNTERSIGN_ADMIN_TOKEN: 'x'.repeat(32) };
  assert.throws(() => loadConfig({ ...prod, COUNTERSIGN_REDIS_URL: 'redis://r:6379' }, empty()), /http\.publicUrl/);
  const withUrl = { ...prod, COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org' };
  assert.throws(() => loadConfig(withUrl, empty()), /a Redis store.*COUNTERSIGN_STORE_KIND=memory/);
  const c = loadConfig({ ...withUrl, COUNTERSIGN_REDIS_URL: 'redis://r:6379' }, empty());
  assert.equal(c.demo, false, 'no demo user in production');
  assert.equal(c.store.kind, 'redis');
  assert.equal(loadConfig({ ...withUrl, COUNTERSIGN_STORE_KIND: 'memory' }, empty()).store.kind, 'memory', 'memory when asked for by name');
});

it('rejects unknown settings in the file with their path and the nearest name', () => {
  const dir = empty();
  const cases: [unknown, RegExp][] = [
    [{ htpp: { port: 80 } }, /unknown setting htpp; did you mean http\?/],
    [{ challenge: { deadlineSecs: 60 } }, /unknown setting challenge\.deadlineSecs; did you mean challenge\.deadlineSeconds\?/],
    [{ deadlineSeconds: 60 }, /did you mean challenge\.deadlineSeconds\?/],
    [{ radius: { clients: [{ name: 'vpn', address: '10.0.0.1', secret: 'long-enough-secret', mdoe: 'append' }] } }, /radius\.clients\[0\]\.mdoe; did you mean radius\.clients\[0\]\.mode\?/],
  ];
  for (const [content, message] of cases) {
    writeFileSync(join(dir, 'c.json'), JSON.stringify(content));
    assert.throws(() => loadConfig({ COUNTERSIGN_CONFIG: 'c.json' }, dir), (e: Error) => e instanceof ConfigError && message.test(e.message), JSON.stringify(content));
  }
  // Open maps stay open: relying parties' metadata and per-user attributes.
  writeFileSync(join(dir, 'ok.json'), JSON.stringify({ oidc: { clients: [{ client_id: 'x', anything: 1 }] }, radius: { userAttributes: { bob: [['Class', 'a']] } } }));
  assert.equal(loadConfig({ COUNTERSIGN_CONFIG: 'ok.json' }, dir).oidc.clients.length, 1);
});

it('names a bad RADIUS client address by its path', () => {
  const dir = empty();
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ radius: { clients: [{ name: 'vpn', address: '10.0.0.300/8', secret: 'long-enough-secret' }] } }));
  assert.throws(() => loadConfig({ COUNTERSIGN_CONFIG: 'c.json' }, dir), (e: Error) => /radius\.clients\[0\]\.address/.test(e.message) && /not an IP address or CIDR block/.test(e.message));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ radius: { clients: [{ name: 'vpn', address: '10.0.0.0/33', secret: 'long-enough-secret' }] } }));
  assert.throws(() => loadConfig({ COUNTERSIGN_CONFIG: 'c.json' }, dir), (e: Error) => /radius\.clients\[0\]\.address/.test(e.message) && /bad prefix length/.test(e.message));
});

it('has an environment variable for every setting, with _FILE for secrets kept in files', () => {
  const dir = empty();
  writeFileSync(join(dir, 'key'), `${key}\n`);
  const c = loadConfig(
    {
      COUNTERSIGN_OIDC_JWKS_FILE: '/run/secrets/jwks.json',
      COUNTERSIGN_HTTP_TRUST_PROXY: '1',
      COUNTERSIGN_BRIDGE_ENABLED: 'false',
      COUNTERSIGN_OIDC_ENABLED: 'false',
      COUNTERSIGN_REDIS_SENTINELS: 'sentinel-1:26379, sentinel-2:26379',
      COUNTERSIGN_REDIS_SENTINEL_NAME: 'cs',
      COUNTERSIGN_PUSH_RATE_LIMIT_COUNT: '7',
      COUNTERSIGN_RADIUS_CLIENTS: JSON.stringify([{ name: 'vpn', address: '10.0.0.0/8', secret: 'long-enough-secret' }]),
      COUNTERSIGN_SECRET_KEY_FILE: 'key',
    },
    dir,
  );
  assert.equal(c.oidc.jwksFile, '/run/secrets/jwks.json');
  assert.equal(c.http.trustProxy, 1);
  assert.equal(c.bridge.enabled, false);
  assert.equal(c.oidc.enabled, false);
  assert.deepEqual(c.store.redis.sentinels, ['sentinel-1:26379', 'sentinel-2:26379']);
  assert.equal(c.store.kind, 'redis', 'naming Sentinels means using Redis');
  assert.equal(c.push.rateLimit.count, 7);
  assert.equal(c.radius.clients[0]!.mode, 'push-wait');
  assert.equal(c.secretKey, key);
  assert.ok(configEnvNames().includes('COUNTERSIGN_HTTP_TRUST_PROXY'));
  assert.throws(() => loadConfig({ COUNTERSIGN_PUBLICURL: 'https://x.example' }, dir), /unknown environment variable COUNTERSIGN_PUBLICURL; did you mean COUNTERSIGN_PUBLIC_URL\?/);
  assert.throws(() => loadConfig({ COUNTERSIGN_BRIDGE_ENABLED: 'nope' }, dir), /COUNTERSIGN_BRIDGE_ENABLED="nope" is not true or false \(it sets bridge\.enabled\)/);
  assert.equal(loadConfig({ COUNTERSIGN_URL: 'http://x', COUNTERSIGN_TEST_REDIS_URL: 'redis://x' }, dir).mode, 'development', 'the CLI’s and the tests’ variables are not settings');
});
