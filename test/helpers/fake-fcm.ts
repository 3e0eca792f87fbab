/**
 * A local stand-in for FCM's HTTP v1 send endpoint and Google's OAuth2 token
 * endpoint, on one HTTP/2 TLS server, answering with the bodies and status
 * codes the real services use.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TlsMaterial {
  key: string;
  cert: string;
}

/** A throwaway self-signed certificate for 127.0.0.1, made by the openssl CLI (Node cannot make X.509). */
export function selfSignedCertificate(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-tls-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
        '-days', '1', '-subj', '/CN=countersign-test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { stdio: 'pipe' },
    );
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const asPublicKey = (key: KeyObject | string): KeyObject =>
  typeof key !== 'string' && key.type === 'public' ? key : createPublicKey(key);

export interface RecordedRequest {
  path: string;
  headers: http2.IncomingHttpHeaders;
  /** The parsed JSON body (FCM) or form fields (token endpoint). */
  body: unknown;
  /** The status answered, 0 while unanswered or when the client gave up. */
  status: number;
  /** The client cancelled the stream before an answer. */
  abandoned?: boolean;
}

const FCM_ERROR = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SEND_PATH = /^\/v1\/projects\/([^/]+)\/messages:send$/;
const MESSAGE_FIELDS = ['name', 'token', 'topic', 'condition', 'data', 'notification', 'android', 'webpush', 'apns', 'fcm_options', 'fcmOptions'];
const ANDROID_FIELDS = ['collapse_key', 'collapseKey', 'priority', 'ttl', 'restricted_package_name', 'restrictedPackageName', 'data', 'notification', 'fcm_options', 'fcmOptions', 'direct_boot_ok', 'directBootOk'];
const RESERVED_DATA_KEY = /^(from|notification|message_type|google.*|gcm.*)$/;
/** FCM keeps a message at most four weeks. */
const MAX_TTL_SECONDS = 2_419_200;

function fcmError(code: number, status: string, message: string, errorCode?: string) {
  return {
    error: {
      code,
      message,
      status,
      ...(errorCode ? { details: [{ '@type': FCM_ERROR, errorCode }] } : {}),
    },
  };
}

