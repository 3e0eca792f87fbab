import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseDockerfile } from '../../scripts/image-stages.mjs';
import { configEnvNames, loadConfig } from '../../src/config/load.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = join(root, 'deploy/compose');
const compose = parse(readFileSync(join(dir, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { environment?: Record<string, string>; secrets?: string[]; volumes?: string[]; ports?: string[]; build?: unknown }>;
  secrets: Record<string, { file: string }>;
};
const instances = Object.entries(compose.services).filter(([, s]) => s.build);
/** The runtime stage's ENV (the last stage's ENV lines). */
const imageEnv = (() => {
  const steps = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const last = steps.map((s) => s.op).lastIndexOf('FROM');
  const env: Record<string, string> = {};
  for (const s of steps.slice(last)) if (s.op === 'ENV') for (const m of s.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  return env;
})();

it('docker-compose.yml runs two instances of the image, and every variable it sets is a setting', () => {
  assert.equal(instances.length, 2);
  const known = new Set(configEnvNames());
  for (const [name, service] of instances) {
    for (const key of Object.keys(service.environment ?? {})) {
      assert.ok(known.has(key.replace(/_FILE$/, '')), `${name}: ${key} is not a Countersign setting`);
    }
    for (const secret of service.secrets ?? []) assert.ok(compose.secrets[secret], `${name}: secret ${secret} is not declared`);
    assert.ok(service.volumes?.some((v) => v.endsWith(`:${imageEnv.COUNTERSIGN_DATA_DIR}`)), `${name} mounts the image's data volume`);
    assert.ok(service.ports?.some((p) => p.endsWith(':1812/udp')), `${name} publishes RADIUS`);
  }
});

it("each instance's environment is a valid production configuration", () => {
  const secrets = mkdtempSync(join(tmpdir(), 'cs-compose-'));
  const values: Record<string, string> = {
    countersign_secret_key: randomBytes(32).toString('base64'),
    countersign_admin_token: randomBytes(24).toString('base64url'),
    countersign_metrics_token: randomBytes(24).toString('base64url'),
  };
  for (const [name, service] of instances) {
    const env: Record<string, string> = { ...imageEnv };
    for (const [key, value] of Object.entries(service.environment ?? {})) {
      // Compose mounts each secret at /run/secrets/NAME; here, a file with a fresh value.
      const secret = /^\/run\/secrets\/(\w+)$/.exec(value)?.[1];
      if (secret) {
        assert.ok(service.secrets?.includes(secret), `${name}: ${key} reads ${secret}, which the service does not mount`);
        writeFileSync(join(secrets, secret), `${values[secret]}\n`);
        env[key] = join(secrets, secret);
      } else env[key] = value;
    }
    const c = loadConfig(env, secrets);
    assert.equal(c.mode, 'production');
    assert.equal(c.store.kind, 'redis');
    assert.equal(c.http.publicUrl, 'https://mfa.example.org');
    assert.equal(c.http.trustProxy, 1);
    assert.equal(c.secretKey, values.countersign_secret_key);
    assert.equal(c.metrics.token, values.countersign_metrics_token);
  }
});

it('the Caddyfile balances over both instances on their HTTP port, checking /readyz', () => {
  const caddy = readFileSync(join(dir, 'Caddyfile'), 'utf8');
  const upstreams = /reverse_proxy\s+([^{]+)\{/.exec(caddy)![1]!.trim().split(/\s+/);
  assert.deepEqual(upstreams.sort(), instances.map(([name]) => `${name}:8080`).sort());
  assert.match(caddy, /health_uri \/readyz/);
  assert.match(caddy, /flush_interval -1/, 'long-polls and server-sent events are not buffered');
});
