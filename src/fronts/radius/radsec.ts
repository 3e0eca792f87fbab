import { constants, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import type { AppContext } from '../../context.js';
import { normalizeAddress, type RadiusClient, type RadiusClients, type RadsecCertificate } from './clients.js';
import { RADSEC_SECRET, type Peer } from './transport.js';

/** RFC 2865 §3: a RADIUS packet is 20 to 4096 octets; its Length field frames it on the stream (RFC 6614 §2.1). */
const HEADER = 20;
const MAX_PACKET = 4096;
/** Answers a peer has not read yet: past this the peer is not reading, and the connection is closed. */
const MAX_WRITE_BACKLOG = 1024 * 1024;

type Handle = (msg: Buffer, peer: Peer) => Promise<void>;

/** A connection let through the address check and not yet through its TLS handshake. */
interface Handshake {
  /** The TCP connection the TLS server was handed. */
  socket: Socket;
  address: string;
  /** Its outcome is counted (a TLS error, a timeout, closed to make room); else its close is the peer's. */
  counted: boolean;
}

/** How long a refusal reason stays at debug after it was logged at warn. */
const WARN_EVERY_MS = 60_000;

/** The names a RadSec client may be recognised by: subject CN and DNS subjectAltNames. */
function certificateNames(cert: tls.PeerCertificate): string[] {
  const cn = cert.subject?.CN as string | string[] | undefined;
  const names = Array.isArray(cn) ? [...cn] : cn ? [cn] : [];
  for (const part of (cert.subjectaltname ?? '').split(', ')) if (part.startsWith('DNS:')) names.push(part.slice(4));
  return names;
}

/**
 * RadSec (RFC 6614): RADIUS over TLS. Who may connect is decided before any RADIUS is read:
 * a source address inside some RadSec client's block (else closed before the handshake), a
 * certificate that chains to radius.radsec.caFile (else the handshake fails), and a client
 * that names that certificate from that address (else closed). Each packet, framed by its
 * Length field, then goes through the RADIUS front's steps with the secret "radsec", and the
 * answer goes back on the same connection.
 */
export class RadsecListener {
  private server?: net.Server;
  private sockets = new Set<Socket>();
  private perClient = new Map<string, number>();
  private inflight = new Set<Promise<void>>();
  /**
   * Connections in their TLS handshake, oldest first, by "address|port" (the TLS socket Node
   * makes of a TCP connection shares its peer, not its identity), and how many per address.
   * Counted here rather than by net.Server.maxConnections, which drops the newest silently and
   * cannot tell a handshake from a client it serves.
   */
  private handshakes = new Map<string, Handshake>();
  private handshakesFrom = new Map<string, number>();
  /** Per refusal reason: when it was last logged at warn, and the refusals not logged since. */
  private warned = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private ctx: AppContext,
    private clients: RadiusClients,
    private handle: Handle,
  ) {}

  async listen(host: string, port: number): Promise<AddressInfo> {
    const c = this.ctx.config.radius.radsec;
    const read = (setting: string, file: string | undefined) => {
      try {
        return readFileSync(file!);
      } catch (err) {
        throw new Error(`radius.radsec.${setting} (${file}) cannot be read: ${(err as Error).message}`);
      }
    };
    // The TLS server never listens itself: it is handed the connections the address check lets through.
    const secure = tls.createServer({
      cert: read('certFile', c.certFile),
      key: read('keyFile', c.keyFile),
      ca: read('caFile', c.caFile),
      requestCert: true,
      // Checked in accept(), where the address is known and the refusal can be logged with it: an
      // unverified certificate is closed there before anything is read.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      handshakeTimeout: c.handshakeTimeoutSeconds * 1000,
      // No resumption: every connection shows its certificate, and is matched to a client again.
      secureOptions: constants.SSL_OP_NO_TICKET,
    });
    secure.on('tlsClientError', (err, socket) => {
      // A TLS error or the handshake timeout, on a connection still open; one that is closed
      // already (by the peer, or here to make room) was counted when its TCP connection closed.
      const handshake = this.handshakes.get(`${socket.remoteAddress}|${socket.remotePort}`);
      if (handshake && !handshake.counted) {
        handshake.counted = true;
        const timeout = (err as NodeJS.ErrnoException).code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
        this.refuse(socket, timeout ? 'handshake_timeout' : 'handshake_failed', handshake.address, { detail: err.message });
      }
      // With a listener here Node leaves the socket open (a handshake timeout would not close it).
      socket.destroy();
    });
    secure.on('secureConnection', (socket: tls.TLSSocket) => {
      this.handshakeOver(`${socket.remoteAddress}|${socket.remotePort}`);
      this.accept(socket);
    });
    const server = net.createServer((socket: Socket) => {
      // Before the handshake: an address no RadSec client may use costs no TLS work.
      const address = normalizeAddress(socket.remoteAddress ?? '');
      if (!this.clients.radsecAllowed(address)) return this.refuse(socket, 'unknown_address', address);
      if (this.admit(socket, address)) secure.emit('connection', socket);
    });
    server.on('error', (err) => this.ctx.log.error({ err }, 'radsec listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    // Held requests are released by the engine stopping; wait for their last word, then hang up.
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 2000))]);
    for (const socket of this.sockets) socket.destroy();
    // Else the server's close waits for them until their handshake timeout.
    for (const handshake of this.handshakes.values()) {
      handshake.counted = true;
      handshake.socket.destroy();
    }
    await closed;
  }

  /**
   * Whether a TCP connection from inside a RadSec client's block may start its TLS handshake.
   * Anyone in the block can connect, and until the handshake shows a certificate nothing says
   * who: at most maxHandshakesPerAddress such connections per address, so one source cannot
   * fill the listener, and at most maxHandshakes in all, the oldest closed to make room. A NAS's
   * handshake takes a round trip or two, so it gets through connections that never finish
   * theirs; and the clients' own connections, whose handshake is done, are never closed for it.
   */
  private admit(socket: Socket, address: string): boolean {
    const c = this.ctx.config.radius.radsec;
    const maxHandshakes = c.maxHandshakes ?? Math.max(1, Math.floor(c.maxConnections / 4));
    const from = this.handshakesFrom.get(address) ?? 0;
    if (from >= c.maxHandshakesPerAddress) {
      this.refuse(socket, 'too_many_handshakes', address, { handshakes: from });
      return false;
    }
    while (this.handshakes.size > 0 && (this.handshakes.size >= maxHandshakes || this.handshakes.size + this.sockets.size >= c.maxConnections)) {
      const [key, oldest] = this.handshakes.entries().next().value!;
      oldest.counted = true;
      this.handshakeOver(key);
      this.refuse(oldest.socket, 'handshake_evicted', oldest.address, { handshakes: this.handshakes.size + 1 });
    }
    if (this.sockets.size >= c.maxConnections) {
      this.refuse(socket, 'connections_full', address, { open: this.sockets.size });
      return false;
    }
    const key = `${socket.remoteAddress}|${socket.remotePort}`;
    const handshake: Handshake = { socket, address, counted: false };
    this.handshakes.set(key, handshake);
    this.handshakesFrom.set(address, from + 1);
    this.ctx.metrics.radsecHandshakes.set(this.handshakes.size);
    socket.once('close', () => {
      if (this.handshakes.get(key) !== handshake) return;
      this.handshakeOver(key);
      // Closed by the peer before its handshake was done.
      if (!handshake.counted) this.refuse(socket, 'handshake_failed', address, { detail: 'the peer closed the connection' });
    });
    return true;
  }

  /** The connection under `key` is no longer in its handshake: done, failed or closed. */
  private handshakeOver(key: string): void {
    const handshake = this.handshakes.get(key);
    if (!handshake) return;
    this.handshakes.delete(key);
    const left = (this.handshakesFrom.get(handshake.address) ?? 1) - 1;
    if (left > 0) this.handshakesFrom.set(handshake.address, left);
    else this.handshakesFrom.delete(handshake.address);
    this.ctx.metrics.radsecHandshakes.set(this.handshakes.size);
  }

  /**
   * Closes a connection no client is known for yet, counted each time. Anyone in a client's
   * block (or, for unknown_address, anywhere) can cause these as fast as they can connect, so
   * each reason is logged at warn at most once a minute, with how many were not; the rest at debug.
   */
  private refuse(socket: Socket, reason: string, address: string, fields: Record<string, unknown> = {}): void {
    this.ctx.metrics.radsecConnections.inc({ outcome: reason, client: '' });
    const entry = { address, transport: 'radsec', reason, ...fields };
    const now = this.ctx.clock.now();
    const last = this.warned.get(reason);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.suppressed++;
      this.ctx.log.debug(entry, 'radsec: connection refused');
    } else {
      this.warned.set(reason, { at: now, suppressed: 0 });
      this.ctx.log.warn(
        { ...entry, ...(last?.suppressed ? { refusedSinceLastWarning: last.suppressed } : {}) },
        'radsec: connection refused (logged at warn at most once a minute per reason; countersign_radsec_connections_total counts each)',
      );
    }
    socket.destroy();
  }

  /** A verified certificate: which client it is, then the connection's packets. */
  private accept(socket: tls.TLSSocket): void {
    const address = normalizeAddress(socket.remoteAddress ?? '');
    const peerCert = socket.getPeerCertificate();
    const cert: RadsecCertificate = { fingerprint256: peerCert?.fingerprint256 ?? '', names: peerCert ? certificateNames(peerCert) : [] };
    if (!socket.authorized || !cert.fingerprint256) {
      this.ctx.metrics.radsecConnections.inc({ outcome: 'untrusted_certificate', client: '' });
      this.ctx.log.warn(
        { address, transport: 'radsec', reason: 'untrusted_certificate', detail: String(socket.authorizationError ?? 'no certificate'), subject: cert.names[0] },
        'radsec: connection refused: the client certificate does not chain to radius.radsec.caFile',
      );
      return void socket.destroy();
    }
    const client = this.clients.matchRadsec(address, cert);
    if (!client) {
      this.ctx.metrics.radsecConnections.inc({ outcome: 'unknown_certificate', client: '' });
      this.ctx.log.warn(
        { address, transport: 'radsec', reason: 'unknown_certificate', subject: cert.names[0], fingerprint: `sha256:${cert.fingerprint256.replaceAll(':', '').toLowerCase()}` },
        'radsec: connection refused: no RadSec client names this certificate from this address',
      );
      return void socket.destroy();
    }
    const open = this.perClient.get(client.name) ?? 0;
    if (open >= this.ctx.config.radius.radsec.maxConnectionsPerClient) {
      this.ctx.metrics.radsecConnections.inc({ outcome: 'too_many_connections', client: client.name });
      this.ctx.log.warn({ address, transport: 'radsec', client: client.name, reason: 'too_many_connections', open }, 'radsec: connection refused');
      return void socket.destroy();
    }
    this.perClient.set(client.name, open + 1);
    this.sockets.add(socket);
    this.ctx.metrics.radsecConnections.inc({ outcome: 'accepted', client: client.name });
    this.ctx.metrics.radsecOpen.inc({ client: client.name });
    this.ctx.log.info({ address, port: socket.remotePort, transport: 'radsec', client: client.name, subject: cert.names[0], protocol: socket.getProtocol() }, 'radsec: connection accepted');
    this.serve(socket, client, address, cert);
  }

  /** Frames packets by their Length field and hands each to the RADIUS steps; answers go back on this connection. */
  private serve(socket: tls.TLSSocket, first: RadiusClient, address: string, cert: RadsecCertificate): void {
    const limits = this.ctx.config.radius.radsec;
    const id = randomBytes(12).toString('base64url');
    let why = 'peer';
    const close = (reason: string) => {
      why = reason;
      socket.destroy();
    };
    const send = (buf: Buffer) => {
      if (socket.destroyed || !socket.writable) return;
      if (socket.writableLength > MAX_WRITE_BACKLOG) return close('write_backlog');
      socket.write(buf);
    };
    let pending = 0;
    // Only a partial packet is ever kept: at most MAX_PACKET - 1 octets.
    let buffered: Buffer = Buffer.alloc(0);
    socket.setTimeout(limits.idleTimeoutSeconds * 1000);
    // Idle: nothing read or written for the timeout, and no request being worked on (push-wait holds one).
    socket.on('timeout', () => pending === 0 && close('idle'));
    socket.on('error', () => {});
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.perClient.set(first.name, (this.perClient.get(first.name) ?? 1) - 1);
      if (this.perClient.get(first.name)! <= 0) this.perClient.delete(first.name);
      this.ctx.metrics.radsecOpen.dec({ client: first.name });
      this.ctx.metrics.radsecClosed.inc({ reason: this.server ? why : 'shutdown', client: first.name });
      this.ctx.log.info({ address, transport: 'radsec', client: first.name, reason: this.server ? why : 'shutdown' }, 'radsec: connection closed');
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      while (buffered.length >= 4) {
        const length = buffered.readUInt16BE(2);
        if (length < HEADER || length > MAX_PACKET) {
          this.ctx.log.warn({ address, transport: 'radsec', client: first.name, length }, 'radsec: bad packet length; connection closed');
          return close('malformed_length');
        }
        if (buffered.length < length) break;
        const packet = Buffer.from(buffered.subarray(0, length));
        buffered = buffered.subarray(length);
        // A client removed (or changed) since the handshake serves no more requests.
        const client = this.clients.matchRadsec(address, cert);
        if (client?.name !== first.name) {
          this.ctx.log.warn({ address, transport: 'radsec', client: first.name }, 'radsec: the client is no longer configured for this certificate; connection closed');
          return close('client_removed');
        }
        if (pending >= limits.maxRequestsPerConnection) {
          this.ctx.metrics.radiusDropped.inc({ reason: 'radsec_too_many_requests' });
          this.ctx.metrics.radiusClientDropped.inc({ client: client.name, reason: 'radsec_too_many_requests' });
          this.ctx.log.warn({ address, transport: 'radsec', client: client.name, pending }, 'radius: request dropped: too many requests in progress on this RadSec connection');
          continue;
        }
        pending++;
        const peer: Peer = {
          transport: 'radsec',
          address,
          port: socket.remotePort ?? 0,
          client: { ...client, secret: RADSEC_SECRET },
          dedupe: `radsec:${id}`,
          send,
        };
        const p = this.handle(packet, peer)
          .catch((err) => this.ctx.log.error({ err }, 'radsec: unexpected failure; request dropped'))
          .finally(() => pending--);
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
      }
    });
  }
}
