/**
 * A Web Push service on loopback, for tests and the benchmark: what a browser vendor's push
 * service and the browser together do with a message, checked independently of web-push.
 *
 * It hands out subscriptions (a P-256 key pair and a 16-byte auth secret per subscription,
 * as a browser makes them; the endpoint points here, plain http on 127.0.0.1, or by the name
 * localhost), and for each POST to an endpoint:
 *   - checks the RFC 8292 VAPID Authorization header `vapid t=<JWT>, k=<public key>`: an
 *     ES256 JWT whose signature verifies with k, aud the endpoint's origin, exp in the future
 *     and at most 24 h away, sub a mailto: or https: URL; and, when the subscription was made
 *     with an applicationServerKey, that k is that key (as push services do);
 *   - decrypts the RFC 8291 aes128gcm body with the subscription's private key and auth
 *     secret (ECDH P-256, HKDF-SHA256 for the IKM, CEK and nonce, AES-128-GCM, padding
 *     delimiter 0x02), written here on node:crypto alone;
 *   - records TTL, Urgency and Topic, and answers 201 (or 404/410/… on demand).
 */
import { createECDH, createPublicKey, hkdfSync, createDecipheriv, verify, randomBytes, type ECDH } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Subscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface ReceivedPush {
  /** The subscription's id (the last path segment of its endpoint). */
  id: string;
  at: number;
  status: number;
  headers: IncomingMessage['headers'];
  ttl?: number;
  urgency?: string;
  topic?: string;
  /** The verified VAPID claims and key. */
  vapid?: { aud: string; exp: number; sub: string; k: string };
  /** The decrypted payload (UTF-8). */
  text?: string;
  /** The decrypted payload as JSON, when it is. */
  json?: any;
  /** Why the request was refused, when it was. */
  error?: string;
}

interface Holder {
  ecdh: ECDH;
  auth: Buffer;
  applicationServerKey?: string;
  /** The origin of the subscription's endpoint: the VAPID audience. */
  origin: string;
  status?: number;
}

const b64u = (b: Buffer) => b.toString('base64url');

/** The JWK of an uncompressed P-256 point, for node:crypto. */
const pointKey = (point: Buffer) =>
  createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) }, format: 'jwk' });

/** RFC 8292 §2–3: the Authorization header, checked as a push service does. */
export function checkVapid(header: string | undefined, origin: string, now = Date.now()): { aud: string; exp: number; sub: string; k: string } {
  const m = /^vapid\s+t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*,\s*k=([A-Za-z0-9_-]+)$/.exec(header ?? '');
  if (!m) throw new Error(`Authorization is not "vapid t=…, k=…": ${header}`);
  const [, jwt, k] = m as unknown as [string, string, string];
  const point = Buffer.from(k, 'base64url');
  if (point.length !== 65 || point[0] !== 4) throw new Error('k is not an uncompressed P-256 point');
  const [h, p, s] = jwt.split('.') as [string, string, string];
  const head = JSON.parse(Buffer.from(h, 'base64url').toString());
  if (head.alg !== 'ES256') throw new Error(`JWT alg is ${head.alg}, not ES256`);
  const sig = Buffer.from(s, 'base64url');
  if (sig.length !== 64) throw new Error('ES256 signature is not 64 bytes (r || s)');
  if (!verify('sha256', Buffer.from(`${h}.${p}`), { key: pointKey(point), dsaEncoding: 'ieee-p1363' }, sig)) {
    throw new Error('the JWT signature does not verify with k');
  }
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  if (claims.aud !== origin) throw new Error(`aud ${claims.aud} is not the endpoint's origin ${origin}`);
  const nowS = Math.floor(now / 1000);
  if (typeof claims.exp !== 'number' || claims.exp <= nowS) throw new Error('exp is missing or past');
  if (claims.exp > nowS + 24 * 3600) throw new Error('exp is more than 24 hours away');
  if (typeof claims.sub !== 'string' || !/^(mailto:|https:\/\/)/.test(claims.sub)) throw new Error(`sub ${claims.sub} is not mailto: or https:`);
  return { aud: claims.aud, exp: claims.exp, sub: claims.sub, k };
}

