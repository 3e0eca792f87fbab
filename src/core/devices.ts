import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, jwtVerify, errors as joseErrors, type JWTPayload } from 'jose';
import type { Clock } from './clock.js';
import { CountersignError, badRequest, notFound } from './errors.js';
import { newToken } from './ids.js';
import type { Platform } from './push.js';
import { describeRefusal, endpointHost, refusedSubscriptionEndpoint, type PushEndpointPolicy } from './push-endpoints.js';
import type { SecretBox } from './secretbox.js';
import type { DeviceRecord, Store } from './store.js';

export interface DevicePolicy {
  enrolmentMs: number;
  requestMaxAgeMs: number;
  /** Base URL phones use to reach this server. */
  publicUrl: string;
  /** Which Web Push endpoints a subscription may name (push.webpush.allowedHosts, allowPrivateAddresses). */
  webPushEndpoints: PushEndpointPolicy;
  /** Devices one user may have (push.maxDevicesPerUser). */
  maxDevicesPerUser: number;
}

export interface EnrolmentLink {
  /** For the native apps: countersign://enrol?server=…&token=…&user=… */
  uri: string;
  /** For the web app: <publicUrl>/app/#enrol=<the same query string> */
  appUrl: string;
  expiresAt: number;
}

export interface EnrolInput {
  token: string;
  platform: Platform;
  pushToken?: string;
  publicKey: Record<string, unknown>;
  name: string;
  protected: boolean;
}

/** What the API shows of a device: never the key. */
export type DeviceView = Omit<DeviceRecord, 'publicKey' | 'pushToken'> & { push: boolean };

/** Every signed device request names one of these in its JWS `typ`. */
export type DeviceRequestType = 'answer' | 'poll' | 'update';

const digest = (token: string) => createHash('sha256').update(token).digest('base64url');
/** An enrolment link's stored value: its user, and when it runs out (so a refused enrolment can put it back). */
function linkValue(raw: string): { user: string; expiresAt?: number } {
  try {
    const v = JSON.parse(raw) as { user?: unknown; expiresAt?: unknown };
    if (typeof v?.user === 'string' && typeof v.expiresAt === 'number') return { user: v.user, expiresAt: v.expiresAt };
  } catch {
    // below
  }
  // A link made before the value was JSON holds the bare user name.
  return { user: raw };
}
const deviceContext = (user: string, id: string) => `device:${user}:${id}`;
const unauthorized = (message: string) => new CountersignError(401, 'device_unauthorized', message);

/**
 * Phones enrolled for push: one-time enrolment links, their ES256 keys
 * (sealed at rest), and the check of every signed request they send. A
 * request is verified against the one device it names, is fresh, and is
 * used once.
 */
export class DeviceService {
  private keys = new Map<string, KeyObject>();

  constructor(
    private store: Store,
    private box: SecretBox,
    private clock: Clock,
    private policy: DevicePolicy,
  ) {}

  get publicUrl(): string {
    return this.policy.publicUrl;
  }

  /** Set once the server knows the address it listens on, when none is configured. */
  set publicUrl(url: string) {
    this.policy.publicUrl = url;
  }

  view(d: DeviceRecord): DeviceView {
    const { publicKey: _k, pushToken, ...rest } = d;
    return { ...rest, push: Boolean(pushToken) && !d.stale };
  }

  private tooManyDevices(user: string): CountersignError {
    const max = this.policy.maxDevicesPerUser;
    return new CountersignError(
      409,
      'too_many_devices',
      `${user} already has ${max} enrolled device${max === 1 ? '' : 's'}, the most this server allows (push.maxDevicesPerUser); remove one first`,
    );
  }

  async createEnrolment(user: string): Promise<EnrolmentLink> {
    if (!(await this.store.users.get(user))) throw notFound('user', user);
    // Said now rather than after the phone has scanned the link; enrol() is what enforces it.
    if ((await this.store.devices.list(user)).length >= this.policy.maxDevicesPerUser) throw this.tooManyDevices(user);
    const token = newToken(24);
    const expiresAt = this.clock.now() + this.policy.enrolmentMs;
    await this.store.tokens.put('enrol', digest(token), JSON.stringify({ user, expiresAt }), this.policy.enrolmentMs);
    // One live link per user: a new one voids the one before, so links cannot pile up for one
    // account (each is a way in for whoever holds it, and each was an audit event).
    const liveKey = `enrol-live:${user}`;
    const before = await this.store.kv.get(liveKey);
    await this.store.kv.set(liveKey, digest(token), this.policy.enrolmentMs);
    if (before) await this.store.tokens.take('enrol', before);
    const q = new URLSearchParams({ server: this.policy.publicUrl, token, user });
    return { uri: `countersign://enrol?${q}`, appUrl: `${this.policy.publicUrl.replace(/\/+$/, '')}/app/#enrol=${q}`, expiresAt };
  }

