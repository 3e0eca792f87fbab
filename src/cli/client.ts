import { existsSync, readFileSync } from 'node:fs';
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
    let res: Response;
    try {
      res = await fetch(`${this.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new CliError(`cannot reach ${this.url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    let data: any;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      throw new CliError(`unexpected answer from ${this.url} (${res.status}): ${text.slice(0, 200)}`);
    }
    if (!res.ok) throw new CliError(data.message ?? `${res.status} ${res.statusText}`);
    return data as T;
  }
}
