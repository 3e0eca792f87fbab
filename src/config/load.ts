import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/** How an environment variable's text becomes a setting's value. */
type Kind = 'string' | 'number' | 'boolean' | 'boolean-or-number' | 'list' | 'json';

interface Setting {
  path: string[];
  kind: Kind;
}

type Schema = z.core.$ZodType;
const defOf = (s: Schema) => (s as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
const unwrap = (s: Schema): Schema => {
  let x = s;
  while (['default', 'prefault', 'optional', 'nullable'].includes(defOf(x).type)) x = defOf(x).innerType as Schema;
  return x;
};
const shapeOf = (s: Schema) => (defOf(s).type === 'object' ? (defOf(s).shape as Record<string, Schema>) : undefined);

/** Every setting the schema knows, with the form its value takes in an environment variable. */
function settingsOf(s: Schema, path: string[] = []): Setting[] {
  const u = unwrap(s);
  const def = defOf(u);
  const shape = shapeOf(u);
  if (shape) return Object.entries(shape).flatMap(([k, v]) => settingsOf(v, [...path, k]));
  const kind: Kind =
    def.type === 'number' || def.type === 'int'
      ? 'number'
      : def.type === 'boolean'
        ? 'boolean'
        : def.type === 'union'
          ? 'boolean-or-number'
          : def.type === 'array' && defOf(unwrap(def.element as Schema)).type === 'string'
            ? 'list'
            : def.type === 'array' || def.type === 'record'
              ? 'json'
              : 'string';
  return [{ path, kind }];
}

const SETTINGS = settingsOf(configSchema);
const envName = (path: string[]) => `COUNTERSIGN_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;

/** Shorter names kept from earlier releases and used in the docs. */
const ALIASES: Record<string, string[]> = {
  COUNTERSIGN_PUBLIC_URL: ['http', 'publicUrl'],
  COUNTERSIGN_REDIS_URL: ['store', 'redis', 'url'],
  COUNTERSIGN_REDIS_PREFIX: ['store', 'redis', 'prefix'],
  COUNTERSIGN_REDIS_PASSWORD: ['store', 'redis', 'password'],
  COUNTERSIGN_REDIS_SENTINELS: ['store', 'redis', 'sentinels'],
  COUNTERSIGN_REDIS_SENTINEL_NAME: ['store', 'redis', 'sentinelName'],
  COUNTERSIGN_REDIS_SENTINEL_PASSWORD: ['store', 'redis', 'sentinelPassword'],
  COUNTERSIGN_REDIS_CLUSTER: ['store', 'redis', 'cluster'],
  COUNTERSIGN_DEADLINE_SECONDS: ['challenge', 'deadlineSeconds'],
};

const BY_ENV = new Map<string, Setting>();
for (const s of SETTINGS) BY_ENV.set(envName(s.path), s);
for (const [name, path] of Object.entries(ALIASES)) BY_ENV.set(name, SETTINGS.find((s) => s.path.join('.') === path.join('.'))!);

/** COUNTERSIGN_* variables that are not settings: the CLI's, the tests' and the benchmarks'. */
const NOT_SETTINGS = /^COUNTERSIGN_(CONFIG|URL|(TEST|BENCH|FUZZ)_\w+)$/;

/**
 * Every environment variable that sets something: one per setting (COUNTERSIGN_ and the
 * path in capitals, e.g. COUNTERSIGN_HTTP_TRUST_PROXY), the short aliases, and each of
 * them with _FILE to read the value from a file (container secrets).
 */
export function configEnvNames(): string[] {
  return [...BY_ENV.keys()].sort();
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Unknown keys anywhere in the file, each with its path and the nearest known name. */
function unknownKeys(raw: unknown, schema: Schema, path: string[] = []): string[] {
  const u = unwrap(schema);
  const def = defOf(u);
  if (def.type === 'array' && Array.isArray(raw)) return raw.flatMap((item, i) => unknownKeys(item, def.element as Schema, [...path.slice(0, -1), `${path.at(-1)}[${i}]`]));
  const shape = shapeOf(u);
  if (!shape || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return [];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (Object.hasOwn(shape, key)) {
      problems.push(...unknownKeys(value, shape[key]!, [...path, key]));
      continue;
    }
    const here = [...path, key].join('.');
    const sibling = closest(key, Object.keys(shape));
    const elsewhere = SETTINGS.map((s) => s.path.join('.')).find((p) => p.endsWith(`.${key}`) || p === key);
    const hint = sibling ? `; did you mean ${[...path, sibling].join('.')}?` : elsewhere ? `; did you mean ${elsewhere}?` : '';
    problems.push(`unknown setting ${here}${hint}`);
  }
  return problems;
}

function fromEnv(name: string, text: string, setting: Setting): unknown {
  const bad = (what: string) => new ConfigError(`${name}=${JSON.stringify(text.slice(0, 80))} is not ${what} (it sets ${setting.path.join('.')})`);
  const kind = setting.kind;
  switch (kind) {
    case 'boolean':
      if (/^(true|1|yes)$/i.test(text)) return true;
      if (/^(false|0|no)$/i.test(text)) return false;
      throw bad('true or false');
    case 'number':
      if (!/^-?\d+(\.\d+)?$/.test(text.trim())) throw bad('a number');
      return Number(text);
    case 'boolean-or-number':
      if (/^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
      if (/^\d+$/.test(text.trim())) return Number(text);
      throw bad('true, false or a number');
    case 'list':
      return text.split(',').map((x) => x.trim()).filter(Boolean);
    case 'json':
      try {
        return JSON.parse(text);
      } catch {
        throw bad('JSON');
      }
    default:
      return text;
  }
}

const setPath = (obj: Record<string, unknown>, path: string[], value: unknown) => {
  let o = obj;
  for (const k of path.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
};

/** The file's settings with the environment's laid over them (objects merged, anything else replaced). */
const merge = (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> => {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
};

const getPath = (obj: Record<string, unknown>, path: string[]): unknown =>
  path.reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);

/** Environment overrides; a COUNTERSIGN_ variable that sets nothing is a mistake, said with the nearest name. */
function applyEnv(raw: Record<string, unknown>, env: Env, cwd: string): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('COUNTERSIGN_') || value === undefined || NOT_SETTINGS.test(name)) continue;
    const viaFile = name.endsWith('_FILE') && BY_ENV.has(name.slice(0, -5));
    const setting = BY_ENV.get(viaFile ? name.slice(0, -5) : name);
    if (!setting) {
      const near = closest(name, [...BY_ENV.keys()]);
      throw new ConfigError(`unknown environment variable ${name}${near ? `; did you mean ${near}?` : ''} (every setting is COUNTERSIGN_ and its path in capitals, e.g. COUNTERSIGN_HTTP_TRUST_PROXY)`);
    }
    let text = value;
    if (viaFile) {
      try {
        text = readFileSync(resolve(cwd, value), 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new ConfigError(`${name} names ${value}, which cannot be read: ${(err as Error).message}`);
      }
    }
    if (text === '') continue;
    setPath(raw, setting.path, fromEnv(name, text, setting));
  }
}

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
    const unknown = unknownKeys(raw, configSchema);
    if (unknown.length) throw new ConfigError(`${file}: ${unknown.join('; ')}`);
  }
  const locations = (o: Record<string, unknown>) => ['url', 'sentinels', 'cluster'].some((k) => getPath(o, ['store', 'redis', k]) !== undefined);
  const fromFile = { kind: getPath(raw, ['store', 'kind']), redis: locations(raw) };
  const overrides: Record<string, unknown> = {};
  applyEnv(overrides, env, cwd);
  const envKind = getPath(overrides, ['store', 'kind']);
  raw = merge(raw, overrides);
  // Naming a Redis (URL, Sentinels or Cluster) means using it, unless a kind is set beside it:
  // a Redis named in the environment wins over the file's kind.
  if (envKind === undefined && (locations(overrides) || (fromFile.redis && fromFile.kind === undefined))) setPath(raw, ['store', 'kind'], 'redis');
  const memoryChosen = getPath(raw, ['store', 'kind']) === 'memory';

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  if (config.mode === 'production') {
    const missing = [];
    if (!config.secretKey) missing.push('secretKey (COUNTERSIGN_SECRET_KEY)');
    if (!config.admin.token) missing.push('admin.token (COUNTERSIGN_ADMIN_TOKEN)');
    if (!config.http.publicUrl) missing.push('http.publicUrl (COUNTERSIGN_PUBLIC_URL): the address users, phones and relying parties reach');
    if (config.store.kind === 'memory' && !memoryChosen) {
      missing.push(
        'a Redis store (COUNTERSIGN_REDIS_URL, or store.redis.sentinels / store.redis.cluster); the in-memory store keeps nothing across a restart and serves one instance only — set store.kind "memory" (COUNTERSIGN_STORE_KIND=memory) to choose it anyway',
      );
    }
    if (missing.length) throw new ConfigError(`production mode needs ${missing.join(', and ')}`);
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
