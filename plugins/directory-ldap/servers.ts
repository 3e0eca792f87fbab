/**
 * Connections of the LDAP directory plugin: the configured URLs in order with failover, TLS
 * (ldaps:// or StartTLS) with the configured CA, bounded connects and operations, and a small
 * pool of service-account connections shared by every request.
 *
 * - A URL whose connect, TLS, bind or operation failed for a server reason is skipped for
 *   `retryAfterMs` (30 s) while another URL is available. When every URL is being skipped, a
 *   request still tries one of them (the one skipped longest), so a directory that comes back is
 *   used at once, and a directory that is down costs one timeout per request, not one per URL.
 * - Pooled connections are bound as the service account once, then shared: LDAP carries several
 *   operations at once on one connection (message ids), so a request never waits for a free
 *   connection. A connection that broke is dropped and re-made (and re-bound) on the next use.
 *   An operation is only ever sent on a connection that is bound right then: ldapts would
 *   otherwise reconnect by itself and search anonymously (and, after StartTLS, in clear).
 * - Users' binds use connections of their own, closed right after: one is never left bound as a
 *   user, and a pooled connection never carries a user's password.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { Client, ResultCodeError, type Control, type SearchOptions, type SearchResult } from 'ldapts';
import type { Logger } from 'pino';

export interface ServerOptions {
  urls: string[];
  startTls: boolean;
  caFile?: string;
  timeoutMs: number;
  retryAfterMs: number;
  log?: Logger;
  /** The directory's name, for log lines. */
  name: string;
}

/** No configured server could do it: the directory is unavailable (never "wrong password"). */
export class DirectoryUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DirectoryUnavailableError';
  }
}

/** A connection that was not bound when an operation was about to be sent on it. */
class NotBoundError extends Error {
  constructor() {
    super('the connection is no longer bound');
    this.name = 'NotBoundError';
  }
}

/**
 * LDAP result codes that say the server (not the request) is in trouble: operationsError (AD's
 * "a successful bind must be completed"), timeLimitExceeded, busy, unavailable, unwillingToPerform
 * (AD refusing while it starts), loopDetect, other.
 */
const SERVER_CODES = new Set([1, 3, 51, 52, 53, 54, 80]);

/** True when the failure is the server's or the network's, so another URL may do better. */
export function isServerFailure(err: unknown): boolean {
  if (err instanceof ResultCodeError) return SERVER_CODES.has(err.code);
  return true;
}

/**
 * The same for a user's bind, narrower: only the network, busy and unavailable. Whatever else a
 * server answers a user's bind is about that user, and must not let one login mark a server
 * failing for everyone.
 */
export function isServerFailureForUser(err: unknown): boolean {
  if (err instanceof ResultCodeError) return err.code === 51 || err.code === 52;
  return true;
}

const describe = (err: unknown): string => (err instanceof Error ? err.message.split('\n')[0]!.slice(0, 300) : String(err));

export const errorText = describe;

