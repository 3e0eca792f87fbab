import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/** Environment variables that override the file, by the path they set. */
const ENV_PATHS: Record<string, string[]> = {
  COUNTERSIGN_MODE: ['mode'],
  COUNTERSIGN_DATA_DIR: ['dataDir'],
  COUNTERSIGN_HTTP_HOST: ['http', 'host'],
  COUNTERSIGN_HTTP_PORT: ['http', 'port'],
  COUNTERSIGN_PUBLIC_URL: ['http', 'publicUrl'],
  COUNTERSIGN_RADIUS_HOST: ['radius', 'host'],
  COUNTERSIGN_RADIUS_PORT: ['radius', 'port'],
  COUNTERSIGN_REDIS_URL: ['store', 'redis', 'url'],
  COUNTERSIGN_REDIS_PREFIX: ['store', 'redis', 'prefix'],
  COUNTERSIGN_REDIS_PASSWORD: ['store', 'redis', 'password'],
  COUNTERSIGN_REDIS_SENTINEL_PASSWORD: ['store', 'redis', 'sentinelPassword'],
  COUNTERSIGN_SECRET_KEY: ['secretKey'],
  COUNTERSIGN_ADMIN_TOKEN: ['admin', 'token'],
  COUNTERSIGN_METRICS_TOKEN: ['metrics', 'token'],
  COUNTERSIGN_DEADLINE_SECONDS: ['challenge', 'deadlineSeconds'],
  COUNTERSIGN_LOG_LEVEL: ['log', 'level'],
};

const setPath = (obj: Record<string, unknown>, path: string[], value: unknown) => {
  let o = obj;
  for (const k of path.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
};

/**
 * File (COUNTERSIGN_CONFIG, else config/countersign.json when present), then
 * environment overrides, then the schema's defaults; any mistake stops the
 * start with a message naming the setting.
 */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const explicit = env.COUNTERSIGN_CONFIG;
  const file = explicit ? resolve(cwd, explicit) : resolve(cwd, 'config/countersign.json');
  let raw: Record<string, unknown> = {};
  if (explicit && !existsSync(file)) throw new ConfigError(`COUNTERSIGN_CONFIG names ${file}, which does not exist`);
  if (existsSync(file)) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  for (const [name, path] of Object.entries(ENV_PATHS)) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(raw, path, v);
  }
  if (env.COUNTERSIGN_REDIS_URL) setPath(raw, ['store', 'kind'], 'redis');
  const flag = (v: string) => v === 'true' || v === '1';
  if (env.COUNTERSIGN_DEMO !== undefined) setPath(raw, ['demo'], flag(env.COUNTERSIGN_DEMO));
  if (env.COUNTERSIGN_RADIUS_ENABLED !== undefined) setPath(raw, ['radius', 'enabled'], flag(env.COUNTERSIGN_RADIUS_ENABLED));
  if (env.COUNTERSIGN_HTTP_SECURE_COOKIES !== undefined) setPath(raw, ['http', 'secureCookies'], flag(env.COUNTERSIGN_HTTP_SECURE_COOKIES));

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  if (config.mode === 'production') {
    const missing = [];
    if (!config.secretKey) missing.push('secretKey (COUNTERSIGN_SECRET_KEY)');
    if (!config.admin.token) missing.push('admin.token (COUNTERSIGN_ADMIN_TOKEN)');
    if (missing.length) throw new ConfigError(`production mode needs ${missing.join(' and ')}`);
    config.demo = false;
  }
  if (config.secretKey && Buffer.from(config.secretKey, 'base64').length !== 32) {
    throw new ConfigError('secretKey must be base64 of exactly 32 bytes (try: openssl rand -base64 32)');
  }
  if (config.store.kind === 'redis' && !config.store.redis.url && !config.store.redis.cluster && !config.store.redis.sentinels) {
    config.store.redis.url = 'redis://127.0.0.1:6379';
  }
  return config;
}
