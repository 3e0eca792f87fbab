import type { Logger } from 'pino';
import { CountersignError } from './errors.js';

/** One plain-text mail. */
export interface Mail {
  to: string;
  subject: string;
  text: string;
}

/** Sends mail: plugins/mail-smtp in a deployment, the log in development. */
export interface Mailer {
  /** smtp, or log (development: nothing leaves the machine). */
  readonly kind: string;
  send(mail: Mail): Promise<void>;
  close(): Promise<void>;
}

/** Fills {{name}} placeholders; an unknown placeholder stays as it is, so a typo shows in the mail. */
export const fillTemplate = (template: string, values: Record<string, string>) =>
  template.replace(/\{\{\s*([A-Za-z]+)\s*\}\}/g, (whole, key: string) => (Object.hasOwn(values, key) ? values[key]! : whole));

/**
 * Development without SMTP: each mail is written to the log at info, link included, so the
 * person trying Countersign can open it. Production refuses this mailer (main.ts).
 */
export class LogMailer implements Mailer {
  readonly kind = 'log';
  constructor(private log: Logger) {}

  async send(mail: Mail): Promise<void> {
    this.log.info({ to: mail.to, subject: mail.subject }, `mail (not sent: no mail.smtp in development)\n${mail.text}`);
  }

  async close(): Promise<void> {}
}

/** Production without mail.smtp: nothing is sent and nothing is logged; each invitation says why. */
export class NoMailer implements Mailer {
  readonly kind = 'none';
  async send(): Promise<void> {
    throw new CountersignError(503, 'no_mail_server', 'not sent: no mail server is configured (mail.smtp)');
  }
  async close(): Promise<void> {}
}
