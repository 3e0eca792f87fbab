/**
 * The container image, built stage by stage the way the Dockerfile says (no Docker engine
 * here: scripts/image-stages.mjs runs its instructions), then run as the image would run it:
 * its user, its working directory, its environment plus only the variables the README
 * documents for production, and its HEALTHCHECK. A login goes through end to end.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { asImageUser, buildImage } from '../../scripts/image-stages.mjs';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { captureOutput, freePort, ROOT, stopChild, track } from '../helpers/processes.js';
import { q, radclient } from '../helpers/radclient.js';
import { dropPrefix } from '../helpers/scale.js';
import { oathTotp } from '../helpers/server.js';

const up = (await redisAvailable()) && hasCommand('oathtool') && hasCommand('radclient') && hasCommand('setpriv');
const TOKEN = randomBytes(24).toString('base64url');

describe('the container image, built as the Dockerfile says and run in production mode', () => {
  let image: ReturnType<typeof buildImage>;
  let child: ReturnType<typeof spawn> | undefined;
  let output = () => '';
  let url = '';
  let radiusPort = 0;
  let env: Record<string, string> = {};
  const prefix = uniquePrefix('image');

  before(async () => {
    if (!up) return;
    image = buildImage({ dockerfile: join(ROOT, 'Dockerfile'), context: ROOT });
    const port = await freePort();
    radiusPort = await freePort({ udp: true });
    url = `http://127.0.0.1:${port}`;
    // The image's own environment, plus what the production checklist names; nothing else.
    env = {
      PATH: process.env.PATH!,
      ...image.env,
      COUNTERSIGN_SECRET_KEY: randomBytes(32).toString('base64'),
      COUNTERSIGN_ADMIN_TOKEN: TOKEN,
      COUNTERSIGN_PUBLIC_URL: 'https://mfa.example.org',
      COUNTERSIGN_REDIS_URL: testRedisUrl(),
      COUNTERSIGN_REDIS_PREFIX: prefix,
      COUNTERSIGN_HTTP_PORT: String(port),
      COUNTERSIGN_RADIUS_PORT: String(radiusPort),
      COUNTERSIGN_RADIUS_ACCOUNTING_PORT: String(await freePort({ udp: true })),
    };
    const [cmd, ...args] = asImageUser(image, image.command);
    child = track(spawn(cmd!, args, { cwd: image.workdir, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    output = captureOutput(child);
  });
  after(async () => {
    if (child) await stopChild(child);
    if (!up) return;
    const raw = new Redis(testRedisUrl());
    await dropPrefix(raw, prefix);
    raw.disconnect();
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('holds compiled code and production dependencies only: no sources, no development config', (t) => {
    if (!requirePeer(t, up, 'redis-server, oathtool, radclient and setpriv')) return;
    assert.deepEqual(image.stages, ['build', '1']);
    assert.ok(existsSync(join(image.workdir, 'dist/src/cli/main.js')));
    assert.ok(!existsSync(join(image.workdir, 'src')), 'no TypeScript sources');
    assert.ok(!existsSync(join(image.workdir, 'config')), 'no development config baked in');
    assert.ok(!existsSync(join(image.workdir, 'node_modules/typescript')), 'no dev dependencies');
    assert.notEqual(image.user, 0, 'runs as an unprivileged user');
    assert.deepEqual(image.volumes, [env.COUNTERSIGN_DATA_DIR]);
  });

  it('passes its own HEALTHCHECK, as its user, and serves a login end to end', async (t) => {
    if (!requirePeer(t, up, 'redis-server, oathtool, radclient and setpriv')) return;
    let healthy = false;
    for (let i = 0; i < 150 && !healthy; i++) {
      if (child!.exitCode !== null) assert.fail(`the server exited (${child!.exitCode}):\n${output()}`);
      const [cmd, ...args] = asImageUser(image, image.healthcheck!);
      healthy = spawnSync(cmd!, args, { env, cwd: image.workdir }).status === 0;
      if (!healthy) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(healthy, `never healthy:\n${output()}`);
    const ready = (await (await fetch(`${url}/readyz`)).json()) as any;
    assert.deepEqual(ready.fronts, { http: 'up', oidc: 'up', radius: 'up' });

    const discovery = (await (await fetch(`${url}/oidc/.well-known/openid-configuration`)).json()) as any;
    assert.equal(discovery.issuer, 'https://mfa.example.org/oidc', 'the issuer is the public URL');
    assert.equal((await fetch(`${url}/demo-app/`)).status, 404, 'no demo in production');
    const app = await fetch(`${url}/app/`);
    assert.equal(app.status, 200, 'the web app ships in the image');
    assert.match(await app.text(), /manifest\.webmanifest/);
    assert.equal((await fetch(`${url}/app/sw.js`)).status, 200);

    assert.equal((await api('POST', '/users', { name: 'ops', password: 'ops-password' })).status, 201);
    const secret = (await api('POST', '/users/ops/otp', {})).body.secret as string;
    const opened = await api('POST', '/challenges', { user: 'ops', password: 'ops-password' });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    const answered = await api('POST', `/challenges/${opened.body.id}/otp`, { code: oathTotp(secret) });
    assert.equal(answered.body.state, 'approved', JSON.stringify(answered.body));

    const nasSecret = randomBytes(12).toString('hex');
    assert.equal((await api('POST', '/radius-clients', { name: 'vpn', address: '127.0.0.1/32', secret: nasSecret, mode: 'append' })).status, 201);
    // Instances pick up clients added through the API within seconds.
    let reply = '';
    for (let i = 0; i < 20 && reply !== 'Access-Accept'; i++) {
      const code = oathTotp(secret, 6, ['-N', `@${Math.floor(Date.now() / 1000) + 30}`]);
      reply = (await radclient(radiusPort, nasSecret, { 'User-Name': 'ops', 'User-Password': q(`ops-password,${code}`) }, { timeout: 1, retries: 1 })).code;
      if (reply !== 'Access-Accept') await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(reply, 'Access-Accept', output());
  });

  it('stops cleanly on SIGTERM', async (t) => {
    if (!requirePeer(t, up, 'redis-server, oathtool, radclient and setpriv')) return;
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child!.kill('SIGTERM');
    assert.equal(await exited, 0, output());
    child = undefined;
    assert.ok(!readFileSync(join(ROOT, 'Dockerfile'), 'utf8').includes('COPY config'), 'the Dockerfile copies no config');
  });
});
