/*
 * Web Push for the installable web app (/app/): RFC 8030 (the push protocol), RFC 8291
 * (aes128gcm message encryption) and RFC 8292 (VAPID), on the maintained `web-push` package.
 *
 * web-push builds each request: the aes128gcm body for the subscription's p256dh and auth,
 * TTL, Urgency and Topic (generateRequestDetails), and the VAPID JWT (getVapidHeaders). It
 * does not send it here: its sendNotification() always uses node:https (no http: push
 * service for tests), has only a socket-idle timeout and no way to cancel, so the POST is
 * done with node:http/https, keep-alive agents and a timeout that aborts the request. The
 * VAPID header is signed once per push service origin and reused for an hour (the JWT lives
 * 12 h; RFC 8292 allows 24), so a send costs one encryption and no signature.
 *
 * The device's push token is the JSON of the browser's PushSubscription; core checked it
 * at enrolment (src/core/devices.ts). The payload is pushFields(message): what the login
 * screen shows, nothing secret; the service worker asks the signed device API for more.
 *
 * The endpoint is chosen by whoever enrolled the browser, so before each send the URL is
 * checked again (src/core/push-endpoints.ts: scheme, push.webpush.allowedHosts, an IP
 * literal), and every socket the agents open resolves its host through a lookup that
 * refuses the connection when any address the name resolves to is loopback, private,
 * link-local, a metadata service and the like. That check runs after DNS, at connect time,
 * so a name that resolves to an internal address, today or only after enrolment (DNS
 * rebinding), is caught; a socket kept alive was checked when it was opened.
 */
