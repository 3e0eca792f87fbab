import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import radius from 'radius';
import { makePki, type Issued, type Pki } from '../helpers/certs.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { radsecproxyAvailable, startRadsecproxy, type Radsecproxy } from '../helpers/radsecproxy.js';
import { wrongCode, oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const available = radsecproxyAvailable() && hasCommand('oathtool');
const NAS_SECRET = 'nas-to-radsecproxy-1';
const UDP_SECRET = 'radsecproxy-udp-secret';


interface Probe {
  /** Whether our side finished its handshake (in TLS 1.3 it does before the server has checked our certificate). */
  handshake: boolean;
  /** Everything the server sent. */
  data: Buffer;
  /** The connection was closed by the server (not by our timeout). */
  closed: boolean;
}

/**
 * A RadSec client made with node:tls: connects with a certificate, sends `packet` once the
 * handshake is done, and collects what comes back until the server closes or `ms` pass.
 */
function probe(port: number, ca: string, who: Issued, packet: Buffer | undefined, opts: { localAddress?: string; ms?: number; keepOpen?: boolean } = {}): Promise<Probe> {
  return new Promise((resolve) => {
    const result: Probe = { handshake: false, data: Buffer.alloc(0), closed: false };
    const socket = tls.connect({
      socket: net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress }),
      ca: readFileSync(ca),
      cert: readFileSync(who.cert),
      key: readFileSync(who.key),
      servername: 'localhost',
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(result);
    }, opts.ms ?? 3000);
    socket.on('secureConnect', () => {
      result.handshake = true;
      if (packet) socket.write(packet);
    });
    socket.on('data', (d: Buffer) => {
      result.data = Buffer.concat([result.data, d]);
      if (!opts.keepOpen) {
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      result.closed = true;
      resolve(result);
    });
  });
}

const statusServer = (identifier: number, withMa = true) =>
  radius.encode({ code: 'Status-Server', secret: 'radsec', identifier, attributes: [], add_message_authenticator: withMa });

const metric = async (s: TestServer, re: RegExp) => Number(re.exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);

/**
 * RadSec (RFC 6614) end to end: radclient (the NAS) → radsecproxy over UDP → Countersign over
 * TLS with a client certificate; refusals (certificate no client names, another CA, a source
 * outside the client's block, a bad length) tested with node:tls directly; and radsecproxy
 * forwarding over plain UDP to Countersign's UDP port.
 */
