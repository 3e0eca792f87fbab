import type dgram from 'node:dgram';
import { normalizeAddress, type RadiusClient } from './clients.js';

/** RFC 6614 §2.3: over RadSec the shared secret is the literal "radsec" (TLS protects the packet). */
export const RADSEC_SECRET = 'radsec';

/**
 * Where a RADIUS packet came from and how to answer it, whatever carried it: the steps of
 * server.ts, accounting.ts and status.ts read this, never a socket.
 */
export interface Peer {
  transport: 'udp' | 'radsec';
  /** The source address (IPv4 without ::ffff:). */
  address: string;
  port: number;
  /**
   * The client the transport identified: RadSec by the certificate (with the secret "radsec").
   * Absent for UDP, where the source address names the client.
   */
  client?: RadiusClient;
  /**
   * What, besides client, address, identifier and authenticator, tells one request from another
   * in duplicate detection (RFC 5080): UDP the source port, RadSec the connection.
   */
  dedupe: string;
  /** Sends an answer; gone quietly when the connection is. */
  send(buf: Buffer): void;
}

/** A datagram's sender: answered from the socket it arrived on, to the port it came from. */
export function udpPeer(socket: dgram.Socket, rinfo: dgram.RemoteInfo): Peer {
  return {
    transport: 'udp',
    address: normalizeAddress(rinfo.address),
    port: rinfo.port,
    dedupe: String(rinfo.port),
    send: (buf) => socket.send(buf, rinfo.port, rinfo.address),
  };
}