/** RFC 8291 (on RFC 8188 aes128gcm): the user agent's side. */
export function decryptAes128gcm(body: Buffer, ecdh: ECDH, auth: Buffer): Buffer {
  if (body.length < 21) throw new Error('body shorter than the aes128gcm header');
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20]!;
  const asPublic = body.subarray(21, 21 + idlen);
  if (idlen !== 65 || asPublic[0] !== 4) throw new Error(`keyid is not the 65-byte application server key (idlen ${idlen})`);
  if (rs < 18) throw new Error(`record size ${rs} is too small`);
  const uaPublic = ecdh.getPublicKey();
  const ecdhSecret = ecdh.computeSecret(asPublic);
  // RFC 8291 §3.3–3.4: IKM from the ECDH secret and the auth secret, then RFC 8188's CEK and nonce.
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', ecdhSecret, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const records = body.subarray(21 + idlen);
  if (records.length === 0) throw new Error('no record');
  const out: Buffer[] = [];
  for (let i = 0, off = 0; off < records.length; i++, off += rs) {
    const record = records.subarray(off, Math.min(off + rs, records.length));
    const last = off + rs >= records.length;
    const iv = Buffer.from(nonce);
    // The record's sequence number XORed into the nonce's low end (RFC 8188 §2.3); i < 2^32 here.
    iv.writeUInt32BE((iv.readUInt32BE(8) ^ i) >>> 0, 8);
    const decipher = createDecipheriv('aes-128-gcm', cek, iv);
    decipher.setAuthTag(record.subarray(record.length - 16));
    const plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (end < 0) throw new Error(`record ${i} has no padding delimiter`);
    if (plain[end] !== (last ? 2 : 1)) throw new Error(`record ${i} ends with delimiter ${plain[end]}, not ${last ? 2 : 1}`);
    out.push(plain.subarray(0, end));
  }
  return Buffer.concat(out);
}

export class WebPushReceiver {
  readonly requests: ReceivedPush[] = [];
  /** Answer every request with this status (unless a subscription has its own); default 201. */
  status = 201;
  /** Hold each answer this long. */
  delayMs = 0;
  /** Called once a request is recorded (the benchmark's clock stops here). */
  onPush?: (p: ReceivedPush) => void;
  private holders = new Map<string, Holder>();
  private counter = 0;

  private constructor(
    private server: Server,
    readonly origin: string,
  ) {}

  static async start(): Promise<WebPushReceiver> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const receiver = new WebPushReceiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const p = receiver.receive(req, Buffer.concat(chunks));
        const answer = () => {
          res.writeHead(p.status, p.status === 201 ? { location: `${receiver.origin}/message/${++receiver.counter}` } : {});
          res.end(p.error ?? '');
        };
        if (receiver.delayMs > 0) setTimeout(answer, receiver.delayMs);
        else answer();
      });
    });
    return receiver;
  }

  /**
   * A new subscription, as PushManager.subscribe() makes one; pass the key the app subscribed
   * with to have it enforced, and host 'localhost' for an endpoint that names this service
   * instead of giving its address.
   */
  subscribe(applicationServerKey?: string, host: '127.0.0.1' | 'localhost' = '127.0.0.1'): Subscription & { id: string } {
    const id = randomBytes(12).toString('base64url');
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const auth = randomBytes(16);
    this.holders.set(id, { ecdh, auth, applicationServerKey, origin: this.origin.replace('127.0.0.1', host) });
    return { id, endpoint: `${this.origin.replace('127.0.0.1', host)}/push/${id}`, keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) } };
  }

  /** This subscription's answers from now on: 201, or 404/410 (gone), 429, 500… */
  answer(id: string, status: number): void {
    this.holders.get(id)!.status = status;
  }

  for(id: string): ReceivedPush[] {
    return this.requests.filter((r) => r.id === id);
  }

  private receive(req: IncomingMessage, body: Buffer): ReceivedPush {
    const id = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1] ?? '';
    const h = req.headers;
    const p: ReceivedPush = {
      id,
      at: Date.now(),
      status: 201,
      headers: h,
      ttl: h.ttl === undefined ? undefined : Number(h.ttl),
      urgency: h.urgency as string | undefined,
      topic: h.topic as string | undefined,
    };
    const holder = this.holders.get(id);
    try {
      if (req.method !== 'POST') throw Object.assign(new Error(`method ${req.method}`), { status: 405 });
      if (!holder) throw Object.assign(new Error('no such subscription'), { status: 404 });
      if (h.ttl === undefined || !/^\d+$/.test(String(h.ttl))) throw Object.assign(new Error('TTL header missing or not a number'), { status: 400 });
      try {
        p.vapid = checkVapid(h.authorization, holder.origin);
      } catch (err) {
        throw Object.assign(err as Error, { status: 401 });
      }
      if (holder.applicationServerKey && holder.applicationServerKey !== p.vapid.k) {
        throw Object.assign(new Error('k is not the key this subscription was made with'), { status: 403 });
      }
      if (h['content-encoding'] !== 'aes128gcm') throw Object.assign(new Error(`Content-Encoding ${h['content-encoding']}`), { status: 415 });
      if (body.length > 4096) throw Object.assign(new Error(`body of ${body.length} bytes is over 4096`), { status: 413 });
      try {
        p.text = decryptAes128gcm(body, holder.ecdh, holder.auth).toString('utf8');
      } catch (err) {
        throw Object.assign(new Error(`cannot decrypt: ${(err as Error).message}`), { status: 400 });
      }
      try {
        p.json = JSON.parse(p.text);
      } catch {
        // not JSON: the test looks at text
      }
      p.status = holder.status ?? this.status;
    } catch (err) {
      p.status = (err as { status?: number }).status ?? 400;
      p.error = (err as Error).message;
    }
    this.requests.push(p);
    this.onPush?.(p);
    return p;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}
