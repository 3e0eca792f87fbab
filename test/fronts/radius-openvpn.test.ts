import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectOpenVpnClient, fourDigitUdpPorts, openVpnMissing, startOpenVpnServer, type OpenVpnServer } from '../helpers/openvpn.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig } from '../helpers/radclient.js';
import { wrongCode, oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const missing = openVpnMissing() ?? (hasCommand('oathtool') ? null : 'oathtool');
const SECRET = 'openvpn-radius-secret';


const until = async <T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

/**
 * OpenVPN 2.6 with Debian's radiusplugin, a real VPN: it authenticates against Countersign
 * (append mode, password,TOTP from oathtool) and refuses the client unless its
 * Accounting-Request (Start) is answered (nonfatalaccounting=false).
 */
describe('OpenVPN with radiusplugin (auth + accounting) against Countersign', () => {
  let s: TestServer | undefined;
  let vpn: OpenVpnServer | undefined;
  let otp = '';
  before(async () => {
    if (missing) return;
    // radiusplugin keeps four digits of a port number: Countersign listens on four-digit ports.
    for (let attempt = 0; !s; attempt++) {
      const [authPort, acctPort] = await fourDigitUdpPorts(2);
      try {
        s = await startTestServer({ COUNTERSIGN_RADIUS_PORT: String(authPort), COUNTERSIGN_RADIUS_ACCOUNTING_PORT: String(acctPort) }, {}, (config) => {
          config.radius.clients = [
            // radiusplugin sends no Message-Authenticator (README: old gear only).
            nasConfig(SECRET, { name: 'openvpn', address: '127.0.0.1/32', requireMessageAuthenticator: false, acceptAttributes: [['Acct-Interim-Interval', 2]] }),
          ];
        });
      } catch (err) {
        if (attempt >= 2 || !/port is in use/.test(String(err))) throw err;
      }
    }
    assert.equal((await s.api('POST', '/api/v1/users', { name: 'alice', password: 'alice-vpn-pw' })).status, 201);
    otp = (await s.api('POST', '/api/v1/users/alice/otp', {})).body.secret;
    vpn = await startOpenVpnServer({ radius: { authPort: s.radiusPort!, acctPort: s.radiusAccountingPort!, secret: SECRET }, nasIdentifier: 'ovpn-gw' });
  });
  after(async () => {
    await vpn?.stop();
    await s?.close();
  });

  const accounting = async (outcome: string) =>
    ((await s!.api('GET', `/api/v1/audit?front=radius&user=alice&outcome=${outcome}&limit=100`)).body.events as any[]).filter((e) => e.type === 'accounting');

  it('password,TOTP → connected; the session is listed (Start, then Interim-Update) until the client leaves (Stop)', async (t) => {
    if (!requirePeer(t, !missing, missing ?? '')) return;
    const client = await connectOpenVpnClient(vpn!, 'alice', `alice-vpn-pw,${oathTotp(otp)}`);
    try {
      assert.equal(client.result, 'connected', `${client.output().slice(-3000)}\n--- server:\n${vpn!.output().slice(-5000)}`);
      const [session] = (await s!.api('GET', '/api/v1/radius-sessions?user=alice')).body.sessions;
      assert.ok(session, 'listed once connected (the plugin waits for the Accounting-Response before it lets the client in)');
      assert.equal(session.client, 'openvpn');
      assert.equal(session.nas.identifier, 'ovpn-gw');
      assert.match(session.framedIp, /^10\.99\.0\.\d+$/, 'the address OpenVPN gave the client');
      assert.equal(session.callingStationId, '127.0.0.1');
      const [start] = await accounting('start');
      assert.equal(start.detail.sessionId, session.sessionId);
      // Acct-Interim-Interval 2 in the Access-Accept: the plugin reports every two seconds.
      const interim = await until('an Interim-Update', async () => (await accounting('interim-update'))[0]);
      assert.equal(interim.detail.sessionId, session.sessionId);
    } finally {
      await client.stop();
    }
    const stop = await until('a Stop', async () => (await accounting('stop'))[0]);
    assert.equal(typeof stop.detail.sessionTime, 'number');
    assert.equal((await s!.api('GET', '/api/v1/radius-sessions?user=alice')).body.sessions.length, 0, 'gone after Stop');
  });

  it('a wrong TOTP → AUTH_FAILED, nothing accounted', async (t) => {
    if (!requirePeer(t, !missing, missing ?? '')) return;
    const starts = (await accounting('start')).length;
    const client = await connectOpenVpnClient(vpn!, 'alice', `alice-vpn-pw,${wrongCode(otp)}`);
    assert.equal(client.result, 'auth-failed', client.output().slice(-3000));
    assert.equal((await accounting('start')).length, starts);
    assert.equal((await s!.api('GET', '/api/v1/radius-sessions?user=alice')).body.sessions.length, 0);
  });
});
