import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';

/** A mail as the receiver got it, with the headers and the body decoded enough to read. */
export interface ReceivedMail {
  envelopeFrom: string;
  envelopeTo: string[];
  /** Who authenticated (AUTH PLAIN), and whether the session had switched to TLS (STARTTLS). */
  authUser?: string;
  secure: boolean;
  headers: Record<string, string>;
  text: string;
}

export interface SmtpReceiver {
  port: number;
  /** The receiver's self-signed certificate (PEM file): the sender's CA. */
  caFile: string;
  mails: ReceivedMail[];
  /** Resolves once `n` mails have arrived (at most `ms`). */
  waitFor(n: number, ms?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

/** quoted-printable soft breaks and =XX, the way nodemailer writes a text body. */
const decodeQp = (s: string) => s.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

function parse(raw: string): { headers: Record<string, string>; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  const body = raw.slice(split + 4);
  return { headers, text: /quoted-printable/i.test(headers['content-transfer-encoding'] ?? '') ? decodeQp(body) : body };
}

/**
 * A real SMTP receiver (the smtp-server package) on loopback: STARTTLS with a throwaway
 * certificate made by openssl, AUTH PLAIN required (and only after STARTTLS, smtp-server's
 * default), every accepted mail kept in `mails`.
 */
export async function startSmtpReceiver(auth: { user: string; password: string }): Promise<SmtpReceiver> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-smtp-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { encoding: 'utf8', timeout: 20_000 },
  );
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  const mails: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    secure: false,
    key: readFileSync(key),
    cert: readFileSync(cert),
    authMethods: ['PLAIN'],
    authOptional: false,
    logger: false,
    onAuth(a, _session, cb) {
      if (a.username === auth.user && a.password === auth.password) return cb(null, { user: a.username });
      return cb(new Error('Invalid username or password'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          envelopeTo: session.envelope.rcptTo.map((t) => t.address),
          authUser: session.user as string | undefined,
          secure: session.secure,
          ...parse(Buffer.concat(chunks).toString('utf8')),
        });
        for (const w of waiters) w();
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    caFile: cert,
    mails,
    async waitFor(n, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (mails.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} mails, got ${mails.length}`);
        await new Promise<void>((res) => {
          const done = () => {
            waiters.delete(done);
            res();
          };
          waiters.add(done);
          setTimeout(done, 200);
        });
      }
      return mails;
    },
    async close() {
      await new Promise<void>((res) => server.close(() => res()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
