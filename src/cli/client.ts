import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';

export class CliError extends Error {}

/** Talks to a running server's admin API (COUNTERSIGN_URL, COUNTERSIGN_ADMIN_TOKEN). */
export class AdminClient {
  readonly url: string;
  private token: string;

  constructor(env: Record<string, string | undefined> = process.env) {
    this.url = (env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    // A development server keeps its generated token in the data dir.
    const tokenFile = join(env.COUNTERSIGN_DATA_DIR ?? '.countersign', 'admin-token');
    this.token = env.COUNTERSIGN_ADMIN_TOKEN ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '');
    if (!this.token) throw new CliError('set COUNTERSIGN_ADMIN_TOKEN to the server’s admin token');
  }

  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let res: Answer;
    try {
      res = await send(new URL(`${this.url}/api/v1${path}`), method, {
        authorization: `Bearer ${this.token}`,
        ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
      }, payload);
    } catch (err) {
      throw new CliError(`cannot reach ${this.url}: ${(err as Error).message}`);
    }
    let data: any;
    try {
      data = res.text ? JSON.parse(res.text) : {};
    } catch {
      throw new CliError(`unexpected answer from ${this.url} (${res.status}): ${res.text.slice(0, 200)}`);
    }
    if (res.status < 200 || res.status > 299) throw new CliError(data.message ?? `${res.status} ${res.reason}`);
    return data as T;
  }
}

interface Answer {
  status: number;
  reason: string;
  text: string;
}

/**
 * One request with node:http(s) rather than fetch: under Node 20 a process that used fetch
 * lingers some 50 ms before it exits, plus the time to load undici, which together cost a
 * one-shot command more than everything else it does.
 */
async function send(url: URL, method: string, headers: Record<string, string>, payload?: string): Promise<Answer> {
  // TLS loads only for an https:// server.
  const { request } = url.protocol === 'https:' ? await import('node:https') : http;
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.statusMessage ?? '', text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}
