import apn from '@parse/node-apn';
import { pushFields, type PushMessage, type PushResult, type PushTarget, type PushTransport } from '../../src/core/push.js';

export interface ApnsOptions {
  /** Token-based auth: the .p8 key (PEM text or its path), its key ID and the team ID. */
  token: { key: string; keyId: string; teamId: string };
  /** api.push.apple.com when true, api.sandbox.push.apple.com otherwise. */
  production: boolean;
  /** The app's bundle ID (apns-topic). */
  topic: string;
  /** Another server instead of Apple's (tests); node-apn's own options. */
  address?: string;
  port?: number;
  /** CA certificates (PEM) to trust instead of the system roots, for a server with its own certificate. */
  ca?: string | Buffer;
  /** Upper bound for one send, retries included; default 10 s. */
  timeoutMs?: number;
}

/** The reasons with which APNs says a device token will never work again. */
const DEAD_TOKEN = new Set(['Unregistered', 'ExpiredToken', 'BadDeviceToken']);


function alertBody(m: PushMessage): string {
  return `Approve sign-in${m.client ? ` to ${m.client}` : ''}${m.ip ? ` from ${m.ip}` : ''}? ID ${m.displayCode}`;
}

function notification(m: PushMessage, topic: string): apn.Notification {
  const note = new apn.Notification();
  note.topic = topic;
  note.pushType = 'alert';
  note.priority = 10;
  // Seconds since the epoch, rounded down: never deliver after the deadline.
  note.expiry = Math.max(0, Math.floor(m.deadline / 1000));
  note.collapseId = m.challengeId;
  note.alert = { title: 'Sign-in request', body: alertBody(m) };
  note.aps.category = m.watch === 'approve-reject' ? 'COUNTERSIGN_APPROVE_REJECT' : 'COUNTERSIGN_REJECT_ONLY';
  // Time-sensitive alerts break through Focus, which a waiting login needs.
  note.aps['interruption-level'] = 'time-sensitive';
  note.payload = { countersign: pushFields(m) };
  return note;
}

export default function createApnsTransport(options: ApnsOptions): PushTransport {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const provider = new apn.Provider({
    token: options.token,
    production: options.production,
    ...(options.address !== undefined ? { address: options.address } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.ca !== undefined ? { ca: [options.ca] } : {}),
    requestTimeout: timeoutMs,
  });
  let closed = false;

  return {
    platform: 'ios',

    async send(target: PushTarget, message: PushMessage): Promise<PushResult> {
      if (closed) return { ok: false, stale: false, error: 'push-apns: transport is closed' };
      let timer: NodeJS.Timeout | undefined;
      // requestTimeout bounds each attempt; node-apn may retry 5xx, so bound the whole send too.
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      try {
        const result = await Promise.race([provider.send(notification(message, options.topic), target.token), timeout]);
        if (result === 'timeout') return { ok: false, stale: false, error: `APNs did not answer within ${timeoutMs} ms` };
        const sent = result.sent[0];
        if (sent) return { ok: true, messageId: (sent as { 'apns-id'?: string })['apns-id'] };
        const failure = result.failed[0];
        const reason = failure?.response?.reason;
        return {
          ok: false,
          stale: reason !== undefined && DEAD_TOKEN.has(reason),
          error: failure?.status
            ? `APNs ${failure.status} ${reason ?? ''}`.trim()
            : `APNs: ${failure?.error?.message ?? 'no answer'}`,
        };
      } catch (err) {
        // Provider.send settles every recipient itself; this only catches a bug in building the notification.
        return { ok: false, stale: false, error: `APNs: ${err instanceof Error ? err.message : String(err)}` };
      } finally {
        clearTimeout(timer);
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      // Provider.shutdown returns nothing despite its typing, and in node-apn
      // 8.1 its callback never fires once a connection error has destroyed the
      // session (it asks the dead session to close, which Node ignores). The
      // shutdown itself starts synchronously; the wait only lets in-flight
      // sends finish, and those are bounded by requestTimeout.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => provider.shutdown(() => resolve())),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    },
  };
}
