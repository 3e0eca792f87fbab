import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Clock } from './clock.js';
import { CountersignError, badRequest, conflict, notFound } from './errors.js';
import { newToken } from './ids.js';
import type { PasskeyRecord, Store } from './store.js';

export type { AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON };

/** What the API and the pages show of a passkey: never the public key or the counter. */
export interface PasskeyInfo {
  id: string;
  name: string;
  createdAt: number;
  lastUsedAt?: number;
  deviceType: 'singleDevice' | 'multiDevice';
  backedUp: boolean;
  transports?: string[];
}

export interface PasskeyPolicy {
  /** The relying party's name, shown by the browser and the authenticator. */
  rpName: string;
  /** The public address: its origin is the only one accepted, its host is the rpID. */
  publicUrl: string;
  /** Keys the WebAuthn user handle, so it names a user without telling who (no user name in it). */
  userHandleKey: Buffer;
  /** How long a ceremony's challenge lives (5 minutes). */
  ceremonyMs?: number;
  /** A user keeps at most this many passkeys. */
  maxPerUser?: number;
}

/** RFC 8176 amr for a passkey: hwk when bound to one authenticator, swk when synced. */
export const passkeyAmr = (deviceType: PasskeyInfo['deviceType']) => (deviceType === 'multiDevice' ? 'swk' : 'hwk');

