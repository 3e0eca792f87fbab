import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import radius from 'radius';
import { makePki, type Pki } from '../helpers/certs.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const available = hasCommand('openssl') && hasCommand('oathtool');

/** A TCP connection to the RadSec port that never starts TLS, and a promise of its close. */
interface Idle {
  socket: net.Socket;
  closed: Promise<void>;
  isClosed: () => boolean;
}

function idle(port: number, localAddress: string): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let done = false;
    const closed = new Promise<void>((r) => socket.once('close', () => ((done = true), r())));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed, isClosed: () => done }));
    socket.once('close', () => reject(new Error(`could not connect from ${localAddress}`)));
  });
}

/** Resolves with how many of `conns` the server closed, once `n` have or `ms` passed. */
async function closedCount(conns: Idle[], n: number, ms = 10_000): Promise<number> {
  let count = 0;
  await new Promise<void>((resolve) => {
    const guard = setTimeout(resolve, ms);
    for (const c of conns)
      void c.closed.then(() => {
        if (++count === n) {
          clearTimeout(guard);
          resolve();
        }
      });
  });
  return conns.filter((c) => c.isClosed()).length;
}

/** A NAS speaking RadSec with node:tls: one packet, the answer (or nothing if the server hung up). */
function ask(port: number, pki: Pki, packet: Buffer, localAddress: string): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      socket: net.connect({ host: '127.0.0.1', port, localAddress }),
      ca: readFileSync(pki.ca),
      cert: readFileSync(pki.clients.nas!.cert),
      key: readFileSync(pki.clients.nas!.key),
      servername: 'localhost',
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => finish(undefined), 10_000);
    const finish = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on('secureConnect', () => socket.write(packet));
    socket.on('data', (d: Buffer) => finish(d));
    socket.on('error', () => {});
    socket.on('close', () => finish(undefined));
  });
}

const metric = async (s: TestServer, re: RegExp) => Number(re.exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);

/**
 * Connections that never show a certificate must not lock the NASes out (issue 21, finding 8):
 * before, ~maxConnections idle TCP connections from any address in a RadSec client's block
 * filled the listener until the handshake timeout, and Node dropped every connection after them.
 */
