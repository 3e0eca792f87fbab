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
    /** A user with no factor yet may enrol one while signing in through OpenID Connect (on), or is refused (off, the default). */
    enrolAtSignIn: z.enum(['off', 'on']).optional(),
    /** Only members of one of these groups may enrol at sign-in (empty or absent: everyone the policy lets in). */
    enrolGroups: z.array(z.string().min(1)).optional(),
    /** Enrolment at sign-in is offered this many days after the user's record was made (default 14). */
    enrolGraceDays: z.number().int().min(0).max(3650).optional(),
    /** …and for at most this many sign-ins without a factor (default 5). */
    enrolGraceSignIns: z.number().int().min(0).max(1000).optional(),
  })
  .strict();

/** How a RadSec client's certificate is recognised: by its SHA-256 fingerprint, or by a name in it. */
export const radsecClientSchema = z
  .object({
    /** "sha256:" and the hex SHA-256 of the DER certificate (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints it. */
    fingerprints: z.array(z.string().regex(/^sha256:([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/, 'a fingerprint is sha256: and 64 hex digits')).default([]),
    /** Exact names (case-insensitive) matched against the certificate's subject CN and its DNS subjectAltNames. */
    names: z.array(z.string().min(1).max(253)).default([]),
  })
  .strict()
  .refine((r) => r.fingerprints.length + r.names.length > 0, 'a RadSec client needs at least one certificate fingerprint or name');

/** A NAS (VPN concentrator, firewall, proxy) allowed to send Access-Requests. */
export const radiusClientSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a client name is 1-64 letters, digits, . _ -'),
    /** An address or CIDR block; requests from elsewhere are dropped. */
    address: z.string().superRefine((v, c) => {
      const problem = addressBlockProblem(v);
      if (problem) c.addIssue({ code: 'custom', message: problem });
    }),
    /** The UDP shared secret; a RadSec client (radsec below) needs none: RadSec's is "radsec" (RFC 6614). */
    secret: z.string().max(128).default(''),
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
    /** The name of a radius.upstreams entry that checks the first factor (PAP, CHAP, MS-CHAP) instead of the directories. */
    upstream: z.string().min(1).optional(),
    /**
     * A RadSec client (RADIUS over TLS, radius.radsec): identified by its certificate, which must
     * chain to radius.radsec.caFile and match one of these, from a source inside `address`. Such a
     * client is matched on the RadSec listener only, never for UDP.
     */
    radsec: radsecClientSchema.optional(),
  })
  .strict()
  .refine((c) => c.radsec !== undefined || c.secret.length >= 8, { message: 'a RADIUS shared secret must be at least 8 characters', path: ['secret'] })
  .refine((c) => !(c.upstream && c.secondFactorOnly), {
    message: 'a client with secondFactorOnly checks no first factor, so it cannot name an upstream',
    path: ['upstream'],
  });

export type RadiusClientConfig = z.infer<typeof radiusClientSchema>;

/**
 * An upstream RADIUS server (Windows NPS, FreeRADIUS) that checks the first factor for the
 * clients naming it: Countersign forwards the credentials, then runs the second factor.
 */
export const radiusUpstreamSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'an upstream name is 1-64 letters, digits, . _ -'),
    /** An IP address: answers are matched to the address they come from. */
    host: z.string().refine((h) => isIP(h) !== 0, 'the upstream host is an IPv4 or IPv6 address'),
    port: port.default(1812),
    secret: z.string().min(8, 'a RADIUS shared secret must be at least 8 characters').max(128),
    /** How long to wait for an answer before sending the request again. */
    timeoutMs: z.number().int().min(100).max(30_000).default(3000),
    /** Retransmissions after the first send (the same packet, RFC 5080). */
    retries: z.number().int().min(0).max(5).default(2),
    /** Answers without a valid Message-Authenticator are ignored (BlastRADIUS); off only for old servers. */
    requireMessageAuthenticator: z.boolean().default(true),
  })
  .strict();

