import { isIP } from 'node:net';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);

const replyAttribute = z.tuple([z.string().min(1), z.union([z.string(), z.number()])]);

/** Why `s` is not an IP address or CIDR block, or null when it is one. */
export function addressBlockProblem(s: string): string | null {
  const [addr, bits, extra] = s.split('/');
  const family = isIP(addr ?? '');
  if (!family || extra !== undefined) return `'${s}' is not an IP address or CIDR block (e.g. 192.0.2.10, 10.0.0.0/8, 2001:db8::/32)`;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (bits === '' || !Number.isInteger(prefix) || prefix < 0 || prefix > max) return `'${s}' has a bad prefix length (0-${max})`;
  return null;
}

/** Who may log in, and who needs a second factor, by directory group (src/core/policy.ts). */
export const policySchema = z
  .object({
    /** Only members of one of these groups may log in (empty: everyone). */
    allowGroups: z.array(z.string().min(1)).optional(),
    /** Only members of one of these groups need a second factor (empty: everyone does). */
    mfaGroups: z.array(z.string().min(1)).optional(),
    /** Users who need a second factor but have none enrolled: refused (deny) or let in on the first (allow). */
    noFactor: z.enum(['deny', 'allow']).optional(),
  })
  .strict();

/** A NAS (VPN concentrator, firewall, proxy) allowed to send Access-Requests. */
export const radiusClientSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a client name is 1-64 letters, digits, . _ -'),
    /** An address or CIDR block; requests from elsewhere are dropped. */
    address: z.string().superRefine((v, c) => {
      const problem = addressBlockProblem(v);
      if (problem) c.addIssue({ code: 'custom', message: problem });
    }),
    secret: z.string().min(8, 'a RADIUS shared secret must be at least 8 characters').max(128),
    mode: z.enum(['push-wait', 'append', 'challenge']).default('push-wait'),
    /** The NAS checked the password already; the password field carries the OTP, or is empty/"push". */
    secondFactorOnly: z.boolean().default(false),
    /** Off only for old gear (pam_radius, OpenVPN radiusplugin) that cannot send it. */
    requireMessageAuthenticator: z.boolean().default(true),
    /** append mode: the separator between password and OTP ("" = the trailing digits). */
    appendDelimiter: z.string().max(1).default(','),
    /** Attributes added to every Access-Accept for this client, e.g. ["Class", "vpn-users"]. */
    acceptAttributes: z.array(replyAttribute).default([]),
    /** Group policy for this NAS, over the default. */
    policy: policySchema.optional(),
  })
  .strict();

export type RadiusClientConfig = z.infer<typeof radiusClientSchema>;

const realms = z.array(z.string().min(1).max(253)).default([]).describe('DNS suffixes (user@corp.example.org) and NetBIOS names (CORP\\user) this directory answers for');

/** Countersign's own users and passwords (plugins/directory-local). */
export const localDirectorySchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/).default('local'),
    kind: z.literal('local'),
    realms,
  })
  .strict();

/** Active Directory or another LDAP server (plugins/directory-ldap). */
export const ldapDirectorySchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'a directory name is lower-case letters, digits and -'),
    kind: z.literal('ldap'),
    realms,
    /** ad: Active Directory (objectGUID, userAccountControl, nested groups by matching rule); openldap: entryUUID, memberOf. */
    flavor: z.enum(['ad', 'openldap']).default('ad'),
    /** ldap:// or ldaps:// URLs, tried in order; the next one when a server does not answer. */
    urls: z.array(z.string().regex(/^ldaps?:\/\/[^\s/]+(:\d+)?\/?$/, 'an ldap:// or ldaps:// URL')).min(1),
    /** Upgrade ldap:// connections with StartTLS. */
    startTls: z.boolean().default(false),
    /** CA certificates (PEM) that sign the servers' certificates. */
    caFile: z.string().optional(),
    /** The service account that searches for users (never the user's own bind). */
    bindDn: z.string().min(1),
    bindPassword: z.string().min(1),
    baseDn: z.string().min(1),
    /** Attributes a login name may match: sAMAccountName, userPrincipalName, mail (AD); uid, mail (OpenLDAP). */
    loginAttributes: z.array(z.string().regex(/^[A-Za-z][A-Za-z0-9-]*$/)).min(1).optional(),
    /** Extra filter users must match, e.g. (objectCategory=person). */
    userFilter: z.string().optional(),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    poolSize: z.number().int().min(1).max(32).default(4),
  })
  .strict();