  /** The push token as it is kept: a Web Push subscription checked and normalised, others as given. */
  private pushTokenFor(platform: Platform, token: string | undefined): string | undefined {
    if (!token) return undefined;
    return platform === 'webpush' ? parseWebPushSubscription(token, this.policy.webPushEndpoints) : token;
  }

  async enrol(input: EnrolInput): Promise<DeviceRecord> {
    const key = parsePublicJwk(input.publicKey);
    const pushToken = this.pushTokenFor(input.platform, input.pushToken);
    const raw = await this.store.tokens.take('enrol', digest(input.token));
    const link = raw === null ? null : linkValue(raw);
    if (!link) throw new CountersignError(410, 'enrolment_invalid', 'this enrolment link is unknown, used or expired; ask for a new one');
    const { user } = link;
    if (!(await this.store.users.get(user))) throw notFound('user', user);
    const id = randomBytes(12).toString('base64url');
    const device: DeviceRecord = {
      id,
      user,
      name: input.name,
      platform: input.platform,
      pushToken,
      publicKey: this.box.seal(Buffer.from(JSON.stringify(key)), deviceContext(user, id)),
      protected: input.protected,
      createdAt: this.clock.now(),
    };
    // The count and the write are one store step, so enrolments racing with links made
    // earlier cannot together pass the cap.
    if (!(await this.store.devices.add(device, this.policy.maxDevicesPerUser))) {
      // The link was not used: it works again, until it would have run out, once a device is removed.
      const left = (link.expiresAt ?? 0) - this.clock.now();
      if (left > 0) await this.store.tokens.put('enrol', digest(input.token), raw!, left).catch(() => {});
      throw this.tooManyDevices(user);
    }
    return device;
  }

  async list(user: string): Promise<DeviceRecord[]> {
    return this.store.devices.list(user);
  }

  async rename(user: string, id: string, name: string): Promise<DeviceRecord> {
    if (!(await this.store.devices.update(user, id, { name }))) throw notFound('device', id);
    return (await this.store.devices.get(user, id))!;
  }

  async revoke(user: string, id: string): Promise<void> {
    if (!(await this.store.devices.delete(user, id))) throw notFound('device', id);
    this.keys.delete(`${user}/${id}`);
  }

  async markStale(user: string, id: string): Promise<void> {
    await this.store.devices.update(user, id, { stale: true });
  }

  /** The app now asks for its lock before approving (or no longer does): the watch rule follows. */
  async setProtected(d: DeviceRecord, locked: boolean): Promise<void> {
    await this.store.devices.update(d.user, d.id, { protected: locked });
  }

  async updatePushToken(d: DeviceRecord, pushToken: string | undefined): Promise<void> {
    await this.store.devices.update(d.user, d.id, { pushToken: this.pushTokenFor(d.platform, pushToken), stale: false });
  }