export type RadiusUpstreamConfig = z.infer<typeof radiusUpstreamSchema>;

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

/**
 * Upstream names are unique, every client's upstream exists, and an upstream answers (all
 * retransmissions included) within the lease that keeps a NAS's retransmits from starting over.
 */
function checkUpstreams(
  r: { clients: RadiusClientConfig[]; upstreams: RadiusUpstreamConfig[]; processingLeaseSeconds: number },
  ctx: z.RefinementCtx,
): void {
  const names = new Set<string>();
  r.upstreams.forEach((u, i) => {
    if (names.has(u.name)) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `upstream '${u.name}' is defined twice` });
    names.add(u.name);
    if (u.timeoutMs * (u.retries + 1) >= r.processingLeaseSeconds * 1000) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreams', i, 'timeoutMs'],
        message: `timeoutMs × (retries + 1) must be below radius.processingLeaseSeconds (${r.processingLeaseSeconds} s)`,
      });
    }
  });
  r.clients.forEach((c, i) => {
    if (c.upstream !== undefined && !names.has(c.upstream)) {
      const known = [...names].join(', ') || 'none is defined';
      ctx.addIssue({ code: 'custom', path: ['clients', i, 'upstream'], message: `client '${c.name}' names upstream '${c.upstream}', which radius.upstreams does not define (${known})` });
    }
  });
}

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
      /** Upstream RADIUS servers that check the first factor for the clients naming them (radius.clients[].upstream). */
      upstreams: z.array(radiusUpstreamSchema).default([]),
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
      /** RadSec (RFC 6614): RADIUS over TLS with mutual certificates, for clients with a radsec part. */
      radsec: z
        .object({
          enabled: z.boolean().default(false),
          host: z.string().default('::'),
          port: port.default(2083),
          /** This server's certificate chain and key (PEM files). */
          certFile: z.string().optional(),
          keyFile: z.string().optional(),
          /** The CA certificates (PEM) that client certificates must chain to. */
          caFile: z.string().optional(),
          /**
           * A connection that has not finished its TLS handshake by then is closed, counted from
           * the TCP connection (a peer that sends nothing, or a byte at a time, is closed alike).
           */
          handshakeTimeoutSeconds: z.number().int().min(1).max(120).default(5),
          /** A connection with no traffic and no request in progress for this long is closed. */
          idleTimeoutSeconds: z.number().int().min(5).max(86_400).default(300),
          /** Open connections per RadSec client; one more is closed at once. */
          maxConnectionsPerClient: z.number().int().min(1).max(1024).default(16),
          /** Requests one connection may have in progress (push-wait holds one until the phone answers); more are dropped. */
          maxRequestsPerConnection: z.number().int().min(1).max(256).default(256),
          /** Connections of all clients, handshakes included. */
          maxConnections: z.number().int().min(1).max(100_000).default(1024),
          /**
           * Connections from one source address still in their TLS handshake (no certificate
           * shown yet); one more from that address is closed at once. A NAS needs one at a time.
           */
          maxHandshakesPerAddress: z.number().int().min(1).max(1024).default(4),
          /**
           * Connections still in their TLS handshake, from all addresses; unset, a quarter of
           * maxConnections. One more closes the oldest of them, so a NAS, whose handshake takes
           * a round trip or two, gets through connections that never finish theirs.
           */
          maxHandshakes: z.number().int().min(1).max(100_000).optional(),
        })
        .refine((r) => !r.enabled || (r.certFile && r.keyFile && r.caFile), 'radius.radsec.enabled needs certFile, keyFile and caFile')
        .refine((r) => r.maxHandshakes === undefined || r.maxHandshakes <= r.maxConnections, {
          message: 'radius.radsec.maxHandshakes cannot be more than maxConnections',
          path: ['maxHandshakes'],
        })
        .prefault({}),
    })
    .superRefine((r, ctx) => checkUpstreams(r, ctx))
    .prefault({}),
  bridge: z
    .object({
      /** The Windows logon bridge and the privacyIDEA-compatible /validate endpoints. */
      enabled: z.boolean().default(true),
      /**
       * Servers that call the privacyIDEA-compatible endpoints for their users (privacyIDEA's
       * FreeRADIUS plugin, Keycloak and ADFS providers), as addresses or CIDR blocks: their
       * `client` parameter (the end user's address) is believed, so the first-factor throttle
       * keys on the user's address, not on the server's. A caller with a bridge credential is
       * trusted the same way. Without `client`, such a caller speaks for many users.
       */
      trustedCallers: z
        .array(
          z.string().superRefine((v, c) => {
            const problem = addressBlockProblem(v);
            if (problem) c.addIssue({ code: 'custom', message: problem });
          }),
        )
        .default([]),
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
      /**
       * Authorization and sign-out requests one address may send per minute: anyone may send
       * them, and each makes the provider keep a record for minutes (429 past it).
       */
      authorizationsPerMinute: z.number().int().min(1).max(100_000).default(60),
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
  passkeys: z
    .object({
      /** Passkeys (WebAuthn) as a factor at the OpenID Connect pages and the console; off hides them everywhere. */
      enabled: z.boolean().default(true),
      /** The relying party's name the browser and authenticator show; bound to http.publicUrl (its host is the rpID). */
      rpName: z.string().min(1).max(64).default('Countersign'),
      /** "Sign in with a passkey" without a password (the passkey with user verification is both factors). */
      passwordless: z.boolean().default(true),
      /** Passwordless sign-ins (options and answers together) one address may start per minute. */
      perIpPerMinute: z.number().int().min(1).max(10_000).default(30),
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
      /**
       * Devices one user may have enrolled (phones and browsers, stale ones too); enrolling one
       * more is refused until one is removed. Bounds what one sign-in fans out to.
       */
      maxDevicesPerUser: z.number().int().min(1).max(100).default(10),
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
          /**
           * When set, subscription endpoints must name one of these hosts: a name
           * ("fcm.googleapis.com") or "*." and a suffix for any name below it
           * ("*.push.services.mozilla.com", "*.notify.windows.com"). Checked at enrolment and
           * before every send. Absent: any host whose addresses are public.
           */
          allowedHosts: z
            .array(
              z
                .string()
                .max(253)
                .regex(
                  /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/,
                  'an allowed host is a DNS name, or *. and a suffix (*.push.services.mozilla.com)',
                ),
            )
            .min(1, 'push.webpush.allowedHosts lists at least one host; to turn Web Push off set push.webpush.enabled: false')
            .optional(),
          /**
           * Endpoints on loopback, private (RFC 1918, fc00::/7) and shared (100.64/10) addresses
           * are accepted, and http: on loopback: a push service inside the network, or the test
           * suite's local one. Link-local, cloud metadata, unspecified and multicast addresses are
           * refused even then. Off: only public addresses, in every mode.
           */
          allowPrivateAddresses: z.boolean().default(false),
        })
        .refine((w) => (w.publicKey === undefined) === (w.privateKey === undefined), 'push.webpush needs both publicKey and privateKey, or neither')
        .prefault({}),
    })
    .prefault({}),
  /**
   * The first factor (src/core/first-factor.ts), the same for every front: the throttle of failed
   * passwords and the bound on password checks running at once. Failures count per account
   * (realm and case folded) across all fronts, per account and source, and per source address.
   */
  firstFactor: z
    .object({
      /** Failed passwords for one account from one source before that source waits out the window; a source that signed the account in before is slowed instead. */
      perSourceFailures: z.number().int().min(1).max(10_000).default(10),
      /** Failed passwords for one account from all sources before sources that never signed it in wait out the window. */
      perAccountFailures: z.number().int().min(1).max(100_000).default(100),
      windowMinutes: z.number().int().min(1).max(24 * 60).default(15),
      /** How long a source that signed an account in stays its usual place (never held, served first). */
      knownSourceDays: z.number().int().min(1).max(365).default(30),
      /** The most a usual place is slowed per check past perSourceFailures (1 s, doubled per further failure). */
      knownSourceMaxDelaySeconds: z.number().int().min(1).max(60).default(8),
      /** Failed passwords from one source address (any account) in a minute before it waits the minute. */
      perAddressFailuresPerMinute: z.number().int().min(1).max(100_000).default(10),
      /** The same for a source that speaks for many users: a NAS without Calling-Station-Id, a trusted privacyIDEA caller without `client`. */
      sharedSourceFailuresPerMinute: z.number().int().min(1).max(1_000_000).default(300),
      /** Password checks (scrypt, or a directory bind) running at once in one process. */
      concurrentChecks: z.number().int().min(1).max(256).default(4),
      /** Checks waiting for a slot before more are refused at once (503). */
      queuedChecks: z.number().int().min(0).max(10_000).default(256),
      /** Checks one source address may have running or waiting (429 beyond); a usual place is not bound by it. */
      checksPerAddress: z.number().int().min(1).max(256).default(2),
      /** The same for a source that speaks for many users (a busy NAS sends many at once: it may fill half the line). */
      checksPerSharedSource: z.number().int().min(1).max(10_000).default(128),
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
  /**
   * The audit in the store is two streams, each trimmed at its own length (every event is
   * also logged). What goes where: docs/security.md.
   */
  audit: z
    .object({
      /** Security events kept: logins, wrong codes, fraud reports, administrators' and factor changes. */
      limit: z.number().int().min(100).default(100_000),
      /** Activity events kept: RADIUS per-packet and accounting events, portal enrolment links, device renames. */
      activityLimit: z.number().int().min(100).default(100_000),
    })
    .prefault({}),
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
  /** The self-service portal at /account/ (src/fronts/account): users manage their own factors. */
  account: z
    .object({
      enabled: z.boolean().default(true),
    })
    .prefault({}),
  /** E-mailed enrolment invitations (src/core/invitations.ts): single use, expiring. */
  invitations: z
    .object({
      /** How long an invitation link works (once). */
      ttlSeconds: z.number().int().min(60).max(30 * 86_400).default(7 * 86_400),
    })
    .prefault({}),
  /** Outgoing mail (plugins/mail-smtp). Without mail.smtp, development logs each mail's link; production refuses to invite. */
  mail: z
    .object({
      /** The sender: an address, or "Name <address>". */
      from: z.string().min(3).max(256).default('Countersign <countersign@localhost>'),
      smtp: z
        .object({
          host: z.string().min(1),
          port: port.default(587),
          /** starttls: upgrade the connection and refuse a server that cannot; tls: TLS from the start (port 465); none: plain, for a relay on this host only. */
          security: z.enum(['starttls', 'tls', 'none']).default('starttls'),
          user: z.string().min(1).optional(),
          password: z.string().min(1).optional(),
          /** CA certificates (PEM) that sign the server's certificate, when not a public CA. */
          caFile: z.string().optional(),
          timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
        })
        .strict()
        .refine((s) => (s.user === undefined) === (s.password === undefined), 'mail.smtp needs both user and password, or neither')
        .optional(),
      /** Mail texts; {{name}}, {{displayName}}, {{link}}, {{expires}} and {{issuer}} are filled in. */
      templates: z
        .object({
          invitationSubject: z.string().min(1).max(200).default('Set up sign-in confirmation for {{issuer}}'),
          invitationText: z
            .string()
            .min(1)
            .max(10_000)
            .default(
              'Hello {{displayName}},\n\nyou are invited to set up a second factor for {{issuer}} (your user name: {{name}}).\n\nOpen this link, sign in with your password, and follow the steps:\n\n{{link}}\n\nThe link works once and until {{expires}}. If you did not expect this mail, ignore it.\n',
            ),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Seeds a demo user and prints how to try it (development mode only). */
  demo: z.boolean().default(true),
});

export type Config = z.infer<typeof configSchema>;
