/**
 * A local stand-in for APNs' provider API (POST /3/device/:token over HTTP/2
 * and TLS), checking the provider JWT and headers as Apple does and answering
 * with Apple's status codes and `reason` bodies.
 */
import { randomUUID, verify, type KeyObject } from 'node:crypto';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { asPublicKey, type TlsMaterial } from './fake-fcm.js';

export interface ApnsRequest {
  /** The device token from the path. */
  device: string;
  headers: http2.IncomingHttpHeaders;
  /** The parsed JSON payload, undefined when it was not JSON. */
  body: any;
  /** The status answered, 0 while unanswered or when the client gave up. */
  status: number;
  reason?: string;
  /** The client cancelled the stream before an answer. */
  abandoned?: boolean;
}

const DEVICE_PATH = /^\/3\/device\/([^/?]*)$/;
const DEVICE_TOKEN = /^(?:[0-9a-fA-F]{2}){32,100}$/;
const PUSH_TYPES = ['alert', 'background', 'location', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'pushtotalk', 'widgets'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Apple refuses provider tokens older than an hour. */
const TOKEN_LIFETIME_S = 3600;

export interface FakeApnsOptions {
  tls: TlsMaterial;
  teamId: string;
  keyId: string;
  /** The public half of the .p8 key the provider signs with. */
  publicKey: KeyObject | string;
  /** The bundle ID the device tokens belong to. */
  topic: string;
}

export class FakeApns {
  readonly requests: ApnsRequest[] = [];
  /** Device tokens APNs answers with 410 Unregistered, and since when (ms). */
  readonly deadTokens = new Map<string, number>();
  delayMs = 0;
  failWith: 500 | 503 | undefined;

  private readonly publicKey: KeyObject;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: http2.Http2SecureServer,
    private readonly options: FakeApnsOptions,
  ) {
    this.publicKey = asPublicKey(options.publicKey);
    server.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
    });
    server.on('request', (req, res) => void this.handle(req, res));
  }

  static async start(options: FakeApnsOptions): Promise<FakeApns> {
    const server = http2.createSecureServer({ key: options.tls.key, cert: options.tls.cert });
    const fake = new FakeApns(server, options);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Apple's reason for refusing the provider token, or null when it is good. */
  private checkProviderToken(authorization: string | undefined): { status: number; reason: string } | null {
    if (!authorization) return { status: 403, reason: 'MissingProviderToken' };
    const bad = { status: 403, reason: 'InvalidProviderToken' };
    const m = /^bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(authorization);
    if (!m) return bad;
    let header: any;
    let claims: any;
    try {
      header = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
      claims = JSON.parse(Buffer.from(m[2]!, 'base64url').toString('utf8'));
    } catch {
      return bad;
    }
    if (header.alg !== 'ES256' || header.kid !== this.options.keyId || claims.iss !== this.options.teamId) return bad;
    // JWS carries ES256 signatures as raw r||s, not DER.
    const ok = verify('sha256', Buffer.from(`${m[1]}.${m[2]}`), { key: this.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(m[3]!, 'base64url'));
    if (!ok || typeof claims.iat !== 'number') return bad;
    const age = Date.now() / 1000 - claims.iat;
    if (age > TOKEN_LIFETIME_S) return { status: 403, reason: 'ExpiredProviderToken' };
    if (age < -60) return bad;
    return null;
  }

  /** Apple's reason for refusing the request's headers or payload, or null. */
  private checkRequest(r: ApnsRequest, raw: string): { status: number; reason: string } | null {
    const h = r.headers;
    if (!h['apns-topic']) return { status: 400, reason: 'MissingTopic' };
    if (h['apns-topic'] !== this.options.topic) return { status: 400, reason: 'DeviceTokenNotForTopic' };
    if (h['apns-push-type'] !== undefined && !PUSH_TYPES.includes(String(h['apns-push-type']))) return { status: 400, reason: 'InvalidPushType' };
    if (h['apns-priority'] !== undefined && !['1', '5', '10'].includes(String(h['apns-priority']))) return { status: 400, reason: 'BadPriority' };
    if (h['apns-expiration'] !== undefined && !/^\d+$/.test(String(h['apns-expiration']))) return { status: 400, reason: 'BadExpirationDate' };
    if (h['apns-collapse-id'] !== undefined && Buffer.byteLength(String(h['apns-collapse-id'])) > 64) return { status: 400, reason: 'BadCollapseId' };
    if (h['apns-id'] !== undefined && !UUID.test(String(h['apns-id']))) return { status: 400, reason: 'BadMessageId' };
    if (!DEVICE_TOKEN.test(r.device)) return { status: 400, reason: 'BadDeviceToken' };
    if (raw.length === 0 || typeof r.body !== 'object' || r.body === null) return { status: 400, reason: 'PayloadEmpty' };
    if (Buffer.byteLength(raw) > 4096) return { status: 413, reason: 'PayloadTooLarge' };
    return null;
  }

  private async handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const apnsId = typeof req.headers['apns-id'] === 'string' ? req.headers['apns-id'] : randomUUID();
    const answer = (status: number, reason?: string, extra: object = {}) => {
      if (res.stream.destroyed) return;
      record.status = status;
      if (reason) record.reason = reason;
      res.writeHead(status, { 'apns-id': apnsId, ...(reason ? { 'content-type': 'application/json' } : {}) });
      if (reason) res.end(JSON.stringify({ reason, ...extra }));
      else res.end();
    };

    const path = DEVICE_PATH.exec(req.headers[':path'] ?? '');
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      body = undefined;
    }
    const record: ApnsRequest = { device: path?.[1] ?? '', headers: req.headers, body, status: 0 };
    this.requests.push(record);
    res.stream.on('close', () => (record.abandoned = record.status === 0));
    if (!path) return answer(404, 'BadPath');
    if (req.method !== 'POST') return answer(405, 'MethodNotAllowed');

    if (this.delayMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          resolve();
        }, this.delayMs);
        this.timers.add(timer);
      });
    }

    const refused = this.checkProviderToken(req.headers.authorization) ?? this.checkRequest(record, raw);
    if (refused) return answer(refused.status, refused.reason);
    if (this.failWith === 503) return answer(503, 'ServiceUnavailable');
    if (this.failWith === 500) return answer(500, 'InternalServerError');
    const since = this.deadTokens.get(record.device);
    if (since !== undefined) return answer(410, 'Unregistered', { timestamp: since });
    answer(200);
  }
}
