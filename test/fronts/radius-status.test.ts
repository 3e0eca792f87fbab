import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, radclient } from '../helpers/radclient.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const SECRET = 'radius-status-secret';

const metric = async (s: TestServer, pattern: RegExp) => Number(pattern.exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);
const dropped = (s: TestServer, reason: string) => metric(s, new RegExp(`countersign_radius_dropped_total\\{reason="${reason}"\\} (\\d+)`));

/** A Status-Server with a random Request Authenticator and Message-Authenticator (RFC 5997 §3). */
function statusServer(opts: { secret?: string; proxyState?: Buffer } = {}): Buffer {
  const ps = opts.proxyState ? [Buffer.from([33, opts.proxyState.length + 2]), opts.proxyState] : [];
  const pkt = Buffer.concat([Buffer.from([12, randomBytes(1)[0]!, 0, 0]), randomBytes(16), ...ps, Buffer.from([80, 18]), Buffer.alloc(16)]);
  pkt.writeUInt16BE(pkt.length, 2);
  createHmac('md5', opts.secret ?? SECRET).update(pkt).digest().copy(pkt, pkt.length - 16);
  return pkt;
}

async function exchange(pkt: Buffer, port: number, ms = 1500): Promise<Buffer | null> {
  const sock = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      sock.on('message', (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      sock.bind(0, '127.0.0.1', () => sock.send(pkt, port, '127.0.0.1'));
    });
  } finally {
    sock.close();
  }
}

/** The answer's code, with its Response Authenticator and its Message-Authenticator (first, RFC 3579 §3.2) checked. */
function verify(reply: Buffer | null, request: Buffer): { code: number; attributes: [number, Buffer][] } {
  assert.ok(reply, 'an answer');
  assert.equal(reply[1], request[1], 'Identifier echoed');
  assert.equal(reply.readUInt16BE(2), reply.length);
  const requestAuth = request.subarray(4, 20);
  const expected = createHash('md5').update(reply.subarray(0, 4)).update(requestAuth).update(reply.subarray(20)).update(SECRET).digest();
  assert.ok(expected.equals(reply.subarray(4, 20)), 'Response Authenticator verifies');
  assert.deepEqual([reply[20], reply[21]], [80, 18], 'Message-Authenticator first');
  const zeroed = Buffer.from(reply);
  requestAuth.copy(zeroed, 4);
  zeroed.fill(0, 22, 38);
  assert.ok(createHmac('md5', SECRET).update(zeroed).digest().equals(reply.subarray(22, 38)), 'Message-Authenticator verifies');
  const attributes: [number, Buffer][] = [];
  for (let off = 20; off < reply.length; off += reply[off + 1]!) attributes.push([reply[off]!, reply.subarray(off + 2, off + reply[off + 1]!)]);
  return { code: reply[0]!, attributes };
}

describe('Status-Server (RFC 5997)', () => {
  let s: TestServer;
  let auth: number;
  let acct: number;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.radius.clients = [nasConfig(SECRET, { name: 'proxy', address: '127.0.0.1/32', requireMessageAuthenticator: false })];
    });
    auth = s.radiusPort!;
    acct = s.radiusAccountingPort!;
  });
  after(() => s?.close());

  it('radclient status on the auth port → Access-Accept with Message-Authenticator; on the accounting port → Accounting-Response', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const a = await radclient(auth, SECRET, { 'NAS-Identifier': 'fr-proxy' }, { type: 'status' });
    assert.equal(a.code, 'Access-Accept', a.output);
    assert.match(a.attributes['Message-Authenticator'] ?? '', /^0x[0-9a-f]{32}$/);
    const b = await radclient(acct, SECRET, { 'NAS-Identifier': 'fr-proxy' }, { type: 'status' });
    assert.equal(b.code, 'Accounting-Response', b.output);
    assert.match(b.attributes['Message-Authenticator'] ?? '', /^0x[0-9a-f]{32}$/);
    assert.equal(await metric(s, /countersign_radius_status_server_total\{client="proxy",port="auth"\} (\d+)/), 1);
    assert.equal(await metric(s, /countersign_radius_status_server_total\{client="proxy",port="accounting"\} (\d+)/), 1);
  });

  it('without Message-Authenticator, or with a wrong secret → dropped and counted (even where Access-Requests may omit it)', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    for (const port of [auth, acct]) {
      const r = await radclient(port, SECRET, { 'NAS-Identifier': 'fr-proxy' }, { type: 'status', messageAuthenticator: false, timeout: 1 });
      assert.equal(r.code, 'timeout', r.output);
    }
    assert.equal(await dropped(s, 'status_server_missing_message_authenticator'), 2);
    const wrong = await radclient(auth, 'not-the-secret', {}, { type: 'status', timeout: 1 });
    assert.equal(wrong.code, 'timeout', wrong.output);
    assert.equal(await dropped(s, 'bad_message_authenticator'), 1);
  });

  it('an unknown client → no answer', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const before = await dropped(s, 'unknown_client');
    const r = await radclient(auth, SECRET, { 'Packet-Src-IP-Address': '127.0.0.2' }, { type: 'status', timeout: 1 });
    assert.equal(r.code, 'timeout', r.output);
    assert.equal(await dropped(s, 'unknown_client'), before + 1);
  });

  it('answers are checked by hand: both authenticators, Proxy-State echoed; the same packet twice is answered twice, never as a duplicate', async () => {
    const pkt = statusServer({ proxyState: Buffer.from('ps-1') });
    const first = verify(await exchange(pkt, auth), pkt);
    assert.equal(first.code, 2, 'Access-Accept');
    assert.deepEqual(
      first.attributes.filter(([t]) => t === 33).map(([, v]) => v.toString()),
      ['ps-1'],
    );
    assert.equal(verify(await exchange(pkt, auth), pkt).code, 2, 'answered again');
    const onAcct = verify(await exchange(pkt, acct), pkt);
    assert.equal(onAcct.code, 5, 'Accounting-Response');
    assert.doesNotMatch((await s.api('GET', '/metrics')).body as string, /countersign_radius_duplicates_total\{/, 'no duplicate counted');
    const audit = (await s.api('GET', '/api/v1/audit?front=radius&limit=1000')).body.events as any[];
    assert.equal(audit.length, 0, 'no audit event, no login');
  });

  it('a store that does not answer: no answer, so a proxy fails over', async () => {
    const ping = s.ctx.store.ping;
    s.ctx.store.ping = () => Promise.reject(new Error('store down'));
    try {
      const pkt = statusServer();
      assert.equal(await exchange(pkt, auth, 1500), null);
      assert.equal(await dropped(s, 'status_server_store_unavailable'), 1);
    } finally {
      s.ctx.store.ping = ping;
    }
    const pkt = statusServer();
    assert.equal(verify(await exchange(pkt, auth), pkt).code, 2, 'answered again once the store is back');
  });
});
