import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { hkdfSync, randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import createLocalDirectory from '../plugins/directory-local/index.js';
import createLdapDirectory from '../plugins/directory-ldap/index.js';
import { Directories } from './core/directories.js';
import { UserSessions } from './core/sessions.js';
import { CheckGate } from './core/check-gate.js';
import { FirstFactor } from './core/first-factor.js';
import { FirstFactorThrottle } from './core/throttle.js';
import createFcmTransport from '../plugins/push-fcm/index.js';
import createApnsTransport from '../plugins/push-apns/index.js';
import createWebPushTransport, { storedVapidKeys, type WebPushTransport } from '../plugins/push-webpush/index.js';
import { Audit } from './core/audit.js';
import createSmtpMailer from '../plugins/mail-smtp/index.js';
import { Invitations } from './core/invitations.js';
import { LogMailer, NoMailer, type Mailer } from './core/mail.js';
import { OtpEnrolments } from './core/otp-enrolment.js';
import { RecoveryCodes } from './core/recovery.js';
import { mountAccount } from './fronts/account/index.js';
import { StoreUnavailableError } from './core/errors.js';
import { systemClock, type Clock } from './core/clock.js';
import { DeviceService } from './core/devices.js';
import type { PushEndpointPolicy } from './core/push-endpoints.js';
import { ChallengeEngine } from './core/engine.js';
import type { Platform, PushTransport } from './core/push.js';
import { PushService } from './core/push-service.js';
import { LoginService } from './core/login.js';
import { Passkeys } from './core/passkeys.js';
import { mountWebauthn } from './fronts/web/webauthn/index.js';
import { OtpChecker } from './core/otp-check.js';
import { SecretBox } from './core/secretbox.js';
import { UserService } from './core/users.js';
import type { Config } from './config/schema.js';
import type { AppContext } from './context.js';
import { mountAdminApi, type Registries } from './fronts/admin/index.js';
import { mountDeviceApi } from './fronts/device/index.js';
import { mountApp } from './fronts/app/index.js';
import { mountOidc } from './fronts/oidc/index.js';
import { mountDemoApp } from './fronts/demo-rp/index.js';
import { OidcClients } from './fronts/oidc/clients.js';
import { BridgeCredentials } from './fronts/bridge/credentials.js';
import { mountBridgeApi } from './fronts/bridge/index.js';
import { mountConsole } from './fronts/console/index.js';
import { BrowserSessions } from './fronts/web/sessions.js';
import { RadiusClients } from './fronts/radius/clients.js';
import { RadiusFront } from './fronts/radius/server.js';
import { createHttpApp } from './http/server.js';
import { demoLeftovers } from './demo.js';
import { Metrics } from './observability/metrics.js';
import { MemoryStore } from './store/memory/index.js';
import { RedisStore } from './store/redis/index.js';
import type { Store } from './core/store.js';

/** A start that cannot go on: the message names what failed and the setting to look at. */
export class StartError extends Error {
  override name = 'StartError';
}

export interface Running {
  url: string;
  /** The OpenID Connect issuer, when the front is enabled. */
  issuer?: string;
  /** The UDP port the RADIUS front listens on, when enabled. */
  radiusPort?: number;
  /** The UDP port for RADIUS accounting and Status-Server, when accounting is on. */
  radiusAccountingPort?: number;
  /** The TCP port RadSec (RADIUS over TLS) listens on, when radius.radsec is enabled. */
  radsecPort?: number;
  adminToken: string;
  ctx: AppContext;
  /** The fronts' client registries (RADIUS clients, relying parties, bridge credentials). */
  registries: Registries;
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  log?: Logger;
  /** Push transports to use instead of those the config describes. */
  pushTransports?: PushTransport[];
}

/** The VAPID subject when none is set: the server's https address, else a placeholder contact. */
function webPushSubject(config: Config, log: Logger): string {
  const { subject } = config.push.webpush;
  if (subject) return subject;
  const url = config.http.publicUrl;
  if (url?.startsWith('https://')) return url;
  if (config.mode === 'production') log.warn('push.webpush.subject is not set and http.publicUrl is not https: Web Push uses mailto:admin@localhost');
  return 'mailto:admin@localhost';
}

/** The push plugins the config names, one per platform. Web Push keeps generated VAPID keys sealed in the store. */
function configuredTransports(config: Config, store: Store, box: SecretBox, log: Logger): PushTransport[] {
  const t: PushTransport[] = [];
  const fcm = config.push.fcm;
  if (fcm) {
    t.push(
      createFcmTransport({
        projectId: fcm.projectId,
        serviceAccount: fcm.serviceAccountFile ?? process.env.GOOGLE_APPLICATION_CREDENTIALS,
        endpoint: fcm.endpoint,
        timeoutMs: config.push.sendTimeoutMs,
      }),
    );
  }
  const apns = config.push.apns;
  if (apns) {
    t.push(
      createApnsTransport({
        token: { key: apns.keyFile, keyId: apns.keyId, teamId: apns.teamId },
        production: apns.production,
        topic: apns.topic,
        address: apns.address,
        timeoutMs: config.push.sendTimeoutMs,
      }),
    );
  }
  const webpush = config.push.webpush;
  if (webpush.enabled) {
    t.push(
      createWebPushTransport({
        subject: webPushSubject(config, log),
        vapid: webpush.publicKey && webpush.privateKey ? { publicKey: webpush.publicKey, privateKey: webpush.privateKey } : storedVapidKeys(store.kv, box),
        timeoutMs: config.push.sendTimeoutMs,
        endpoints: webPushEndpoints(config),
      }),
    );
  }
  return t;
}

/** Which Web Push endpoints enrolment accepts and the transport connects to: one policy for both. */
const webPushEndpoints = (config: Config): PushEndpointPolicy => ({
  allowedHosts: config.push.webpush.allowedHosts,
  allowPrivateAddresses: config.push.webpush.allowPrivateAddresses,
});

/** A key for one purpose, derived from the secret key (HKDF), so no two purposes share one. */
const derivedSecret = (secretKey: string, label: string) =>
  Buffer.from(hkdfSync('sha256', Buffer.from(secretKey, 'base64'), Buffer.alloc(0), label, 32));

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
    return new RedisStore({ ...config.store.redis, auditLimit: config.audit.limit, auditActivityLimit: config.audit.activityLimit });
  }
  return new MemoryStore({ clock, auditLimit: config.audit.limit, auditActivityLimit: config.audit.activityLimit });
}

