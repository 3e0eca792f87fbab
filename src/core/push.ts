/**
 * The interface every push plugin implements (plugins/push-fcm,
 * plugins/push-apns, plugins/push-webpush). Core decides what to send and to which device; a
 * transport only speaks its service's wire format.
 */

/** android: FCM, ios: APNs, webpush: standard Web Push (RFC 8030) to the web app. */
export type Platform = 'android' | 'ios' | 'webpush';

/** What a push carries: enough to show the login, nothing secret. */
export interface PushMessage {
  challengeId: string;
  /** The same short ID the login screen shows. */
  displayCode: string;
  user: string;
  /** Relying party, NAS or workstation that asked. */
  client?: string;
  ip?: string;
  /** ms since the epoch */
  createdAt: number;
  deadline: number;
  /** Which actions a paired watch may offer for this login. */
  watch: 'approve-reject' | 'reject-only';
  /** The phone must ask the user for the number shown on the login screen. */
  numberMatching: boolean;
  /** A short text the relying party asked to show (CIBA binding_message). */
  bindingMessage?: string;
}

export interface PushTarget {
  deviceId: string;
  platform: Platform;
  /** FCM registration token, APNs device token (hex), or the JSON of a Web Push PushSubscription. */
  token: string;
}

export type PushResult =
  | { ok: true; messageId?: string }
  /**
   * stale: the service says the token is dead; the device is marked stale. refused: the
   * transport did not connect, because the endpoint's host or address is not one this server
   * sends to (src/core/push-endpoints.ts); the word says why.
   */
  | { ok: false; stale: boolean; error: string; refused?: string };

export interface PushTransport {
  readonly platform: Platform;
  /** Never throws: a failed send is a result, and never approves anything. */
  send(target: PushTarget, message: PushMessage, now: number): Promise<PushResult>;
  close(): Promise<void>;
}

/**
 * The payload every transport carries (FCM data, the APNs `countersign` key, the
 * Web Push message's JSON): one flat map of strings, so the apps parse one format.
 */
export function pushFields(m: PushMessage): Record<string, string> {
  return {
    type: 'countersign.challenge',
    challengeId: m.challengeId,
    displayCode: m.displayCode,
    user: m.user,
    ...(m.client !== undefined ? { client: m.client } : {}),
    ...(m.ip !== undefined ? { ip: m.ip } : {}),
    createdAt: String(m.createdAt),
    deadline: String(m.deadline),
    watch: m.watch,
    numberMatching: String(m.numberMatching),
    ...(m.bindingMessage !== undefined ? { bindingMessage: m.bindingMessage } : {}),
  };
}
