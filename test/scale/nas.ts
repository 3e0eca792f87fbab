/**
 * A NAS in a few lines: one UDP socket on a fixed loopback source port, so a
 * retransmit (the same bytes from the same port) is recognisable as such by
 * any Countersign instance it reaches.
 */
import dgram from 'node:dgram';
import radius from 'radius';

export interface RadiusReply {
  code: string;
  identifier: number;
  attributes: Record<string, unknown>;
  raw: Buffer;
}

/**
 * Encodes an Access-Request with a valid Message-Authenticator. The radius
 * package computes one only when asked with `add_message_authenticator`: an
 * explicit ['Message-Authenticator', Buffer.alloc(16)] attribute is sent as
 * given (all zeros), which a server that checks it drops.
 */
export function accessRequest(secret: string, identifier: number, attributes: [string, string | Buffer][]): Buffer {
  const packet = radius.encode({ code: 'Access-Request', secret, identifier, attributes, add_message_authenticator: true });
  const decoded = radius.decode({ packet, secret });
  const ma = decoded.attributes['Message-Authenticator'] as Buffer | undefined;
  if (!ma || ma.equals(Buffer.alloc(16))) throw new Error('the Access-Request carries no Message-Authenticator');
  return packet;
}

export class Nas {
  private replies: RadiusReply[] = [];
  private wake?: () => void;

  private constructor(
    private socket: dgram.Socket,
    private secret: string,
  ) {
    socket.on('message', (raw) => {
      try {
        const p = radius.decode({ packet: raw, secret });
        this.replies.push({ code: p.code, identifier: p.identifier, attributes: p.attributes, raw });
      } catch {
        this.replies.push({ code: 'undecodable', identifier: raw[1] ?? -1, attributes: {}, raw });
      }
      this.wake?.();
    });
  }

  static async open(secret: string): Promise<Nas> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => resolve());
    });
    return new Nas(socket, secret);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(packet: Buffer, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(packet, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }

  /** Every reply so far to `identifier`. */
  repliesTo(identifier: number): RadiusReply[] {
    return this.replies.filter((r) => r.identifier === identifier);
  }

  /** The next reply to `request` (matched by identifier and a valid Response Authenticator), or null after `ms`. */
  async reply(request: Buffer, ms: number): Promise<RadiusReply | null> {
    const id = request[1]!;
    const end = Date.now() + ms;
    for (;;) {
      const i = this.replies.findIndex((r) => r.identifier === id);
      if (i >= 0) {
        const [r] = this.replies.splice(i, 1);
        if (!radius.verify_response({ request, response: r!.raw, secret: this.secret })) {
          throw new Error(`reply ${r!.code} to identifier ${id} has a wrong Response Authenticator`);
        }
        return r!;
      }
      const left = end - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}