  /**
   * Verifies a compact JWS from a device: ES256 only, `typ`
   * countersign-<type>+jwt, `kid` = device id, `sub` = its user, `iat`
   * within the allowed age, `jti` a nonce never seen before. The unverified
   * header and `sub` are only used to find the key.
   */
  async verify(jws: string, type: DeviceRequestType): Promise<{ device: DeviceRecord; claims: JWTPayload & Record<string, unknown> }> {
    let kid: string | undefined;
    let sub: string | undefined;
    try {
      kid = decodeProtectedHeader(jws).kid;
      sub = decodeJwt(jws).sub;
    } catch {
      throw badRequest('malformed_request', 'the signed request is not a compact JWS with a JSON payload');
    }
    if (!kid || !sub) throw unauthorized('the signed request must name its device (kid) and user (sub)');
    const device = await this.store.devices.get(sub, kid);
    if (!device) throw unauthorized('this device is not enrolled (or was revoked)');
    let claims: JWTPayload & Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(jws, this.key(device), {
        algorithms: ['ES256'],
        typ: `countersign-${type}+jwt`,
        currentDate: new Date(this.clock.now()),
        requiredClaims: ['iat', 'jti', 'sub'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired || (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'iat')) {
        throw unauthorized('the signed request is too old or from the future; check the phone’s clock');
      }
      throw unauthorized(`the signed request did not verify: ${(err as Error).message}`);
    }
    // The window is requestMaxAge either side of now, and no wider: jose's maxTokenAge plus a
    // clock tolerance would add the two. Every jti is kept longer than the window is wide.
    if (typeof claims.iat !== 'number' || Math.abs(this.clock.now() - claims.iat * 1000) > this.policy.requestMaxAgeMs) {
      throw unauthorized('the signed request is too old or from the future; check the phone’s clock');
    }
    if (typeof claims.jti !== 'string' || claims.jti.length < 16 || claims.jti.length > 128) {
      throw badRequest('malformed_request', 'jti must be a random nonce of 16 to 128 characters');
    }
    if (!(await this.store.guards.claimOnce(`jti:${device.id}:${claims.jti}`, 2 * this.policy.requestMaxAgeMs + 60_000))) {
      throw new CountersignError(409, 'replayed', 'this signed request was already used');
    }
    void this.store.devices.update(device.user, device.id, { lastSeenAt: this.clock.now() }).catch(() => {});
    return { device, claims };
  }

  private key(d: DeviceRecord): KeyObject {
    const cacheKey = `${d.user}/${d.id}`;
    let k = this.keys.get(cacheKey);
    if (!k) {
      const jwk = JSON.parse(this.box.open(d.publicKey, deviceContext(d.user, d.id)).toString()) as Record<string, string>;
      k = createPublicKey({ key: jwk, format: 'jwk' });
      if (this.keys.size > 10_000) this.keys.clear();
      this.keys.set(cacheKey, k);
    }
    return k;
  }
}

/** Accepts exactly a public EC P-256 JWK; anything else is a clear 400. */
export function parsePublicJwk(jwk: Record<string, unknown>): { kty: 'EC'; crv: 'P-256'; x: string; y: string } {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw badRequest('invalid_key', 'publicKey must be an EC P-256 JWK (ES256)');
  if ('d' in jwk) throw badRequest('invalid_key', 'publicKey contains a private key (d); send only the public part');
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw badRequest('invalid_key', 'publicKey needs x and y');
  const key = { kty: 'EC' as const, crv: 'P-256' as const, x: jwk.x, y: jwk.y };
  try {
    createPublicKey({ key, format: 'jwk' });
  } catch {
    throw badRequest('invalid_key', 'publicKey is not a valid point on P-256');
  }
  return key;
}

const base64urlBytes = (value: unknown): Buffer | undefined =>
  typeof value === 'string' && /^[A-Za-z0-9_-]+={0,2}$/.test(value) ? Buffer.from(value, 'base64url') : undefined;
const invalidSubscription = (why: string) =>
  badRequest(
    'invalid_push_token',
    `a webpush pushToken is the JSON of the browser's PushSubscription ({"endpoint": "https://…", "keys": {"p256dh": …, "auth": …}}): ${why}`,
  );

/**
 * A Web Push subscription, as JSON.stringify(PushSubscription) gives it: an https: endpoint
 * (http: on loopback only when private addresses are allowed), p256dh the browser's
 * uncompressed P-256 public key (65 bytes) and auth its 16-byte secret, both base64url.
 * Returns it normalised (only those fields, no padding); anything else is a clear 400. An
 * endpoint the policy refuses (a host outside allowedHosts, an internal IP literal,
 * localhost) is a 400 push_endpoint_refused; names are resolved and checked when the
 * transport connects, not here.
 */
export function parseWebPushSubscription(text: string, endpoints: PushEndpointPolicy): string {
  let s: unknown;
  try {
    s = JSON.parse(text);
  } catch {
    throw invalidSubscription('it is not JSON');
  }
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw invalidSubscription('it is not an object');
  const { endpoint, keys, expirationTime } = s as { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown }; expirationTime?: unknown };
  if (typeof endpoint !== 'string' || endpoint.length > 2048) throw invalidSubscription('endpoint must be a URL of at most 2048 characters');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalidSubscription('endpoint is not a URL');
  }
  const refused = refusedSubscriptionEndpoint(url, endpoints);
  if (refused === 'scheme') throw invalidSubscription('endpoint must be an https: URL');
  if (url.username || url.password) throw invalidSubscription('endpoint must not carry credentials');
  if (refused) throw badRequest('push_endpoint_refused', `this browser's push subscription cannot be used: ${describeRefusal(refused, endpointHost(url))}`);
  if (typeof keys !== 'object' || keys === null) throw invalidSubscription('keys (p256dh and auth) are missing');
  const p256dh = base64urlBytes(keys.p256dh);
  if (!p256dh || p256dh.length !== 65 || p256dh[0] !== 4) throw invalidSubscription('keys.p256dh must be base64url of a 65-byte uncompressed P-256 point');
  try {
    createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: p256dh.subarray(1, 33).toString('base64url'), y: p256dh.subarray(33).toString('base64url') },
      format: 'jwk',
    });
  } catch {
    throw invalidSubscription('keys.p256dh is not a point on P-256');
  }
  const auth = base64urlBytes(keys.auth);
  if (!auth || auth.length !== 16) throw invalidSubscription('keys.auth must be base64url of 16 bytes');
  if (expirationTime !== undefined && expirationTime !== null && typeof expirationTime !== 'number') {
    throw invalidSubscription('expirationTime must be a number or null');
  }
  return JSON.stringify({
    endpoint,
    ...(typeof expirationTime === 'number' ? { expirationTime } : {}),
    keys: { p256dh: p256dh.toString('base64url'), auth: auth.toString('base64url') },
  });
}
