import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { base32Decode, hotp, totpStep } from '../../src/core/otp.js';
import { startServer, type Running, type StartOptions } from '../../src/main.js';

export interface TestServer extends Running {
  api<T = any>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
}

export const TEST_TOKEN = 'test-admin-token-0123456789abcdef';

/** A real server on a free loopback port, configured the way an operator would. */
export async function startTestServer(
  env: Record<string, string> = {},
  opts: StartOptions = {},
  tweak: (config: Config) => void = () => {},
): Promise<TestServer> {
  const config = loadConfig({
    COUNTERSIGN_HTTP_HOST: '127.0.0.1',
    COUNTERSIGN_HTTP_PORT: '0',
    COUNTERSIGN_SECRET_KEY: randomBytes(32).toString('base64'),
    COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN,
    COUNTERSIGN_LOG_LEVEL: 'silent',
    COUNTERSIGN_DEMO: 'false',
    COUNTERSIGN_RADIUS_HOST: '127.0.0.1',
    COUNTERSIGN_RADIUS_PORT: '0',
    COUNTERSIGN_RADIUS_ACCOUNTING_PORT: '0',
    ...env,
  });
  config.passwords.scryptN = 1024; // fast tests; the format carries the cost
  tweak(config);
  const running = await startServer(config, opts);
  return {
    ...running,
    async api(method, path, body, token = TEST_TOKEN) {
      const res = await fetch(`${running.url}${path}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
    },
  };
}

/** Six digits that are not the user's TOTP code (SHA1, 6 digits, 30 s) anywhere near now. */
export function wrongCode(base32: string): string {
  const key = base32Decode(base32);
  const step = totpStep(Date.now(), 30);
  const near = new Set<string>();
  for (let i = step - 4; i <= step + 4; i++) near.add(hotp(key, i, 'SHA1', 6));
  for (let n = 0; ; n++) {
    const c = String((123456 + n * 7919) % 1_000_000).padStart(6, '0');
    if (!near.has(c)) return c;
  }
}

/** The current TOTP code for a base32 secret, computed by Debian's oathtool. */
export const oathTotp = (secret: string, digits = 6, extra: string[] = []) =>
  execFileSync('oathtool', ['--totp', '-b', '-d', String(digits), ...extra, secret], { encoding: 'utf8' }).trim();

/** Two servers on one Redis prefix and one secret key: two instances behind a load balancer. */
export async function startPairOnRedis(redisUrl: string, prefix: string): Promise<[TestServer, TestServer]> {
  const env = { COUNTERSIGN_REDIS_URL: redisUrl, COUNTERSIGN_REDIS_PREFIX: prefix };
  const a = await startTestServer(env);
  const b = await startTestServer({ ...env, COUNTERSIGN_SECRET_KEY: a.ctx.config.secretKey! });
  return [a, b];
}