export interface Connection {
  client: Client;
  url: string;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`${what}: timed out after ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class Servers {
  readonly urls: string[];
  private readonly ca?: Buffer;
  private readonly downSince = new Map<string, number>();
  private readonly open = new Set<Client>();
  closed = false;

  constructor(readonly o: ServerOptions) {
    this.urls = o.urls.map((u) => u.replace(/\/$/, ''));
    this.ca = o.caFile ? readFileSync(o.caFile) : undefined;
    for (const u of this.urls) {
      if (u.startsWith('ldap://') && !o.startTls) {
        o.log?.warn({ directory: o.name, url: u }, 'ldap directory: plain ldap:// without startTls sends passwords in clear');
      }
    }
  }

  /** The URLs to try, in order: `prefer` first, then those not failing, else the one failing longest. */
  order(prefer?: string): string[] {
    const now = Date.now();
    const up = this.urls.filter((u) => {
      const since = this.downSince.get(u);
      return since === undefined || now - since >= this.o.retryAfterMs;
    });
    let list = up;
    if (!list.length) {
      const oldest = [...this.downSince.entries()].sort((a, b) => a[1] - b[1])[0];
      list = [oldest ? oldest[0] : this.urls[0]!];
    }
    if (prefer && this.urls.includes(prefer)) list = [prefer, ...list.filter((u) => u !== prefer)];
    return list;
  }

  markDown(url: string, err: unknown): void {
    const first = !this.downSince.has(url);
    this.downSince.set(url, Date.now());
    // Every failure at warn would flood the log while a server is away: the first, then debug.
    const fields = { directory: this.o.name, url, err: describe(err) };
    if (first) this.o.log?.warn(fields, 'ldap directory: server failed; trying the next one');
    else this.o.log?.debug(fields, 'ldap directory: server still failing');
  }

  markUp(url: string): void {
    if (this.downSince.delete(url)) this.o.log?.info({ directory: this.o.name, url }, 'ldap directory: server answers again');
  }

  private tls(url: string): ConnectionOptions {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    return { ...(this.ca ? { ca: this.ca } : {}), host, ...(isIP(host) ? {} : { servername: host }) };
  }

  /** A client for `url` (TLS per configuration, StartTLS done), not bound. */
  async connect(url: string): Promise<Client> {
    if (this.closed) throw new DirectoryUnavailableError('the directory is closed');
    const secure = url.startsWith('ldaps://');
    const client = new Client({
      url,
      timeout: this.o.timeoutMs,
      connectTimeout: this.o.timeoutMs,
      // Never give ldapts tlsOptions for ldap:// (it would speak TLS at once instead of StartTLS).
      ...(secure ? { tlsOptions: this.tls(url) } : {}),
      strictDN: false,
    });
    this.open.add(client);
    // ldapts bounds the TCP connect and the TLS handshake of ldaps:// (connectTimeout) and each
    // operation (timeout), and connects lazily at the first one; StartTLS's handshake it does
    // not bound, so that one is bounded here.
    if (this.o.startTls && !secure) {
      try {
        await withTimeout(client.startTLS(this.tls(url)), this.o.timeoutMs, `StartTLS with ${url}`, () => this.destroy(client));
      } catch (err) {
        this.destroy(client);
        throw err;
      }
    }
    return client;
  }

  /** Closes a client without waiting for the server. */
  destroy(client: Client): void {
    this.open.delete(client);
    client.unbind().catch(() => {});
  }

  /**
   * Connects to the first URL (in failover order, `prefer` first) that answers and binds as
   * `dn`. A bind refused for a non-server reason (wrong password…) is thrown as is, with the
   * connection closed; server failures move on to the next URL, and when none is left the
   * result is a DirectoryUnavailableError.
   */
  async bound(dn: string, password: string, opts: { prefer?: string; controls?: Control[]; user?: boolean } = {}): Promise<Connection> {
    const serverFailure = opts.user ? isServerFailureForUser : isServerFailure;
    if (!password) throw new Error('refusing an LDAP bind with an empty password');
    const errors: string[] = [];
    for (const url of this.order(opts.prefer)) {
      let client: Client | undefined;
      try {
        client = await this.connect(url);
        await client.bind(dn, password, opts.controls);
        this.markUp(url);
        return { client, url };
      } catch (err) {
        if (client) this.destroy(client);
        if (!serverFailure(err)) throw err;
        if (this.closed) throw new DirectoryUnavailableError('the directory is closed');
        this.markDown(url, err);
        errors.push(`${url}: ${describe(err)}`);
      }
    }
    throw new DirectoryUnavailableError(`no directory server answered (${errors.join('; ')})`);
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.open].map((c) => c.unbind().catch(() => {})));
    this.open.clear();
  }
}

/** Sends a search on `client` only if it is bound right now (see the file comment). */
export function boundSearch(client: Client, base: string, options: SearchOptions): Promise<SearchResult> {
  if (!client.isBound) return Promise.reject(new NotBoundError());
  return client.search(base, options);
}

/** Pages of a search, each page sent only while the connection is still bound. */
export async function* boundPages(client: Client, base: string, options: SearchOptions): AsyncGenerator<SearchResult> {
  if (!client.isBound) throw new NotBoundError();
  const it = client.searchPaginated(base, options);
  try {
    for (;;) {
      // searchPaginated does not reconnect after the first page, but check before every one.
      if (!client.isBound) throw new NotBoundError();
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    await it.return(undefined).catch(() => {});
  }
}

interface Slot {
  conn?: Connection;
  pending?: Promise<Connection>;
}

/** Service-account connections shared by all requests (see the file comment). */
export class ServicePool {
  private readonly slots: Slot[];
  private next = 0;

  constructor(
    private readonly servers: Servers,
    private readonly bindDn: string,
    private readonly bindPassword: string,
    size: number,
  ) {
    this.slots = Array.from({ length: Math.max(1, size) }, () => ({}));
  }

  private get(slot: Slot): Promise<Connection> {
    if (slot.conn?.client.isBound) return Promise.resolve(slot.conn);
    if (slot.conn) this.drop(slot, slot.conn);
    slot.pending ??= this.servers.bound(this.bindDn, this.bindPassword).then(
      (conn) => {
        slot.pending = undefined;
        if (this.servers.closed) {
          this.servers.destroy(conn.client);
          throw new DirectoryUnavailableError('the directory is closed');
        }
        slot.conn = conn;
        return conn;
      },
      (err) => {
        slot.pending = undefined;
        throw err;
      },
    );
    return slot.pending;
  }

  private drop(slot: Slot, conn: Connection): void {
    if (slot.conn === conn) slot.conn = undefined;
    this.servers.destroy(conn.client);
  }

  /**
   * Runs `fn` on a bound service connection. A connection that breaks under it is dropped and
   * `fn` runs again on another (at most once per URL, plus one); a server-side failure marks
   * the URL failing. Result codes that are the request's own (no such object…) are thrown as is.
   */
  async run<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    const errors: string[] = [];
    // URLs that failed this very call: a request waits on a hung server once, not twice.
    const failed = new Set<string>();
    for (let attempt = 0; attempt <= this.servers.urls.length; attempt++) {
      if (failed.size && this.servers.order().every((u) => failed.has(u))) break;
      const slot = this.slots[this.next++ % this.slots.length]!;
      const conn = await this.get(slot); // DirectoryUnavailableError when no server answers
      try {
        return await fn(conn);
      } catch (err) {
        if (err instanceof DirectoryUnavailableError || !isServerFailure(err)) throw err;
        this.drop(slot, conn);
        if (this.servers.closed) throw new DirectoryUnavailableError('the directory is closed');
        // A connection closed under us (idle timeout, server restart) is not yet the server
        // failing: the reconnect tells. A timeout or an error answer is.
        if (!(err instanceof NotBoundError) && !/Connection closed|Socket error|Socket connection not established/.test(describe(err))) {
          this.servers.markDown(conn.url, err);
          failed.add(conn.url);
        }
        errors.push(`${conn.url}: ${describe(err)}`);
      }
    }
    throw new DirectoryUnavailableError(`the directory failed (${errors.join('; ')})`);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.slots.map(async (slot) => {
        const conn = slot.conn ?? (await slot.pending?.catch(() => undefined));
        slot.conn = undefined;
        if (conn) await conn.client.unbind().catch(() => {});
      }),
    );
  }
}
