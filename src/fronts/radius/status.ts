import type { AppContext } from '../../context.js';
import type { RadiusClient } from './clients.js';
import { encodeAccountingResponse, type DropFn, type SendFn } from './accounting.js';
import { checkMessageAuthenticator, encodeReply, type RawPacket } from './packet.js';

/** How long a Status-Server waits for the store to answer a ping before it is left unanswered. */
const STORE_PING_MS = 1000;

/**
 * Status-Server (RFC 5997): a proxy (FreeRADIUS, radsecproxy) asks whether this home server
 * is alive. A known client with a valid Message-Authenticator (which Status-Server MUST carry,
 * §3) hears Access-Accept on the auth port, Accounting-Response on the accounting port, both
 * with Message-Authenticator. No login, no audit event, no duplicate cache (§3: each one is
 * answered). While the store does not answer no login can be decided, so none is answered
 * either: the proxy marks us dead and fails over, as it should.
 */
export async function answerStatusServer(
  ctx: AppContext,
  raw: RawPacket,
  client: RadiusClient,
  address: string,
  port: 'auth' | 'accounting',
  send: SendFn,
  drop: DropFn,
  transport: 'udp' | 'radsec' = 'udp',
): Promise<void> {
  const ma = checkMessageAuthenticator(raw, client.secret);
  // Its own reasons: requireMessageAuthenticator does not apply, Status-Server over UDP always
  // needs one; over RadSec TLS protects it (RFC 6614), so it is checked only when present.
  if (ma === 'missing' && transport === 'udp') return drop('status_server_missing_message_authenticator', address, { client: client.name, port });
  if (ma === 'bad') return drop('bad_message_authenticator', address, { client: client.name, port, code: 'Status-Server' });
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    ctx.store.ping().then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), STORE_PING_MS))),
  ]);
  clearTimeout(timer);
  if (!ready) return drop('status_server_store_unavailable', address, { client: client.name, port });
  send(port === 'auth' ? encodeReply(raw, 'Access-Accept', client.secret, []) : encodeAccountingResponse(raw, client.secret, { messageAuthenticator: true }));
  ctx.metrics.radiusStatusServer.inc({ client: client.name, port });
  ctx.log.debug({ address, client: client.name, port }, 'radius: Status-Server answered');
}