/** Wires config → store → engine → plugins → fronts, and listens. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<Running> {
  const log = opts.log ?? pino({ level: config.log.level, base: { service: 'countersign' } });
  const clock = opts.clock ?? systemClock;
  const secretKey = config.secretKey ?? devSecret(config, 'secret-key', () => randomBytes(32).toString('base64'), log, 'a secret key');
  config.secretKey = secretKey; // the effective key, for everything derived from it
  const adminToken = config.admin.token ?? devSecret(config, 'admin-token', () => randomBytes(24).toString('base64url'), log, 'an admin token');

  const store = createStore(config, clock);
  const scrypt = { N: config.passwords.scryptN, r: 8, p: config.passwords.scryptP };
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
    scrypt,
  });
  const otp = new OtpChecker(store, box, clock, {
    totpWindow: config.otp.totpWindow,
    hotpLookahead: config.otp.hotpLookahead,
    maxFailures: config.otp.maxFailures,
    lockMs: config.otp.lockSeconds * 1000,
    maxLockMs: config.otp.maxLockSeconds * 1000,
  });
  const audit = new Audit(store, log.child({ component: 'audit' }), clock);
  const directory = new Directories(
    config.directories.map((d) =>
      d.kind === 'local'
        ? createLocalDirectory({ store, scrypt, name: d.name, realms: d.realms })
        : createLdapDirectory(d, { log: log.child({ component: 'directory', directory: d.name }) }),
    ),
    store,
    clock,
    log.child({ component: 'directories' }),
  );
  const devices = new DeviceService(store, box, clock, {
    enrolmentMs: config.push.enrolmentSeconds * 1000,
    requestMaxAgeMs: config.push.requestMaxAgeSeconds * 1000,
    publicUrl: config.http.publicUrl ?? '',
    webPushEndpoints: webPushEndpoints(config),
    maxDevicesPerUser: config.push.maxDevicesPerUser,
  });
  let transports: PushTransport[];
  try {
    transports = opts.pushTransports ?? configuredTransports(config, store, box, log);
  } catch (err) {
    await store.close();
    throw new StartError(`a push transport cannot start: ${(err as Error).message}`);
  }
  const webPush = transports.find((t): t is WebPushTransport => t.platform === 'webpush' && 'publicKey' in t);
  const push = new PushService(
    store,
    engine,
    devices,
    audit,
    clock,
    log.child({ component: 'push' }),
    new Map<Platform, PushTransport>(transports.map((t) => [t.platform, t])),
    {
      numberMatching: config.push.numberMatching,
      rateLimit: { count: config.push.rateLimit.count, windowMs: config.push.rateLimit.windowSeconds * 1000 },
      rejectLockout: {
        count: config.push.rejectLockout.count,
        windowMs: config.push.rejectLockout.windowSeconds * 1000,
        lockMs: config.push.rejectLockout.lockSeconds * 1000,
      },
      notMeMuteMs: config.push.notMeMuteSeconds * 1000,
      sendTimeoutMs: config.push.sendTimeoutMs,
    },
  );
  const ff = config.firstFactor;
  const firstFactor = new FirstFactor(
    directory,
    new FirstFactorThrottle(store, {
      perSource: ff.perSourceFailures,
      perAccount: ff.perAccountFailures,
      windowMs: ff.windowMinutes * 60_000,
      knownMs: ff.knownSourceDays * 86_400_000,
      perAddressPerMinute: ff.perAddressFailuresPerMinute,
      sharedPerMinute: ff.sharedSourceFailuresPerMinute,
      maxDelayMs: ff.knownSourceMaxDelaySeconds * 1000,
    }),
    new CheckGate({ concurrent: ff.concurrentChecks, queued: ff.queuedChecks, perSource: ff.checksPerAddress, sharedPerSource: ff.checksPerSharedSource }),
    log.child({ component: 'first-factor' }),
  );
  const login = new LoginService(engine, users, otp, directory, firstFactor, push, config.policy);
  const passkeys = new Passkeys(store, clock, {
    rpName: config.passkeys.rpName,
    publicUrl: config.http.publicUrl ?? '',
    userHandleKey: derivedSecret(secretKey, 'passkey-user-handle'),
  });
  if (config.passkeys.enabled) login.usePasskeys(passkeys);
  const metrics = new Metrics(engine, push);
  const radiusClients = new RadiusClients(store, box, config.radius.clients, config.radius.upstreams.map((u) => u.name));
  const oidcClients = new OidcClients(store, box, config.oidc.clients);
  const registries: Registries = { radiusClients, oidcClients, bridgeCredentials: new BridgeCredentials(store) };
  // Development without SMTP logs each invitation's link; production never puts a live link in a log.
  const mailer: Mailer = config.mail.smtp
    ? createSmtpMailer({ ...config.mail.smtp, from: config.mail.from })
    : config.mode === 'production'
      ? new NoMailer()
      : new LogMailer(log.child({ component: 'mail' }));
  if (!config.mail.smtp && config.mode === 'production') log.warn('mail.smtp is not set: invitations cannot be sent');
  const invitations = new Invitations(store, clock, mailer, {
    ttlMs: config.invitations.ttlSeconds * 1000,
    publicUrl: () => devices.publicUrl,
    issuer: config.otp.issuer,
    templates: config.mail.templates,
  });
  const recovery = new RecoveryCodes(store, derivedSecret(secretKey, 'recovery-codes'), clock);
  const otpEnrolments = new OtpEnrolments(store, box, clock, {
    issuer: config.otp.issuer,
    totpWindow: config.otp.totpWindow,
    defaults: { type: 'totp', algorithm: config.otp.algorithm, digits: config.otp.digits, period: config.otp.period },
  });
  const ctx: AppContext = {
    config, log, clock, store, box, engine, users, otp, audit, directory, login, devices, push, metrics, webPush,
    recovery, otpEnrolments, invitations, passkeys, sessions: new UserSessions(clock), firstFactor,
    fronts: { http: 'starting', ...(config.oidc.enabled ? { oidc: 'starting' } : {}), ...(config.radius.enabled ? { radius: 'starting' } : {}) },
  };

  engine.on('resolved', (c) => void audit.login(c));
  engine.on('error', (err) => log.error({ err }, 'engine background task failed'));
  firstFactor.on('outcome', (front, outcome) => metrics.firstFactor.inc({ front, outcome }));
  login.on('otpFailure', (reason, failure) => {
    metrics.otpFailures.inc({ reason });
    void audit.otpFailure(failure);
  });
  login.on('pushFailed', (err) => log.error({ err }, 'push dispatch failed'));
  passkeys.on('failure', (reason) => metrics.passkeyFailures.inc({ reason }));

  // Redis may be down at start: serve anyway (readyz says not ready, logins are denied).
  // A Redis Cluster client refuses commands until it has the slot map: give it a moment.
  const connected = store instanceof RedisStore ? store.connected(5000) : Promise.resolve(true);
  const subscribed = engine.start().then(
    () => true,
    (err) => {
      log.error({ err }, 'could not subscribe to challenge outcomes');
      return false;
    },
  );
  await Promise.race([Promise.all([connected, subscribed]), new Promise((r) => setTimeout(r, 5000).unref())]);

  let oidc: ReturnType<typeof mountOidc> | undefined;
  let deviceApi: ReturnType<typeof mountDeviceApi> | undefined;
  const app = createHttpApp(ctx, (a) => {
    const consoleSessions = new BrowserSessions(store);
    mountAdminApi(a, ctx, adminToken, consoleSessions, registries);
    mountConsole(a, ctx, consoleSessions);
    mountWebauthn(a); // /webauthn.js, the passkey ceremonies' browser module
    if (config.account.enabled) mountAccount(a, ctx);
    deviceApi = mountDeviceApi(a, ctx);
    mountApp(a, ctx); // the web authenticator (/app/), on the device API
    if (config.bridge.enabled) mountBridgeApi(a, ctx, registries.bridgeCredentials);
    if (config.oidc.enabled) oidc = mountOidc(a, ctx, oidcClients);
    // The demo relying party (/demo-app/): development mode with the demo on only; seedDemo makes it ready.
    if (config.oidc.enabled && config.mode === 'development' && config.demo) mountDemoApp(a, ctx);
  });
  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new StartError(
          `cannot listen for HTTP on ${config.http.host}:${config.http.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message} (set http.port, COUNTERSIGN_HTTP_PORT)`,
        ),
      ),
    );
    server.listen(config.http.port, config.http.host, () => resolve());
  }).catch(async (err: unknown) => {
    await engine.stop();
    await store.close();
    throw err;
  });
  // Behind a load balancer, an idle connection must be closed by the balancer, never by us
  // first: Node's 5 s default races the balancer's reuse of the connection and shows up as
  // resets and 502s. Above the usual 60 s balancer idle timeout.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`;
  devices.publicUrl ||= url;
  passkeys.publicUrl ||= url;
  if (config.passkeys.enabled && isIP(passkeys.rpID.replace(/^\[|\]$/g, ''))) {
    // Browsers refuse an IP address as a WebAuthn relying party ID.
    log.warn({ publicUrl: passkeys.publicUrl }, 'passkeys need http.publicUrl with a host name (e.g. http://localhost:PORT in development); they cannot be used on an IP address');
  }

  let radius: RadiusFront | undefined;
  let radiusPort: number | undefined;
  let radiusAccountingPort: number | undefined;
  let radsecPort: number | undefined;
  let closing: Promise<void> | undefined;
  let stopSync = () => {};
  const close = () =>
    (closing ??= (async () => {
      // Waiters are told first, so held requests answer "denied" rather than hang.
      await engine.stop();
      await radius?.stop();
      deviceApi?.close();
      server.closeIdleConnections();
      const done = new Promise<void>((r) => server.close(() => r()));
      const force = setTimeout(() => server.closeAllConnections(), 2000);
      await done;
      clearTimeout(force);
      await Promise.all(transports.map((t) => t.close().catch(() => {})));
      await mailer.close().catch(() => {});
      stopSync();
      await directory.close();
      await store.close();
      log.info('countersign stopped');
    })());

  // A front that cannot start stops the whole start: half a server (HTTP up, RADIUS or
  // OpenID Connect down) would look healthy to a load balancer and fail logins.
  try {
    if (oidc) {
      const front = oidc;
      const startOidc = () => front.start(config.http.publicUrl ?? url).then(() => void (ctx.fronts.oidc = 'up'));
      await startOidc().catch((err: unknown) => {
        if (!(err instanceof StoreUnavailableError)) throw new StartError(`OpenID Connect cannot start: ${(err as Error).message}`);
        // Production keeps its signing keys in the store: wait for it, as logins do (not ready meanwhile).
        log.warn('OpenID Connect waits for the store, which holds its signing keys');
        const retry = () => {
          if (closing) return;
          startOidc().catch((again: unknown) => {
            if (!(again instanceof StoreUnavailableError)) log.error({ err: again }, 'OpenID Connect cannot start');
            setTimeout(retry, 2000).unref();
          });
        };
        setTimeout(retry, 2000).unref();
      });
    }
    if (config.radius.enabled) {
      radius = new RadiusFront(ctx, radiusClients);
      try {
        radiusPort = (await radius.start(config.radius.host, config.radius.port)).port;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new StartError(
          `cannot listen for RADIUS on ${config.radius.host}:${config.radius.port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message} (set radius.port, COUNTERSIGN_RADIUS_PORT, or radius.enabled false)`,
        );
      }
      if (radius.accounting) {
        try {
          radiusAccountingPort = (await radius.accounting.listen(config.radius.host, config.radius.accountingPort)).port;
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          throw new StartError(
            `cannot listen for RADIUS accounting on ${config.radius.host}:${config.radius.accountingPort}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message} (set radius.accountingPort, COUNTERSIGN_RADIUS_ACCOUNTING_PORT, or radius.accountingEnabled false)`,
          );
        }
      }
      if (radius.radsec) {
        const { host, port } = config.radius.radsec;
        try {
          radsecPort = (await radius.radsec.listen(host, port)).port;
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          throw new StartError(
            `cannot listen for RadSec on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message} (set radius.radsec.port, COUNTERSIGN_RADIUS_RADSEC_PORT, or radius.radsec.enabled false)`,
          );
        }
      }
      ctx.fronts.radius = 'up';
      log.info({ host: config.radius.host, port: radiusPort, accountingPort: radiusAccountingPort, radsecPort, clients: radiusClients.list().map((c) => c.name) }, 'radius listening');
    }
    if (config.mode === 'production') {
      // Only a store that answers can be checked; a new version never seeds one that is shared.
      const leftovers = await demoLeftovers(ctx, registries).catch((err: unknown) => {
        log.warn({ err }, 'could not check the store for development demo records');
        return [];
      });
      if (leftovers.length) {
        throw new StartError(`production mode refuses to serve while development demo records with published passwords are in the store: ${leftovers.join('; ')}`);
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  ctx.fronts.http = 'up';
  stopSync = directory.startSchedule(config.directorySyncMinutes * 60_000, (err) => log.error({ err }, 'directory sync failed'));
  log.info({ url, store: store.kind, mode: config.mode, push: transports.map((t) => t.platform), fronts: ctx.fronts }, 'countersign listening');

  const issuer = oidc?.provider?.issuer;
  return { url, issuer, radiusPort, radiusAccountingPort, radsecPort, adminToken, ctx, registries, close };
}
