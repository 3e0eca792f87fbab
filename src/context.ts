import type { Logger } from 'pino';
import type { Audit } from './core/audit.js';
import type { Clock } from './core/clock.js';
import type { Directories } from './core/directories.js';
import type { DeviceService } from './core/devices.js';
import type { ChallengeEngine } from './core/engine.js';
import type { PushService } from './core/push-service.js';
import type { LoginService } from './core/login.js';
import type { OtpChecker } from './core/otp-check.js';
import type { Passkeys } from './core/passkeys.js';
import type { SecretBox } from './core/secretbox.js';
import type { UserService } from './core/users.js';
import type { Config } from './config/schema.js';
import type { Metrics } from './observability/metrics.js';
import type { Invitations } from './core/invitations.js';
import type { OtpEnrolments } from './core/otp-enrolment.js';
import type { RecoveryCodes } from './core/recovery.js';
import type { Store } from './core/store.js';
import type { UserSessions } from './core/sessions.js';
import type { FirstFactor } from './core/first-factor.js';

/** What main.ts wires together and hands to every front and plugin. */
export interface AppContext {
  config: Config;
  log: Logger;
  clock: Clock;
  store: Store;
  box: SecretBox;
  engine: ChallengeEngine;
  users: UserService;
  otp: OtpChecker;
  audit: Audit;
  /** The configured directories (users, groups; their passwords only through firstFactor). */
  directory: Directories;
  /** The first factor every front calls: account resolution, the throttle, the bounded password check. */
  firstFactor: FirstFactor;
  login: LoginService;
  devices: DeviceService;
  push: PushService;
  /** Web Push, when on: the VAPID public key the web app subscribes with. */
  webPush?: { publicKey(): Promise<string> };
  metrics: Metrics;
  /** One-time recovery codes (the portal and OpenID Connect, never RADIUS). */
  recovery: RecoveryCodes;
  /** TOTP a user enrols themselves: switched on only once a code from it verifies. */
  otpEnrolments: OtpEnrolments;
  /** E-mailed enrolment invitations to the portal. */
  invitations: Invitations;
  /** Passkeys (WebAuthn): ceremonies, and each user's credentials; the fronts offer them when passkeys.enabled. */
  passkeys: Passkeys;
  /** Every way a user stays signed in (console, portal, OpenID Connect grants): ended together. */
  sessions: UserSessions;
  /** Each enabled front's start: readiness waits for all of them. */
  fronts: Record<string, 'starting' | 'up'>;
}