import { createECDH, createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import webpush, { type PushSubscription } from 'web-push';
import { pushFields, type PushMessage, type PushResult, type PushTarget, type PushTransport } from '../../src/core/push.js';
import {
  describeRefusal,
  endpointHost,
  refusedAddress,
  refusedEndpoint,
  type EndpointRefusal,
  type PushEndpointPolicy,
} from '../../src/core/push-endpoints.js';
import type { SecretBox } from '../../src/core/secretbox.js';
import type { KvStore } from '../../src/core/store.js';

/** A VAPID key pair, base64url: the uncompressed P-256 public point (65 bytes) and the private scalar (32 bytes). */
export interface VapidKeys {
  publicKey: string;
  privateKey: string;
}

export interface WebPushOptions {
  /** RFC 8292 `sub`: a mailto: or https: contact for the push service's operators. */
  subject: string;
  /** The key pair, or where to get it (storedVapidKeys: generated once, shared through the store). */
  vapid: VapidKeys | (() => Promise<VapidKeys>);
  /** Upper bound for one send; default 10 s. */
  timeoutMs?: number;
  /** Which endpoints it connects to; default: public addresses of any host (push.webpush.allowedHosts, allowPrivateAddresses). */
  endpoints?: PushEndpointPolicy;
}

/** One Web Push request, ready to POST. */
export interface WebPushRequest {
  url: URL;
  headers: Record<string, string | number>;
  body: Buffer;
}

export interface WebPushTransport extends PushTransport {
  readonly platform: 'webpush';
  /** The application server key browsers subscribe with (base64url, 65 bytes). */
  publicKey(): Promise<string>;
  /** The request send() makes, encrypted and signed, without sending it (the benchmark's encryption rate). */
  prepare(target: PushTarget, message: PushMessage, now: number): Promise<WebPushRequest>;
}

/** The largest record plaintext that fits the 4096-byte body push services accept (RFC 8291 §4). */
const MAX_PLAINTEXT = 4096 - 86 - 16 - 1;
/** The VAPID JWT lives this long, and is reused until this much of it is left. */
const VAPID_LIFETIME_S = 12 * 3600;
const VAPID_RENEW_LEFT_S = 11 * 3600;
const STORE_KEY = 'webpush-vapid';
const SEAL_CONTEXT = 'webpush-vapid';
/** Generated keys kept in the store (like the OpenID Connect keys): years, not forever. */
const STORED_MS = 10 * 365 * 24 * 3600 * 1000;

const B64URL = /^[A-Za-z0-9_-]+$/;

/** Checks a key pair: the right lengths, and the public key is the private key's. */
export function checkVapidKeys(keys: VapidKeys): VapidKeys {
  const pub = B64URL.test(keys.publicKey) ? Buffer.from(keys.publicKey, 'base64url') : Buffer.alloc(0);
  const priv = B64URL.test(keys.privateKey) ? Buffer.from(keys.privateKey, 'base64url') : Buffer.alloc(0);
  if (pub.length !== 65 || pub[0] !== 4) throw new Error('push-webpush: the VAPID publicKey must be base64url of a 65-byte uncompressed P-256 point');
  if (priv.length !== 32) throw new Error('push-webpush: the VAPID privateKey must be base64url of 32 bytes');
  const ecdh = createECDH('prime256v1');
  try {
    ecdh.setPrivateKey(priv);
  } catch {
    throw new Error('push-webpush: the VAPID privateKey is not a P-256 private key');
  }
  if (!ecdh.getPublicKey().equals(pub)) throw new Error('push-webpush: the VAPID publicKey does not belong to the privateKey');
  return keys;
}

/**
 * VAPID keys generated once and kept sealed in the shared store, so every instance signs
 * with the one key the browsers subscribed with, and a restart keeps it. Read once per
 * process; a store that does not answer is asked again on the next call.
 */
export function storedVapidKeys(kv: KvStore, box: SecretBox): () => Promise<VapidKeys> {
  let keys: Promise<VapidKeys> | undefined;
  return () =>
    (keys ??= (async () => {
      const candidate = box.seal(Buffer.from(JSON.stringify(webpush.generateVAPIDKeys())), SEAL_CONTEXT);
      const sealed = (await kv.setIfAbsent(STORE_KEY, candidate, STORED_MS)) ?? candidate;
      return checkVapidKeys(JSON.parse(box.open(sealed, SEAL_CONTEXT).toString()) as VapidKeys);
    })().catch((err: unknown) => {
      keys = undefined;
      throw err;
    }));
}

/** Coalesces this device's pushes at the push service: a newer login replaces an older, undelivered one. */
export const topicFor = (target: PushTarget, message: PushMessage) =>
  createHash('sha256').update(`countersign\0${message.user}\0${target.deviceId}`).digest('base64url').slice(0, 22);

/** What a push carries: every display field, or the bare minimum when a long text would not fit. */
export function payloadFor(message: PushMessage): string {
  const full = JSON.stringify(pushFields(message));
  if (Buffer.byteLength(full) <= MAX_PLAINTEXT) return full;
  // The app fetches the rest (client, binding message) over the signed device API.
  return JSON.stringify(pushFields({ ...message, client: undefined, bindingMessage: undefined }));
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A connection the endpoint rules do not allow: no request was made. */
class RefusedEndpoint extends Error {
  constructor(
    readonly reason: EndpointRefusal,
    host: string,
  ) {
    super(describeRefusal(reason, host));
  }
}

/**
 * dns.lookup, but every address the name resolves to must be one the policy allows, or
 * the connection is not made. All of them, not the one that would be used: a name that
 * resolves to a public and an internal address is refused rather than tried in turn.
 */
function guardedLookup(policy: PushEndpointPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      for (const a of addresses) {
        const why = refusedAddress(a.address, policy);
        if (why) return callback(new RefusedEndpoint(why, `${hostname} (${a.address})`), '', 0);
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

interface Posted {
  status: number;
  location?: string;
  body: string;
}

/** One signed VAPID header per push service origin, renewed before it runs out. */
class VapidHeaders {
  private byAudience = new Map<string, { header: string; renewAt: number }>();

  constructor(
    private subject: string,
    private keys: () => Promise<VapidKeys>,
  ) {}

  async for(audience: string): Promise<string> {
    const nowS = Math.floor(Date.now() / 1000);
    const hit = this.byAudience.get(audience);
    if (hit && nowS < hit.renewAt) return hit.header;
    const { publicKey, privateKey } = await this.keys();
    const exp = nowS + VAPID_LIFETIME_S;
    const { Authorization } = webpush.getVapidHeaders(audience, this.subject, publicKey, privateKey, 'aes128gcm', exp);
    if (this.byAudience.size > 1000) this.byAudience.clear();
    this.byAudience.set(audience, { header: Authorization, renewAt: exp - VAPID_RENEW_LEFT_S });
    return Authorization;
  }
}

export default function createWebPushTransport(options: WebPushOptions): WebPushTransport {
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!/^(mailto:|https:\/\/)\S+$/.test(options.subject)) {
    throw new Error(`push-webpush: the VAPID subject must be a mailto: or https: URL, not '${options.subject}'`);
  }
  const keys =
    typeof options.vapid === 'function'
      ? options.vapid
      : (() => {
          const fixed = checkVapidKeys(options.vapid);
          return () => Promise.resolve(fixed);
        })();
  // Ready before the first login; a store that is not up yet is asked again at the first use.
  keys().catch(() => {});
  const vapid = new VapidHeaders(options.subject, keys);
  const endpoints: PushEndpointPolicy = options.endpoints ?? { allowPrivateAddresses: false };
  // Every socket either agent opens resolves its host through the guard (an IP literal is
  // not looked up: refusedEndpoint checked it before the request).
  const lookup = guardedLookup(endpoints);
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: 64, lookup }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: 64, lookup }),
  };
  let closed = false;

  const post = (url: URL, headers: Record<string, string | number>, body: Buffer, signal: AbortSignal) =>
    new Promise<Posted>((resolve, reject) => {
      const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
      if (!client) return reject(new Error(`unsupported endpoint scheme ${url.protocol}`));
      const req = client.request(url, { method: 'POST', headers, agent: agents[url.protocol as 'http:' | 'https:'], lookup, signal }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < 1000) text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: text }));
        res.on('error', reject);
      });
      req.on('error', (err) => reject(signal.aborted ? signal.reason : err));
      req.end(body);
    });

  async function prepare(target: PushTarget, message: PushMessage, now: number): Promise<WebPushRequest> {
    let subscription: PushSubscription;
    let url: URL;
    try {
      subscription = JSON.parse(target.token) as PushSubscription;
      url = new URL(subscription.endpoint);
    } catch {
      throw new Error('the device’s push token is not a PushSubscription');
    }
    const authorization = await vapid.for(url.origin);
    const request = webpush.generateRequestDetails(subscription, payloadFor(message), {
      TTL: Math.max(0, Math.floor((message.deadline - now) / 1000)),
      urgency: 'high',
      topic: topicFor(target, message),
      contentEncoding: 'aes128gcm',
    });
    return { url, headers: { ...request.headers, Authorization: authorization }, body: request.body };
  }

  return {
    platform: 'webpush',

    async publicKey() {
      return (await keys()).publicKey;
    },

    prepare,

    async send(target: PushTarget, message: PushMessage, now: number): Promise<PushResult> {
      if (closed) return { ok: false, stale: false, error: 'push-webpush: transport is closed' };
      let where = 'push service';
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(new Error(`did not answer within ${timeoutMs} ms`)), timeoutMs);
      try {
        // The VAPID key may come from the store: that wait counts against the timeout too.
        const request = await untilAborted(prepare(target, message, now), abort.signal);
        // Never the whole endpoint in a message: its path is the subscription's capability.
        where = request.url.host;
        const refused = refusedEndpoint(request.url, endpoints);
        if (refused) throw new RefusedEndpoint(refused, endpointHost(request.url));
        const res = await post(request.url, request.headers, request.body, abort.signal);
        if (res.status >= 200 && res.status < 300) return { ok: true, messageId: res.location };
        return {
          ok: false,
          // RFC 8030 §7.3: the subscription is gone (404 Not Found, 410 Gone); anything else may pass.
          stale: res.status === 404 || res.status === 410,
          error: `Web Push ${where} ${res.status}: ${res.body.slice(0, 200).trim()}`,
        };
      } catch (err) {
        // Refused by this server's rules, not by the push service: the subscription may be
        // fine once the rules or the name's addresses change, so the device is not stale.
        if (err instanceof RefusedEndpoint) return { ok: false, stale: false, refused: err.reason, error: `Web Push ${where} refused: ${err.message}` };
        return { ok: false, stale: false, error: `Web Push ${where}: ${err instanceof Error ? err.message : String(err)}` };
      } finally {
        clearTimeout(timer);
      }
    },

    async close() {
      closed = true;
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}
