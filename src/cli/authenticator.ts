import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { SignJWT, importJWK, type JWK } from 'jose';
import type { PendingView } from '../core/push-service.js';
import { CliError } from './client.js';

/** What the reference authenticator keeps in its key file (mode 0600). */
export interface DeviceFile {
  server: string;
  user: string;
  deviceId: string;
  privateJwk: JWK;
}

export interface EnrolOptions {
  name?: string;
  platform?: 'android' | 'ios' | 'webpush';
  pushToken?: string;
  protected?: boolean;
}

/**
 * A phone in software: enrols from a link, keeps its ES256 key, and signs
 * every request the way an authenticator app must (the device API contract).
 */
export class Authenticator {
  constructor(readonly file: DeviceFile) {}

  static load(path: string): Authenticator {
    try {
      return new Authenticator(JSON.parse(readFileSync(path, 'utf8')) as DeviceFile);
    } catch (err) {
      throw new CliError(`cannot read the device key file ${path}: ${(err as Error).message}; enrol first`);
    }
  }

  save(path: string): void {
    writeFileSync(path, `${JSON.stringify(this.file, null, 2)}\n`, { mode: 0o600 });
  }

  static async enrol(link: string, opts: EnrolOptions = {}): Promise<Authenticator> {
    let url: URL;
    try {
      url = new URL(link);
    } catch {
      throw new CliError('the enrolment link must look like countersign://enrol?server=…&token=…');
    }
    const server = url.searchParams.get('server');
    const token = url.searchParams.get('token');
    if (url.protocol !== 'countersign:' || !server || !token) {
      throw new CliError('the enrolment link must look like countersign://enrol?server=…&token=…');
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const body = {
      token,
      platform: opts.platform ?? 'android',
      ...(opts.pushToken ? { pushToken: opts.pushToken } : {}),
      publicKey: publicKey.export({ format: 'jwk' }),
      name: opts.name ?? 'countersign reference authenticator',
      protected: opts.protected ?? false,
    };
    const r = await post<{ deviceId: string; user: string }>(server, '/device/v1/enrol', body);
    return new Authenticator({ server, user: r.user, deviceId: r.deviceId, privateJwk: privateKey.export({ format: 'jwk' }) as JWK });
  }

  /** A compact JWS for one request: fresh iat and a nonce used once. */
  async sign(type: 'answer' | 'poll' | 'update', claims: Record<string, unknown> = {}): Promise<string> {
    const key = await importJWK(this.file.privateJwk, 'ES256');
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: `countersign-${type}+jwt`, kid: this.file.deviceId })
      .setSubject(this.file.user)
      .setIssuedAt()
      .setJti(randomBytes(16).toString('base64url'))
      .sign(key);
  }

  async pending(): Promise<PendingView[]> {
    const r = await post<{ pending: PendingView[] }>(this.file.server, '/device/v1/pending', { request: await this.sign('poll') });
    return r.pending;
  }

  async answer(
    challengeId: string,
    decision: 'approve' | 'reject',
    extra: { number?: string; reason?: 'not-me' | 'cancelled'; via?: 'phone' | 'watch' } = {},
  ): Promise<{ challengeId: string; state: string }> {
    const request = await this.sign('answer', { cid: challengeId, decision, ...extra });
    return post(this.file.server, '/device/v1/answer', { request });
  }

  async setPushToken(pushToken: string | undefined): Promise<void> {
    await post(this.file.server, '/device/v1/token', { request: await this.sign('update', pushToken ? { pushToken } : {}) });
  }

  /** Finds a pending login by the ID the login screen shows. */
  async findByDisplayCode(code: string): Promise<PendingView> {
    const match = (await this.pending()).find((p) => p.displayCode === code || p.challengeId === code);
    if (!match) throw new CliError(`no pending login with ID ${code} for ${this.file.user}`);
    return match;
  }
}

async function post<T>(server: string, path: string, body: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${server.replace(/\/+$/, '')}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new CliError(`cannot reach ${server}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  const data = (await res.json().catch(() => ({}))) as T & { message?: string; error?: string };
  if (!res.ok) throw new CliError(data.message ?? `${res.status} ${res.statusText}`, { cause: data });
  return data;
}
