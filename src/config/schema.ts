import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);

/** Every setting with its default. README's configuration reference mirrors this file. */
export const configSchema = z.object({
  /** production refuses to start without a secret key and an admin token. */
  mode: z.enum(['development', 'production']).default('development'),
  /** Where development mode keeps its generated secret key and admin token. */
  dataDir: z.string().default('.countersign'),
  http: z
    .object({
      host: z.string().default('127.0.0.1'),
      port: port.default(8080),
      /** The address people and phones use to reach this server. */
      publicUrl: z.url().optional(),
      /** Trust X-Forwarded-For from a reverse proxy (hop count or false). */
      trustProxy: z.union([z.boolean(), z.number().int().min(0)]).default(false),
    })
    .prefault({}),
  radius: z
    .object({
      host: z.string().default('::'),
      port: port.default(1812),
    })
    .prefault({}),
  store: z
    .object({
      kind: z.enum(['memory', 'redis']).default('memory'),
      redis: z
        .object({
          url: z.string().optional(),
          cluster: z.array(z.string()).optional(),
          sentinels: z.array(z.string()).optional(),
          sentinelName: z.string().optional(),
          password: z.string().optional(),
          prefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('cs'),
          commandTimeoutMs: z.number().int().positive().default(2000),
        })
        .prefault({}),
    })
    .prefault({}),
  /** base64 of 32 random bytes; encrypts OTP seeds and device keys at rest. */
  secretKey: z.string().optional(),
  admin: z
    .object({
      /** Bearer token for the admin API and the CLI (at least 24 characters). */
      token: z.string().min(24, 'the admin token must be at least 24 characters').optional(),
    })
    .prefault({}),
  challenge: z
    .object({
      deadlineSeconds: z.coerce.number().int().min(5).max(3600).default(150),
      displayCodeDigits: z.number().int().min(3).max(8).default(4),
      /** How long a resolved challenge is kept so late answers are told why. */
      keepAfterSeconds: z.number().int().min(1).default(300),
      sweepIntervalMs: z.number().int().min(50).default(1000),
    })
    .prefault({}),
  otp: z
    .object({
      issuer: z.string().min(1).default('Countersign'),
      type: z.enum(['totp', 'hotp']).default('totp'),
      algorithm: z.enum(['SHA1', 'SHA256', 'SHA512']).default('SHA1'),
      digits: z.number().int().min(6).max(8).default(6),
      period: z.number().int().min(10).max(120).default(30),
      totpWindow: z.number().int().min(0).max(10).default(1),
      hotpLookahead: z.number().int().min(1).max(100).default(10),
      maxFailures: z.number().int().min(1).default(10),
      lockSeconds: z.number().int().min(1).default(900),
    })
    .prefault({}),
  passwords: z
    .object({
      scryptN: z
        .number()
        .int()
        .refine((n) => n >= 1024 && (n & (n - 1)) === 0, 'scryptN must be a power of two, at least 1024')
        .default(32768),
    })
    .prefault({}),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  audit: z.object({ limit: z.number().int().min(100).default(100_000) }).prefault({}),
  /** Seeds a demo user and prints how to try it (development mode only). */
  demo: z.boolean().default(true),
});

export type Config = z.infer<typeof configSchema>;
