import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import type { Mail, Mailer } from '../../src/core/mail.js';

export interface SmtpOptions {
  host: string;
  port: number;
  /** starttls: upgrade, and refuse a server that does not offer it; tls: TLS from the start; none: plain. */
  security: 'starttls' | 'tls' | 'none';
  user?: string;
  password?: string;
  caFile?: string;
  timeoutMs: number;
  from: string;
}

/**
 * Mail over SMTP with nodemailer: STARTTLS (required, never silently plain) or implicit TLS,
 * AUTH when a user is set, the server's certificate checked against the system CAs or caFile.
 * One pooled connection, reused for a batch of invitations.
 */
export default function createSmtpMailer(o: SmtpOptions): Mailer {
  const transport = nodemailer.createTransport({
    host: o.host,
    port: o.port,
    secure: o.security === 'tls',
    requireTLS: o.security === 'starttls',
    ignoreTLS: o.security === 'none',
    auth: o.user ? { user: o.user, pass: o.password } : undefined,
    tls: o.caFile ? { ca: readFileSync(o.caFile, 'utf8') } : undefined,
    pool: true,
    maxConnections: 2,
    connectionTimeout: o.timeoutMs,
    greetingTimeout: o.timeoutMs,
    socketTimeout: o.timeoutMs,
  });
  return {
    kind: 'smtp',
    async send(mail: Mail) {
      await transport.sendMail({ from: o.from, to: mail.to, subject: mail.subject, text: mail.text });
    },
    async close() {
      transport.close();
    },
  };
}
