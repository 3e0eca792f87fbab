import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import createLocalDirectory from '../plugins/directory-local/index.js';
import { Audit } from './core/audit.js';
import { systemClock, type Clock } from './core/clock.js';
import { ChallengeEngine } from './core/engine.js';
import { LoginService } from './core/login.js';
import { OtpChecker } from './core/otp-check.js';
import { SecretBox } from './core/secretbox.js';
import { UserService } from './core/users.js';
import type { Config } from './config/schema.js';
import type { AppContext } from './context.js';
import { mountAdminApi } from './fronts/admin/index.js';
import { createHttpApp } from './http/server.js';
import { Metrics } from './observability/metrics.js';
import { MemoryStore } from './store/memory/index.js';
import { RedisStore } from './store/redis/index.js';
import type { Store } from './store/store.js';

export interface Running {
  url: string;
  adminToken: string;
  ctx: AppContext;
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  log?: Logger;
}

/** Reads a secret kept in the data dir, creating it on first start (development only). */
function devSecret(config: Config, file: string, make: () => string, log: Logger, what: string): string {
  const path = join(config.dataDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  log.warn({ path }, `generated ${what} for development; set it explicitly in production`);
  return value;
}

export function createStore(config: Config, clock: Clock): Store {
  if (config.store.kind === 'redis') {
    return new RedisStore({ ...config.store.redis, auditLimit: config.audit.limit });
  }
  return new MemoryStore({ clock, auditLimit: config.audit.limit });
}

/** Wires config → store → engine → plugins → fronts, and listens. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<Running> {
  const log = opts.log ?? pino({ level: config.log.level, base: { service: 'countersign' } });
  const clock = opts.clock ?? systemClock;
  const secretKey = config.secretKey ?? devSecret(config, 'secret-key', () => randomBytes(32).toString('base64'), log, 'a secret key');
  const adminToken = config.admin.token ?? devSecret(config, 'admin-token', () => randomBytes(24).toString('base64url'), log, 'an admin token');

  const store = createStore(config, clock);
  const box = SecretBox.fromBase64(secretKey);
  const engine = new ChallengeEngine({
    store,
    clock,
    deadlineMs: config.challenge.deadlineSeconds * 1000,
    keepAfterMs: config.challenge.keepAfterSeconds * 1000,
    displayCodeDigits: config.challenge.displayCodeDigits,
    sweepIntervalMs: config.challenge.sweepIntervalMs,
  });
  const users = new UserService(store, box, clock, {
    issuer: config.otp.issuer,
    otpDefaults: { type: config.otp.type, algorithm: config.otp.algorithm, digits: config.otp.digits, period: config.otp.period },
    scrypt: { N: config.passwords.scryptN, r: 8, p: 1 },
  });
  const otp = new OtpChecker(store, box, clock, {
    totpWindow: config.otp.totpWindow,
    hotpLookahead: config.otp.hotpLookahead,
    maxFailures: config.otp.maxFailures,
    lockMs: config.otp.lockSeconds * 1000,
  });
  const audit = new Audit(store, log.child({ component: 'audit' }));
  const directory = createLocalDirectory({ store });
  const login = new LoginService(engine, users, otp, directory);
  const metrics = new Metrics(engine);
  const ctx: AppContext = { config, log, clock, store, box, engine, users, otp, audit, directory, login, metrics };

  engine.on('resolved', (c) => void audit.login(c));
  engine.on('error', (err) => log.error({ err }, 'engine background task failed'));
  login.on('otpFailure', (reason) => metrics.otpFailures.inc({ reason }));

  // Redis may be down at start: serve anyway (readyz says not ready, logins are denied).
  const subscribed = engine.start().then(
    () => true,
    (err) => {
      log.error({ err }, 'could not subscribe to challenge outcomes');
      return false;
    },
  );
  await Promise.race([subscribed, new Promise((r) => setTimeout(r, 5000).unref())]);

  const app = createHttpApp(ctx, (a) => mountAdminApi(a, ctx, adminToken));
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.http.port, config.http.host, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`;
  log.info({ url, store: store.kind, mode: config.mode }, 'countersign listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Waiters are told first, so held requests answer "denied" rather than hang.
      await engine.stop();
      server.closeIdleConnections();
      const done = new Promise<void>((r) => server.close(() => r()));
      const force = setTimeout(() => server.closeAllConnections(), 2000);
      await done;
      clearTimeout(force);
      await store.close();
      log.info('countersign stopped');
    })());
  return { url, adminToken, ctx, close };
}
