/*
 * Android push over the FCM HTTP v1 API, spoken directly over node:http2.
 *
 * Why not firebase-admin's getMessaging().send(): firebase-admin 13 cannot be
 * pointed at another FCM host in a supported way. The host is a module
 * constant ('fcm.googleapis.com' in lib/messaging/messaging.js), messaging has
 * no emulator variable, and its HTTP/2 client (used by sendEach) connects to a
 * hard-coded URL without options. The only hook is the `httpAgent` app
 * option, which send() honours only because it still goes through the legacy
 * HTTP/1.1 client; redirecting through it means an agent that connects
 * somewhere other than the URL it was given, and it breaks as soon as send()
 * moves to HTTP/2. It also fixes the timeout at 15 s per attempt and retries
 * 503s and timeouts up to four times with backoff, none of it cancellable, so a
 * slow FCM would keep requests running long after a login gave up on them.
 *
 * The v1 API is one POST plus an OAuth2 token from a service-account JWT, so it
 * is done here with an endpoint and token URI that are plain configuration, a
 * timeout that really cancels the stream, and no hidden retries. A
 * firebase-admin Credential (cert(), applicationDefault()) can still supply the
 * access token through the `credential` option.
 */
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { pushFields, type PushMessage, type PushResult, type PushTarget, type PushTransport } from '../../src/core/push.js';

/**
 * The shape of firebase-admin's Credential (cert(), applicationDefault()),
 * declared here so the 100 MB firebase-admin package is not a dependency
 * for one type; any Credential object still fits.
 */
export interface Credential {
  getAccessToken(): Promise<{ access_token: string; expires_in: number }>;
}

const DEFAULT_ENDPOINT = 'https://fcm.googleapis.com';
const DEFAULT_TOKEN_URI = 'https://oauth2.googleapis.com/token';
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
/** Renew access tokens this long before Google says they expire. */
const TOKEN_MARGIN_MS = 5 * 60_000;

/** The fields of a Google service-account key file this transport uses. */
export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  token_uri?: string;
}

export interface FcmOptions {
  projectId: string;
  /** The key file's content, or its path. */
  serviceAccount?: ServiceAccountKey | string;
  /** Anything with getAccessToken(), e.g. firebase-admin's applicationDefault(); wins over serviceAccount. */
  credential?: Credential;
  /** Origin of the FCM API; default https://fcm.googleapis.com. */
  endpoint?: string;
  /** Extra CA certificates (PEM) to trust for the endpoint and token URI; tests use a self-signed one. */
  ca?: string | Buffer;
  /** Upper bound for one send, token fetch included; default 10 s. */
  timeoutMs?: number;
}

interface Response {
  status: number;
  body: string;
}

/** One HTTP/2 session per origin, reopened when the server closes it. */
class Origin {
  private session: http2.ClientHttp2Session | undefined;

  constructor(
    private readonly url: string,
    private readonly ca: string | Buffer | undefined,
  ) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect(this.url, this.ca ? { ca: this.ca } : {});
    // A session error also fails its streams, which report it to their caller.
    session.on('error', () => {});
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    session.on('goaway', forget);
    session.on('close', forget);
    this.session = session;
    return session;
  }

  post(path: string, headers: http2.OutgoingHttpHeaders, body: string, signal: AbortSignal): Promise<Response> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      let stream: http2.ClientHttp2Stream;
      try {
        session = this.connect();
        stream = session.request({ ':method': 'POST', ':path': path, ...headers }, { signal });
      } catch (err) {
        reject(err);
        return;
      }
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString('utf8') }));
      stream.on('error', (err) => {
        if (!signal.aborted) return reject(err);
        // A connection that dropped silently would time out every later send
        // too: let its other streams finish, and connect() opens a fresh one.
        session.close();
        // The stream's own error is just AbortError; say why it was aborted.
        reject(signal.reason);
      });
      stream.end(body);
    });
  }

  close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (!session || session.destroyed) return Promise.resolve();
    // Not close(callback): Node never calls it for a session already closing
    // (as one retired after a timeout is), but 'close' always comes.
    return new Promise((resolve) => {
      session.once('close', () => resolve());
      session.close();
    });
  }
}

function loadServiceAccount(value: ServiceAccountKey | string): ServiceAccountKey {
  const key = typeof value === 'string' ? (JSON.parse(readFileSync(value, 'utf8')) as ServiceAccountKey) : value;
  if (typeof key?.client_email !== 'string' || typeof key.private_key !== 'string') {
    throw new Error('push-fcm: serviceAccount needs client_email and private_key');
  }
  return key;
}