const CEREMONY_MS = 5 * 60_000;
const REG_KIND = 'passkey-reg';
const AUTH_KIND = 'passkey-auth';
const digest = (s: string) => createHash('sha256').update(s).digest('base64url');
const NAME = /^[\p{L}\p{N} ._()'’-]{1,64}$/u;

const info = (p: PasskeyRecord): PasskeyInfo => ({
  id: p.id,
  name: p.name,
  createdAt: p.createdAt,
  ...(p.lastUsedAt !== undefined ? { lastUsedAt: p.lastUsedAt } : {}),
  deviceType: p.deviceType,
  backedUp: p.backedUp,
  ...(p.transports ? { transports: p.transports } : {}),
});

/** Failures all look alike to the caller (a 4xx with words a person can act on); the reason goes to the metric. */
const refused = (code: string, message: string, status = 401) => new CountersignError(status, code, message);

/**
 * Passkeys (WebAuthn, @simplewebauthn/server): registration and authentication ceremonies
 * for one relying party, the public address. Discoverable credentials, user verification
 * required, attestation `none`. Each ceremony's challenge is kept in the store, digested,
 * single use and short-lived, so any instance can finish what another began; a use moves
 * the signature counter by compare-and-set, so a cloned authenticator with a stale counter,
 * or two assertions racing, cannot both pass.
 */
export class Passkeys extends EventEmitter<{ failure: [string] }> {
  constructor(
    private store: Store,
    private clock: Clock,
    private policy: PasskeyPolicy,
  ) {
    super();
  }

  /** Set once the server listens, when no public address is configured (development). */
  set publicUrl(url: string) {
    this.policy.publicUrl = url;
  }

  get publicUrl(): string {
    return this.policy.publicUrl;
  }

  get origin(): string {
    return new URL(this.policy.publicUrl).origin;
  }

  get rpID(): string {
    return new URL(this.policy.publicUrl).hostname;
  }

  private get ceremonyMs() {
    return this.policy.ceremonyMs ?? CEREMONY_MS;
  }

  private userHandle(user: string): Buffer {
    return createHmac('sha256', this.policy.userHandleKey).update(`passkey-user:${user}`).digest();
  }

  /** Options for navigator.credentials.create; the challenge is kept in the store, bound to the user, single use, 5 minutes. */
  async registrationOptions(user: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const u = await this.store.users.get(user);
    if (!u) throw notFound('user', user);
    const existing = await this.store.passkeys.list(user);
    if (existing.length >= (this.policy.maxPerUser ?? 20)) {
      throw conflict('too_many_passkeys', `'${user}' already has ${existing.length} passkeys; remove one first`);
    }
    const options = await generateRegistrationOptions({
      rpName: this.policy.rpName,
      rpID: this.rpID,
      userName: user,
      userDisplayName: u.displayName ?? user,
      userID: new Uint8Array(this.userHandle(user)),
      timeout: this.ceremonyMs,
      attestationType: 'none',
      // The same authenticator twice would be one factor counted as two.
      excludeCredentials: existing.map((p) => ({ id: p.id, transports: p.transports })),
      authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' },
      // ES256, EdDSA, RS256: what authenticators make.
      supportedAlgorithmIDs: [-7, -8, -257],
    });
    await this.store.tokens.put(REG_KIND, digest(options.challenge), JSON.stringify({ user }), this.ceremonyMs);
    return options;
  }

  async verifyRegistration(user: string, response: RegistrationResponseJSON, name: string): Promise<PasskeyInfo> {
    const label = name.trim();
    if (!NAME.test(label)) throw badRequest('invalid_name', 'a passkey name is 1 to 64 letters, digits, spaces or . _ - ( ) \'');
    const challenge = this.challengeOf(response);
    // Taken before anything is checked: a challenge is spent by its first answer, right or wrong.
    const raw = challenge ? await this.store.tokens.take(REG_KIND, digest(challenge)) : null;
    if (!raw || (JSON.parse(raw) as { user: string }).user !== user) {
      throw this.fail('passkey_challenge_unknown', 'this passkey registration has expired or was started for someone else; start again', 400);
    }
    let verification;
    try {
      verification = await verifyRegistrationResponse({
        response,
        expectedChallenge: challenge!,
        expectedOrigin: this.origin,
        expectedRPID: this.rpID,
        requireUserVerification: true,
        supportedAlgorithmIDs: [-7, -8, -257],
      });
    } catch (err) {
      throw this.fail('passkey_invalid', `the passkey could not be registered: ${(err as Error).message}`, 400);
    }
    if (!verification.verified) throw this.fail('passkey_invalid', 'the passkey could not be registered', 400);
    const r = verification.registrationInfo;
    const record: PasskeyRecord = {
      id: r.credential.id,
      user,
      name: label,
      publicKey: Buffer.from(r.credential.publicKey).toString('base64url'),
      counter: r.credential.counter,
      ...(r.credential.transports?.length ? { transports: r.credential.transports.slice(0, 8) } : {}),
      deviceType: r.credentialDeviceType,
      backedUp: r.credentialBackedUp,
      createdAt: this.clock.now(),
    };
    // The user may have been deleted during the ceremony: no passkey for a user that is gone.
    if (!(await this.store.users.get(user))) throw notFound('user', user);
    if (!(await this.store.passkeys.create(record))) throw conflict('passkey_exists', 'this passkey is already registered');
    return info(record);
  }

  /** user undefined: discoverable (passwordless). ticket names the stored challenge. */
  async authenticationOptions(user?: string): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; ticket: string }> {
    const mine = user === undefined ? [] : await this.store.passkeys.list(user);
    if (user !== undefined && mine.length === 0) throw this.fail('no_passkey', `'${user}' has no passkey`, 404);
    const options = await generateAuthenticationOptions({
      rpID: this.rpID,
      timeout: this.ceremonyMs,
      userVerification: 'required',
      allowCredentials: mine.map((p) => ({ id: p.id, transports: p.transports })),
    });
    const ticket = newToken(24);
    await this.store.tokens.put(AUTH_KIND, digest(ticket), JSON.stringify({ challenge: options.challenge, ...(user !== undefined ? { user } : {}) }), this.ceremonyMs);
    return { options, ticket };
  }

  /** Throws CountersignError (4xx code) on any failure; expectUser enforces the credential belongs to that user. */
  async verifyAuthentication(ticket: string, response: AuthenticationResponseJSON, expectUser?: string): Promise<{ user: string; passkey: PasskeyInfo }> {
    const raw = typeof ticket === 'string' && ticket.length <= 128 ? await this.store.tokens.take(AUTH_KIND, digest(ticket)) : null;
    if (!raw) throw this.fail('passkey_challenge_unknown', 'this passkey sign-in has expired or was already used; try again', 400);
    const stored = JSON.parse(raw) as { challenge: string; user?: string };
    const id = typeof response?.id === 'string' ? response.id : '';
    const credential = id && id.length <= 1024 ? await this.store.passkeys.get(id) : null;
    if (!credential) throw this.fail('passkey_unknown', 'this passkey is not registered here (it may have been removed)');
    // The options named this user's credentials, and the caller may name whose login this is.
    if ((stored.user !== undefined && credential.user !== stored.user) || (expectUser !== undefined && credential.user !== expectUser)) {
      throw this.fail('passkey_wrong_user', 'this passkey belongs to another account');
    }
    const handle = response.response?.userHandle;
    if (handle !== undefined && handle !== null && !this.sameHandle(handle, credential.user)) {
      throw this.fail('passkey_wrong_user', 'this passkey belongs to another account');
    }
    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: stored.challenge,
        expectedOrigin: this.origin,
        expectedRPID: this.rpID,
        credential: { id: credential.id, publicKey: new Uint8Array(Buffer.from(credential.publicKey, 'base64url')), counter: credential.counter, transports: credential.transports as never },
        requireUserVerification: true,
      });
    } catch (err) {
      const message = (err as Error).message;
      if (/counter value/i.test(message)) {
        throw this.fail('passkey_counter', 'this passkey’s signature counter went backwards: it may have been copied; it was refused');
      }
      if (/user could not be verified|user verification/i.test(message)) throw this.fail('passkey_not_verified', 'the passkey did not verify you (PIN or biometrics); it was refused');
      if (/origin/i.test(message)) throw this.fail('passkey_wrong_origin', 'this passkey answer was made for another web address; it was refused');
      throw this.fail('passkey_invalid', `the passkey answer was refused: ${message}`);
    }
    const a = verification.authenticationInfo;
    if (!verification.verified || !a.userVerified) throw this.fail('passkey_invalid', 'the passkey answer was refused');
    if (!(await this.store.passkeys.recordUse(credential.id, credential.counter, a.newCounter, this.clock.now(), a.credentialBackedUp))) {
      throw this.fail('passkey_counter', 'this passkey was used twice at once; it was refused', 409);
    }
    return { user: credential.user, passkey: info({ ...credential, counter: a.newCounter, lastUsedAt: this.clock.now(), backedUp: a.credentialBackedUp }) };
  }

  async list(user: string): Promise<PasskeyInfo[]> {
    return (await this.store.passkeys.list(user)).map(info);
  }

  /** True when the user has a passkey: whether a login may offer one. */
  async has(user: string): Promise<boolean> {
    return (await this.store.passkeys.list(user)).length > 0;
  }

  async remove(user: string, id: string): Promise<boolean> {
    return this.store.passkeys.delete(user, id);
  }

  private sameHandle(handle: string, user: string): boolean {
    const got = Buffer.from(handle, 'base64url');
    const want = this.userHandle(user);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private challengeOf(response: RegistrationResponseJSON): string | null {
    try {
      const data = JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown };
      return typeof data.challenge === 'string' && data.challenge.length <= 256 ? data.challenge : null;
    } catch {
      return null;
    }
  }

  private fail(code: string, message: string, status = 401): CountersignError {
    this.emit('failure', code);
    return refused(code, message, status);
  }
}