const invalid = (message: string) => ({ status: 400, body: fcmError(400, 'INVALID_ARGUMENT', message, 'INVALID_ARGUMENT') });
const unknownField = (name: string, at: string) => invalid(`Invalid JSON payload received. Unknown name "${name}" at '${at}': Cannot find field.`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The checks FCM makes on a send request body; null when it would accept it. */
function validateSend(body: unknown): { status: number; body: object } | null {
  if (!isObject(body) || !isObject(body.message)) return invalid('Request contains an invalid argument.');
  for (const key of Object.keys(body)) if (!['message', 'validate_only', 'validateOnly'].includes(key)) return unknownField(key, '');
  const m = body.message;
  for (const key of Object.keys(m)) if (!MESSAGE_FIELDS.includes(key)) return unknownField(key, 'message');
  if (['token', 'topic', 'condition'].filter((k) => m[k] !== undefined).length !== 1) return invalid('Exactly one of token, topic or condition must be set.');
  if (typeof m.token !== 'string' || !/^[\w:-]{20,}$/.test(m.token)) return invalid('The registration token is not a valid FCM registration token');
  if (m.data !== undefined) {
    if (!isObject(m.data)) return invalid("Invalid value at 'message.data'");
    for (const [key, value] of Object.entries(m.data)) {
      if (typeof value !== 'string') return invalid(`Invalid value at 'message.data[${key}].value' (TYPE_STRING), ${JSON.stringify(value)}`);
      if (RESERVED_DATA_KEY.test(key)) return invalid(`Invalid data payload key: ${key}`);
    }
    if (Buffer.byteLength(JSON.stringify(m.data)) > 4096) return invalid('Android message is too big');
  }
  if (m.android !== undefined) {
    const a = m.android;
    if (!isObject(a)) return invalid("Invalid value at 'message.android'");
    for (const key of Object.keys(a)) if (!ANDROID_FIELDS.includes(key)) return unknownField(key, 'message.android');
    if (a.priority !== undefined && a.priority !== 'NORMAL' && a.priority !== 'HIGH') {
      return invalid(`Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), ${JSON.stringify(a.priority)}`);
    }
    if (a.ttl !== undefined) {
      if (typeof a.ttl !== 'string' || !/^\d+(\.\d{1,9})?s$/.test(a.ttl)) return invalid(`Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), ${JSON.stringify(a.ttl)}`);
      if (parseFloat(a.ttl) > MAX_TTL_SECONDS) return invalid('TTL must be at most 4 weeks');
    }
    const collapse = a.collapse_key ?? a.collapseKey;
    if (collapse !== undefined && typeof collapse !== 'string') return invalid("Invalid value at 'message.android.collapse_key' (TYPE_STRING)");
  }
  return null;
}

function decodeJwt(assertion: string): { header: any; claims: any; signed: Buffer; signature: Buffer } | null {
  const parts = assertion.split('.');
  if (parts.length !== 3) return null;
  try {
    return {
      header: JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')),
      claims: JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')),
      signed: Buffer.from(`${parts[0]}.${parts[1]}`),
      signature: Buffer.from(parts[2]!, 'base64url'),
    };
  } catch {
    return null;
  }
}

export class FakeFcm {
  /** Send requests, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  /** Token-endpoint requests, in arrival order. */
  readonly tokenRequests: RecordedRequest[] = [];
  /** Registration tokens FCM answers with 404 UNREGISTERED. */
  readonly deadTokens = new Set<string>();
  /** Answer sends only after this many ms. */
  delayMs = 0;
  /** Answer sends with this server error instead. */
  failWith: 500 | 503 | undefined;
  /** HTTP/2 connections accepted so far. */
  connections = 0;

  private readonly accessTokens = new Set<string>();
  private readonly accounts = new Map<string, KeyObject>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: http2.Http2SecureServer,
    readonly projectId: string,
  ) {
    server.on('session', (s) => {
      this.connections++;
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
    });
    server.on('request', (req, res) => void this.handle(req, res));
  }

  static async start(options: { tls: TlsMaterial; projectId: string }): Promise<FakeFcm> {
    const server = http2.createSecureServer({ key: options.tls.key, cert: options.tls.cert });
    const fake = new FakeFcm(server, options.projectId);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get tokenUri(): string {
    return `${this.url}/token`;
  }

  /** Lets this service account's JWTs be exchanged for access tokens. */
  addServiceAccount(clientEmail: string, publicKey: KeyObject | string): void {
    this.accounts.set(clientEmail, asPublicKey(publicKey));
  }

  /** An access token FCM accepts, as if issued to some credential. */
  issueAccessToken(): string {
    const token = `ya29.${randomBytes(24).toString('base64url')}`;
    this.accessTokens.add(token);
    return token;
  }

  /** Every issued access token stops working, as after a key rotation. */
  revokeAccessTokens(): void {
    this.accessTokens.clear();
  }

  /** How many HTTP/2 connections clients hold open right now. */
  get openSessions(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const path = req.headers[':path'] ?? '';
    if (req.method === 'POST' && path === '/token') return this.token(req, res, raw);
    const send = SEND_PATH.exec(path);
    if (req.method === 'POST' && send) return this.send(req, res, raw, decodeURIComponent(send[1]!));
    this.answer(res, undefined, 404, fcmError(404, 'NOT_FOUND', `The requested URL ${path} was not found on this server.`));
  }

  private answer(res: http2.Http2ServerResponse, record: RecordedRequest | undefined, status: number, body: object): void {
    if (res.stream.destroyed) return;
    if (record) record.status = status;
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  }

  private token(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, raw: string): void {
    const form = Object.fromEntries(new URLSearchParams(raw));
    const record: RecordedRequest = { path: '/token', headers: req.headers, body: form, status: 0 };
    this.tokenRequests.push(record);
    const fail = (error: string, description: string) => this.answer(res, record, 400, { error, error_description: description });

    if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) return fail('invalid_request', 'Bad Request');
    if (form.grant_type !== JWT_BEARER) return fail('unsupported_grant_type', `Invalid grant_type: ${form.grant_type ?? ''}`);
    const jwt = decodeJwt(form.assertion ?? '');
    if (!jwt || jwt.header.alg !== 'RS256') return fail('invalid_grant', 'Invalid JWT Signature.');
    const key = this.accounts.get(jwt.claims.iss);
    if (!key || !verify('sha256', jwt.signed, key, jwt.signature)) return fail('invalid_grant', 'Invalid JWT Signature.');
    if (jwt.claims.aud !== this.tokenUri) return fail('invalid_grant', 'Invalid JWT: Failed audience check.');
    const now = Math.floor(Date.now() / 1000);
    const { iat, exp } = jwt.claims;
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp - iat > 3600 || iat > now + 60 || exp <= now) {
      return fail('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
    }
    const scopes = String(jwt.claims.scope ?? '').split(' ');
    if (!scopes.some((s) => s.endsWith('/auth/firebase.messaging') || s.endsWith('/auth/cloud-platform'))) {
      return fail('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    }
    this.answer(res, record, 200, { access_token: this.issueAccessToken(), expires_in: 3599, token_type: 'Bearer' });
  }

  private async send(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, raw: string, project: string): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      body = undefined;
    }
    const record: RecordedRequest = { path: req.headers[':path']!, headers: req.headers, body, status: 0 };
    this.requests.push(record);
    res.stream.on('close', () => (record.abandoned = record.status === 0));

    if (this.delayMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          resolve();
        }, this.delayMs);
        this.timers.add(timer);
      });
    }

    const bearer = /^Bearer (\S+)$/.exec(String(req.headers.authorization ?? ''));
    if (!bearer || !this.accessTokens.has(bearer[1]!)) {
      return this.answer(res, record, 401, fcmError(401, 'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.'));
    }
    if (project !== this.projectId) return this.answer(res, record, 403, fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH'));
    if (this.failWith === 503) return this.answer(res, record, 503, fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE'));
    if (this.failWith === 500) return this.answer(res, record, 500, fcmError(500, 'INTERNAL', 'Internal error encountered.', 'INTERNAL'));
    if (body === undefined) return this.answer(res, record, 400, fcmError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'));
    const rejection = validateSend(body);
    if (rejection) return this.answer(res, record, rejection.status, rejection.body);
    const token = (body as { message: { token: string } }).message.token;
    if (this.deadTokens.has(token)) return this.answer(res, record, 404, fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED'));
    this.answer(res, record, 200, { name: `projects/${project}/messages/0:${Date.now()}${randomBytes(8).toString('hex')}` });
  }
}