const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** RFC 7523 JWT-bearer grant, as Google's token endpoint expects it. */
function serviceAccountCredential(account: ServiceAccountKey, ca: string | Buffer | undefined, timeoutMs: number): Credential {
  const tokenUri = new URL(account.token_uri ?? DEFAULT_TOKEN_URI);
  const privateKey: KeyObject = createPrivateKey(account.private_key);
  return {
    async getAccessToken() {
      const iat = Math.floor(Date.now() / 1000);
      const header = { alg: 'RS256', typ: 'JWT', ...(account.private_key_id ? { kid: account.private_key_id } : {}) };
      const claims = { iss: account.client_email, scope: SCOPE, aud: tokenUri.href, iat, exp: iat + 3600 };
      const input = `${base64url(header)}.${base64url(claims)}`;
      const assertion = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
      const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion });
      const origin = new Origin(tokenUri.origin, ca);
      try {
        const res = await origin.post(
          tokenUri.pathname + tokenUri.search,
          { 'content-type': 'application/x-www-form-urlencoded' },
          form.toString(),
          AbortSignal.timeout(timeoutMs),
        );
        const body = parseJson(res.body) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown };
        if (res.status !== 200 || typeof body?.access_token !== 'string') {
          throw new Error(`token endpoint ${res.status}: ${String(body?.error ?? '')} ${String(body?.error_description ?? res.body.slice(0, 200))}`.trim());
        }
        return { access_token: body.access_token, expires_in: Number(body.expires_in) || 3600 };
      } finally {
        await origin.close();
      }
    },
  };
}

/** Caches the access token and shares one fetch between concurrent sends. */
class AccessTokens {
  private cached: { token: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(private readonly credential: Credential) {}

  get(): Promise<string> {
    if (this.cached && Date.now() < this.cached.expiresAt - TOKEN_MARGIN_MS) return Promise.resolve(this.cached.token);
    this.pending ??= this.credential
      .getAccessToken()
      .then(({ access_token, expires_in }) => {
        this.cached = { token: access_token, expiresAt: Date.now() + expires_in * 1000 };
        return access_token;
      })
      .finally(() => (this.pending = undefined));
    return this.pending;
  }

  /** FCM refused the token (revoked, rotated key): fetch a new one next time. */
  forget(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}


/** A protobuf Duration ("150s", "149.500s"), as FCM's android.ttl expects. */
const duration = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(3)}s`);

export default function createFcmTransport(options: FcmOptions): PushTransport {
  if (!options.projectId) throw new Error('push-fcm: projectId is required');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const credential =
    options.credential ??
    (options.serviceAccount !== undefined
      ? serviceAccountCredential(loadServiceAccount(options.serviceAccount), options.ca, timeoutMs)
      : undefined);
  if (!credential) throw new Error('push-fcm: either serviceAccount or credential is required');

  const tokens = new AccessTokens(credential);
  const fcm = new Origin(new URL(options.endpoint ?? DEFAULT_ENDPOINT).origin, options.ca);
  const path = `/v1/projects/${encodeURIComponent(options.projectId)}/messages:send`;
  let closed = false;

  return {
    platform: 'android',

    async send(target: PushTarget, message: PushMessage, now: number): Promise<PushResult> {
      if (closed) return { ok: false, stale: false, error: 'push-fcm: transport is closed' };
      const body = JSON.stringify({
        message: {
          token: target.token,
          data: pushFields(message),
          android: {
            priority: 'HIGH',
            ttl: duration(Math.max(0, Math.round(message.deadline - now))),
            collapse_key: message.challengeId,
          },
        },
      });
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(new Error(`FCM did not answer within ${timeoutMs} ms`)), timeoutMs);
      try {
        const token = await untilAborted(tokens.get(), abort.signal);
        const res = await fcm.post(
          path,
          { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=UTF-8' },
          body,
          abort.signal,
        );
        const json = parseJson(res.body);
        if (res.status === 200) return { ok: true, messageId: typeof json?.name === 'string' ? json.name : undefined };
        if (res.status === 401) tokens.forget(token);
        const error = json?.error;
        const errorCode: unknown = Array.isArray(error?.details)
          ? error.details.find((d: any) => d?.['@type'] === FCM_ERROR_TYPE)?.errorCode
          : undefined;
        return {
          ok: false,
          // Only the FcmError detail proves the token is dead: a bare 404
          // NOT_FOUND also answers a wrong project, which must not mark every
          // Android device stale.
          stale: errorCode === 'UNREGISTERED',
          error: `FCM ${res.status} ${String(errorCode ?? error?.status ?? '')}: ${String(error?.message ?? res.body.slice(0, 200))}`,
        };
      } catch (err) {
        return { ok: false, stale: false, error: `FCM: ${err instanceof Error ? err.message : String(err)}` };
      } finally {
        clearTimeout(timer);
      }
    },

    async close(): Promise<void> {
      closed = true;
      await fcm.close();
    },
  };
}