describe('RadSec: connections that never finish the handshake', () => {
  let dir: string;
  let s: TestServer;
  let pki: Pki;
  const otp: Record<string, string> = {};
  const opened: Idle[] = [];

  before(async () => {
    if (!available) return;
    dir = mkdtempSync(join(tmpdir(), 'cs-radsec-limits-'));
    pki = makePki(dir, { name: 'limits', clients: ['nas'] });
    s = await startTestServer(
      {
        COUNTERSIGN_RADIUS_RADSEC_ENABLED: 'true',
        COUNTERSIGN_RADIUS_RADSEC_HOST: '127.0.0.1',
        COUNTERSIGN_RADIUS_RADSEC_PORT: '0',
        COUNTERSIGN_RADIUS_RADSEC_CERT_FILE: pki.server.cert,
        COUNTERSIGN_RADIUS_RADSEC_KEY_FILE: pki.server.key,
        COUNTERSIGN_RADIUS_RADSEC_CA_FILE: pki.ca,
        // Long enough that no idle connection here ends by the timeout: only the limits close them.
        COUNTERSIGN_RADIUS_RADSEC_HANDSHAKE_TIMEOUT_SECONDS: '60',
        // Small, so that a few dozen connections reach it; handshakes then default to a quarter (8).
        COUNTERSIGN_RADIUS_RADSEC_MAX_CONNECTIONS: '32',
      },
      {},
      (config) => {
        config.radius.clients = [{ ...nasConfig('', { name: 'radsec-nas', address: '127.0.0.0/8', mode: 'append' }), radsec: { names: ['nas'], fingerprints: [] } }];
      },
    );
    // One user per test: a code is accepted once.
    for (const name of ['alice', 'bob']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
      otp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
  });
  after(async () => {
    for (const c of opened) c.socket.destroy();
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const accessRequest = (identifier: number, user: string) =>
    radius.encode({
      code: 'Access-Request',
      secret: 'radsec',
      identifier,
      attributes: [
        ['User-Name', user],
        ['User-Password', `${user}-pw,${oathTotp(otp[user]!)}`],
      ],
      add_message_authenticator: true,
    });

  it('idle connections from addresses inside the client block, more than maxConnections, do not keep the NAS out', async (t) => {
    if (!requirePeer(t, available, 'openssl and oathtool')) return;
    const port = s.radsecPort!;
    // 40 from one address (more than maxConnections), then 4 from each of three more.
    const flood: Idle[] = [];
    for (let i = 0; i < 40; i++) flood.push(await idle(port, '127.0.0.1'));
    const spread: Idle[] = [];
    for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) for (let i = 0; i < 4; i++) spread.push(await idle(port, from));
    opened.push(...flood, ...spread);

    // The NAS, from another address in the block, connects after all of them and is answered.
    const answer = await ask(port, pki, accessRequest(1, 'alice'), '127.0.0.2');
    assert.ok(answer, 'the NAS got an answer');
    assert.equal(radius.decode({ packet: answer, secret: 'radsec' }).code, 'Access-Accept');

    // One address gets maxHandshakesPerAddress (4) handshakes: the other 36 were closed at once.
    assert.equal(await metric(s, /countersign_radsec_connections_total\{outcome="too_many_handshakes",client=""\} (\d+)/), 36);
    // At most maxHandshakes (8) wait in all: each newer one, the NAS's too, closed the oldest
    // (the first address's 4, the second's 4, one of the third's), and the NAS's handshake then
    // finished: the newest 7 are left.
    assert.equal(await metric(s, /countersign_radsec_connections_total\{outcome="handshake_evicted",client=""\} (\d+)/), 9);
    assert.equal(await metric(s, /countersign_radsec_handshakes_in_progress (\d+)/), 7);
    const all = [...flood, ...spread];
    assert.equal(await closedCount(all, 45), 45);
    assert.deepEqual(
      all.map((c) => c.isClosed()),
      all.map((_, i) => i < 45),
    );
  });

  it('a NAS connection that has finished its handshake is not evicted by newer unauthenticated ones', async (t) => {
    if (!requirePeer(t, available, 'openssl and oathtool')) return;
    const port = s.radsecPort!;
    // Held open: the NAS's connection, authenticated.
    const socket = tls.connect({
      socket: net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }),
      ca: readFileSync(pki.ca),
      cert: readFileSync(pki.clients.nas!.cert),
      key: readFileSync(pki.clients.nas!.key),
      servername: 'localhost',
    });
    socket.on('error', () => {});
    const connected = await new Promise<boolean>((r) => {
      socket.once('secureConnect', () => r(true));
      socket.once('close', () => r(false));
    });
    assert.ok(connected, 'the NAS connected');
    for (let i = 0; i < 50 && (await metric(s, /countersign_radsec_open_connections\{client="radsec-nas"\} (\d+)/)) < 1; i++) await new Promise((r) => setTimeout(r, 50));
    // Twelve addresses' worth of handshakes evict each other, never the NAS.
    for (let a = 10; a < 22; a++) for (let i = 0; i < 4; i++) opened.push(await idle(port, `127.0.0.${a}`));
    const answer = await new Promise<Buffer | undefined>((resolve) => {
      socket.once('data', (d: Buffer) => resolve(d));
      socket.once('close', () => resolve(undefined));
      socket.write(accessRequest(2, 'bob'));
    });
    socket.destroy();
    assert.ok(answer, 'answered on the connection it already had');
    assert.equal(radius.decode({ packet: answer, secret: 'radsec' }).code, 'Access-Accept');
  });
});