export const directorySchema = z.discriminatedUnion('kind', [localDirectorySchema, ldapDirectorySchema]);
export type LdapDirectoryConfig = z.infer<typeof ldapDirectorySchema>;
export type DirectoryConfig = z.infer<typeof directorySchema>;

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
      /** Mark the console's cookies Secure even when this hop is plain HTTP (TLS ends at a proxy). */
      secureCookies: z.boolean().default(false),
    })
    .prefault({}),
  radius: z
    .object({
      enabled: z.boolean().default(true),
      host: z.string().default('::'),
      port: port.default(1812),
      /**
       * Answer Accounting-Request (RFC 2866) from known clients, on accountingPort and on the
       * auth port, and record the sessions; off: no accounting port, Accounting-Requests dropped.
       */
      accountingEnabled: z.boolean().default(true),
      /** UDP port for Accounting-Request and Status-Server (0 = any free port). */
      accountingPort: port.default(1813),
      clients: z.array(radiusClientSchema).default([]),
      /** Attributes added to Access-Accepts per user name, e.g. { "alice": [["Filter-Id", "admins"]] }. */
      userAttributes: z.record(z.string(), z.array(replyAttribute)).default({}),
      /** How long answers stay cached for retransmits (RFC 5080). */
      replyCacheSeconds: z.number().int().min(1).max(600).default(30),
      /**
       * How long a request being worked on (first factor, opening the login) keeps
       * retransmits away from other instances. Past it, an instance that died mid-way
       * no longer holds the NAS up: the next retransmit starts over wherever it lands.
       */
      processingLeaseSeconds: z.number().int().min(1).max(600).default(30),
    })
    .prefault({}),
  bridge: z
    .object({
      /** The Windows logon bridge and the privacyIDEA-compatible /validate endpoints. */
      enabled: z.boolean().default(true),
    })
    .prefault({}),
  oidc: z
    .object({
      enabled: z.boolean().default(true),
      /** Where the provider is mounted; the issuer is publicUrl + path. */
      path: z.string().regex(/^\/[A-Za-z0-9/_-]*$/).default('/oidc'),
      /** A private JWKS ({"keys": [...]}) for signing; generated and kept in dataDir when absent. */
      jwksFile: z.string().optional(),
      /** Relying parties: OpenID client metadata, plus countersign_no_factor: "deny" (default) | "allow". */
      clients: z.array(z.record(z.string(), z.unknown())).default([]),
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
          sentinelPassword: z.string().optional(),
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
      /** Wrong codes in a row (after the first factor) that lock OTP for lockSeconds. */
      maxFailures: z.number().int().min(1).default(10),
      /** The first lock; each further lock before a good code doubles it, up to maxLockSeconds. */
      lockSeconds: z.number().int().min(1).default(900),
      maxLockSeconds: z.number().int().min(1).default(86_400),
    })
    .prefault({}),
  push: z
    .object({
      /** The login screen shows a 2-digit number the user types on the phone (per-user override). */
      numberMatching: z.boolean().default(false),
      /** Enrolment links work once, for this long. */
      enrolmentSeconds: z.number().int().min(60).max(86_400).default(600),
      /** A signed device request older than this (or this far in the future) is refused. */
      requestMaxAgeSeconds: z.number().int().min(5).max(600).default(60),
      /** At most this many pushes per user in the window; past it, push is not offered. */
      rateLimit: z.object({ count: z.number().int().min(1).default(5), windowSeconds: z.number().int().min(1).default(600) }).prefault({}),
      /** This many rejected pushes within the window lock push for lockSeconds. */
      rejectLockout: z
        .object({
          count: z.number().int().min(1).default(3),
          windowSeconds: z.number().int().min(1).default(3600),
          lockSeconds: z.number().int().min(1).default(900),
        })
        .prefault({}),
      /** After "this wasn't me", pushes to that user are muted this long. */
      notMeMuteSeconds: z.number().int().min(0).default(3600),
      /** A push service slower than this is given up on (the login still waits for an answer). */
      sendTimeoutMs: z.number().int().min(100).default(5000),
      /** Firebase Cloud Messaging (Android): plugins/push-fcm. */
      fcm: z
        .object({
          projectId: z.string().min(1),
          serviceAccountFile: z.string().optional(),
          endpoint: z.url().optional(),
        })
        .optional(),
      /** Apple Push Notification service (iOS): plugins/push-apns. */
      apns: z
        .object({
          keyFile: z.string().min(1),
          keyId: z.string().min(1),
          teamId: z.string().min(1),
          topic: z.string().min(1),
          production: z.boolean().default(true),
          address: z.string().optional(),
        })
        .optional(),
      /** Web Push (RFC 8030/8291/8292) to the web app at /app/: plugins/push-webpush. */
      webpush: z
        .object({
          enabled: z.boolean().default(true),
          /** VAPID contact for the push services: mailto:… or https://…; default http.publicUrl when https, else mailto:admin@localhost. */
          subject: z.string().regex(/^(mailto:|https:\/\/)\S+$/, 'the VAPID subject is a mailto: or https:// URL').optional(),
          /** VAPID key pair, base64url (65-byte public point, 32-byte private key); absent: generated once, kept sealed in the store. */
          publicKey: z.string().regex(/^[A-Za-z0-9_-]{87}$/, 'publicKey is base64url of a 65-byte P-256 point (87 characters)').optional(),
          privateKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'privateKey is base64url of 32 bytes (43 characters)').optional(),
        })
        .refine((w) => (w.publicKey === undefined) === (w.privateKey === undefined), 'push.webpush needs both publicKey and privateKey, or neither')
        .prefault({}),
    })
    .prefault({}),
  passwords: z
    .object({
      scryptN: z
        .number()
        .int()
        .refine((n) => n >= 1024 && (n & (n - 1)) === 0, 'scryptN must be a power of two, at least 1024')
        .default(32768),
      /**
       * scrypt parallelism. With N=2^15 and r=8, p=3 is one of OWASP's equivalent settings.
       * Hashes made with other settings are replaced at the user's next good login.
       */
      scryptP: z.number().int().min(1).max(16).default(3),
    })
    .prefault({}),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  audit: z.object({ limit: z.number().int().min(100).default(100_000) }).prefault({}),
  metrics: z
    .object({
      /** Bearer token /metrics asks for; without one, /metrics is public. */
      token: z.string().min(24, 'the metrics token must be at least 24 characters').optional(),
    })
    .prefault({}),
  /**
   * Where users and passwords come from, in order: a login naming a realm goes to the directory
   * listing it, any other to each in turn until one knows the user.
   */
  directories: z.array(directorySchema).min(1).default([{ name: 'local', kind: 'local', realms: [] }]),
  /** How often directory users are synchronised (records, groups, disabled and removed accounts); 0: never on a schedule. */
  directorySyncMinutes: z.number().int().min(0).max(7 * 24 * 60).default(60),
  /** Default group policy; RADIUS clients, relying parties and bridge credentials may set their own. */
  policy: policySchema.prefault({}),
  /** Seeds a demo user and prints how to try it (development mode only). */
  demo: z.boolean().default(true),
});

export type Config = z.infer<typeof configSchema>;