describe('RadSec: radsecproxy and node:tls against the RadSec listener', () => {
  let dir: string;
  let s: TestServer;
  let good: Pki;
  let rogue: Pki;
  const otp: Record<string, string> = {};
  const proxies: Radsecproxy[] = [];

  before(async () => {
    if (!available) return;
    dir = mkdtempSync(join(tmpdir(), 'cs-radsec-'));
    good = makePki(dir, { name: 'good', clients: ['proxy1', 'proxy2', 'stranger', 'elsewhere'] });
    // Another CA, with a certificate of the same name as a configured one.
    rogue = makePki(dir, { name: 'rogue', clients: ['proxy1'] });
    s = await startTestServer(
      {
        COUNTERSIGN_RADIUS_RADSEC_ENABLED: 'true',
        COUNTERSIGN_RADIUS_RADSEC_HOST: '127.0.0.1',
        COUNTERSIGN_RADIUS_RADSEC_PORT: '0',
        COUNTERSIGN_RADIUS_RADSEC_CERT_FILE: good.server.cert,
        COUNTERSIGN_RADIUS_RADSEC_KEY_FILE: good.server.key,
        COUNTERSIGN_RADIUS_RADSEC_CA_FILE: good.ca,
        COUNTERSIGN_RADIUS_RADSEC_HANDSHAKE_TIMEOUT_SECONDS: '1',
        COUNTERSIGN_RADIUS_RADSEC_MAX_CONNECTIONS_PER_CLIENT: '3',
      },
      {},
      (config) => {
        config.radius.clients = [
          // By name (subject CN / DNS SAN) …
          { ...nasConfig('', { name: 'radsec-append', address: '127.0.0.1/32', mode: 'append' }), radsec: { names: ['proxy1'], fingerprints: [] } },
          // … and by fingerprint.
          { ...nasConfig('', { name: 'radsec-challenge', address: '127.0.0.0/8', mode: 'challenge' }), radsec: { names: [], fingerprints: [good.clients.proxy2!.fingerprint] } },
          // Only from 127.0.0.2.
          { ...nasConfig('', { name: 'radsec-elsewhere', address: '127.0.0.2/32', mode: 'append' }), radsec: { names: ['elsewhere'], fingerprints: [] } },
          // radsecproxy 1.9 sends no Message-Authenticator over UDP.
          nasConfig(UDP_SECRET, { name: 'radsecproxy-udp', address: '127.0.0.1/32', mode: 'append', requireMessageAuthenticator: false }),
        ];
      },
    );
    for (const name of ['alice', 'bob', 'carol']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
      otp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const proxy = async (o: Parameters<typeof startRadsecproxy>[0]) => {
    const p = await startRadsecproxy(o);
    proxies.push(p);
    return p;
  };
  const tlsTo = (who: Issued) => ({ type: 'tls' as const, port: s.radsecPort!, ca: good.ca, cert: who.cert, key: who.key });

  it('append mode through radsecproxy over TLS: password,TOTP accepted, a wrong code refused; audited as radsec', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const rp = await proxy({ nasSecret: NAS_SECRET, server: tlsTo(good.clients.proxy1!) });
    const wrong = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${wrongCode(otp.alice!)}`) }, { timeout: 8 });
    assert.equal(wrong.code, 'Access-Reject', `${wrong.output}\n${rp.output()}`);
    const ok = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${oathTotp(otp.alice!)}`) }, { timeout: 8 });
    assert.equal(ok.code, 'Access-Accept', `${ok.output}\n${rp.output()}`);

    const events = (await s.api('GET', '/api/v1/audit?front=radius&user=alice&limit=10')).body.events as any[];
    const accepted = events.find((e) => e.outcome === 'accept');
    assert.equal(accepted?.client, 'radsec-append');
    assert.equal(accepted?.detail.transport, 'radsec');
    assert.equal(await metric(s, /countersign_radsec_open_connections\{client="radsec-append"\} (\d+)/), 1);
    assert.ok((await metric(s, /countersign_radsec_connections_total\{outcome="accepted",client="radsec-append"\} (\d+)/)) >= 1);
  });

  it('challenge mode through radsecproxy over TLS (client named by fingerprint): Access-Challenge, then the code with the State', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const rp = await proxy({ nasSecret: NAS_SECRET, server: tlsTo(good.clients.proxy2!) });
    const first = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw') }, { timeout: 8 });
    assert.equal(first.code, 'Access-Challenge', `${first.output}\n${rp.output()}`);
    assert.match(first.attributes['Reply-Message']!, /Enter your one-time code/);
    const state = first.attributes.State!;
    assert.ok(state);
    const wrong = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'bob', 'User-Password': q(wrongCode(otp.bob!)), State: state }, { timeout: 8 });
    assert.equal(wrong.code, 'Access-Challenge', wrong.output);
    assert.match(wrong.attributes['Reply-Message']!, /^Wrong code/);
    const right = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'bob', 'User-Password': q(oathTotp(otp.bob!)), State: state }, { timeout: 8 });
    assert.equal(right.code, 'Access-Accept', `${right.output}\n${rp.output()}`);
  });

  it('Status-Server over RadSec is answered (Message-Authenticator checked when present)', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const request = statusServer(7);
    const r = await probe(s.radsecPort!, good.ca, good.clients.proxy1!, request);
    assert.ok(r.data.length > 0, 'answered');
    const answer = radius.decode({ packet: r.data, secret: 'radsec' });
    assert.equal(answer.code, 'Access-Accept');
    assert.equal(answer.identifier, 7);
    assert.ok(radius.verify_response({ request, response: r.data, secret: 'radsec' }), 'signed with the secret "radsec"');
    // The same packet with its Message-Authenticator spoiled: dropped, not answered.
    const spoiled = Buffer.from(statusServer(8));
    spoiled[spoiled.length - 1]! ^= 0xff;
    const bad = await probe(s.radsecPort!, good.ca, good.clients.proxy1!, spoiled, { ms: 1500 });
    assert.equal(bad.data.length, 0);
  });

  it('refused before any RADIUS is read: a certificate no client names, another CA, a source outside the client block', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const unknownBefore = await metric(s, /countersign_radsec_connections_total\{outcome="unknown_certificate",client=""\} (\d+)/);
    const stranger = await probe(s.radsecPort!, good.ca, good.clients.stranger!, statusServer(1));
    assert.equal(stranger.data.length, 0, 'no answer');
    assert.ok(stranger.closed, 'the server closed the connection');

    const handshakeBefore = await metric(s, /countersign_radsec_connections_total\{outcome="untrusted_certificate",client=""\} (\d+)/);
    const otherCa = await probe(s.radsecPort!, good.ca, rogue.clients.proxy1!, statusServer(2));
    assert.equal(otherCa.data.length, 0, 'no answer');
    assert.ok(otherCa.closed, 'the server closed the connection');
    assert.ok((await metric(s, /countersign_radsec_connections_total\{outcome="untrusted_certificate",client=""\} (\d+)/)) > handshakeBefore);

    // radsec-elsewhere's certificate, from 127.0.0.1: outside its block.
    const outside = await probe(s.radsecPort!, good.ca, good.clients.elsewhere!, statusServer(3));
    assert.equal(outside.data.length, 0, 'no answer');
    assert.ok(outside.closed);
    assert.equal(await metric(s, /countersign_radsec_connections_total\{outcome="unknown_certificate",client=""\} (\d+)/), unknownBefore + 2);
    // The same certificate from its own address is served.
    const inside = await probe(s.radsecPort!, good.ca, good.clients.elsewhere!, statusServer(4), { localAddress: '127.0.0.2' });
    assert.equal(radius.decode({ packet: inside.data, secret: 'radsec' }).code, 'Access-Accept');
  });

  it('a packet whose Length field is out of bounds closes the connection', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const before = await metric(s, /countersign_radsec_closed_total\{reason="malformed_length",client="radsec-append"\} (\d+)/);
    const r = await probe(s.radsecPort!, good.ca, good.clients.proxy1!, Buffer.from([12, 1, 0, 10]), { keepOpen: true });
    assert.ok(r.closed, 'closed by the server');
    assert.equal(r.data.length, 0);
    // Counted when the server side has seen its close.
    for (let i = 0; i < 50 && (await metric(s, /countersign_radsec_closed_total\{reason="malformed_length",client="radsec-append"\} (\d+)/)) === before; i++) {
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(await metric(s, /countersign_radsec_closed_total\{reason="malformed_length",client="radsec-append"\} (\d+)/), before + 1);
  });

  it('limits: a handshake not finished in time, one connection more than maxConnectionsPerClient', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    // handshakeTimeoutSeconds (1 s here) counts from the TCP connection: one that never starts
    // TLS, and one that sends the start of a ClientHello a byte at a time, are both closed.
    const timeoutsBefore = await metric(s, /countersign_radsec_connections_total\{outcome="handshake_timeout",client=""\} (\d+)/);
    const hello = Buffer.from(`16030100c8010000c40303${'00'.repeat(64)}`, 'hex');
    const connections = [false, true].map((trickle) => {
      const socket = net.connect({ host: '127.0.0.1', port: s.radsecPort! });
      socket.on('error', () => {});
      let sent = 0;
      const drip = trickle ? setInterval(() => sent < hello.length && socket.write(hello.subarray(sent, ++sent)), 100) : undefined;
      return new Promise<{ closed: boolean; sent: number }>((resolve) => {
        const guard = setTimeout(() => resolve({ closed: false, sent }), 10_000);
        socket.on('close', () => {
          clearTimeout(guard);
          clearInterval(drip);
          resolve({ closed: true, sent });
        });
      }).finally(() => socket.destroy());
    });
    const [silent, trickled] = await Promise.all(connections);
    assert.ok(silent!.closed, 'the silent connection was closed by the server');
    assert.ok(trickled!.closed, 'the trickling connection was closed by the server');
    assert.ok(trickled!.sent < hello.length, 'before it had sent its ClientHello');
    // Counted when the server side has seen its close.
    const settled = async () =>
      (await metric(s, /countersign_radsec_connections_total\{outcome="handshake_timeout",client=""\} (\d+)/)) === timeoutsBefore + 2 &&
      (await metric(s, /countersign_radsec_handshakes_in_progress (\d+)/)) === 0;
    for (let i = 0; i < 50 && !(await settled()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await metric(s, /countersign_radsec_connections_total\{outcome="handshake_timeout",client=""\} (\d+)/), timeoutsBefore + 2);
    assert.equal(await metric(s, /countersign_radsec_handshakes_in_progress (\d+)/), 0, 'their handshake slots are free again');

    // radsec-elsewhere (from 127.0.0.2) may hold 3 connections: a fourth is closed unanswered.
    const held = [0, 1, 2].map((i) => probe(s.radsecPort!, good.ca, good.clients.elsewhere!, statusServer(10 + i), { localAddress: '127.0.0.2', keepOpen: true, ms: 2500 }));
    for (let i = 0; i < 100 && (await metric(s, /countersign_radsec_open_connections\{client="radsec-elsewhere"\} (\d+)/)) < 3; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await metric(s, /countersign_radsec_open_connections\{client="radsec-elsewhere"\} (\d+)/), 3);
    const fourth = await probe(s.radsecPort!, good.ca, good.clients.elsewhere!, statusServer(13), { localAddress: '127.0.0.2' });
    assert.equal(fourth.data.length, 0);
    assert.ok(fourth.closed);
    assert.ok((await metric(s, /countersign_radsec_connections_total\{outcome="too_many_connections",client="radsec-elsewhere"\} (\d+)/)) >= 1);
    for (const h of await Promise.all(held)) assert.equal(radius.decode({ packet: h.data, secret: 'radsec' }).code, 'Access-Accept', 'the three held ones were served');
  });

  it('radsecproxy forwarding over UDP to the UDP port (no Message-Authenticator: requireMessageAuthenticator false)', async (t) => {
    if (!requirePeer(t, available, 'radsecproxy, radclient, openssl and oathtool')) return;
    const rp = await proxy({ nasSecret: NAS_SECRET, server: { type: 'udp', port: s.radiusPort!, secret: UDP_SECRET } });
    const ok = await radclient(rp.port, NAS_SECRET, { 'User-Name': 'carol', 'User-Password': q(`carol-pw,${oathTotp(otp.carol!)}`) }, { timeout: 8 });
    assert.equal(ok.code, 'Access-Accept', `${ok.output}\n${rp.output()}`);
    const events = (await s.api('GET', '/api/v1/audit?front=radius&user=carol&limit=10')).body.events as any[];
    assert.equal(events[0]?.client, 'radsecproxy-udp');
    assert.equal(events[0]?.detail.transport, undefined, 'UDP events are as before');
  });
});
