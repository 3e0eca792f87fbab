import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freeUdpPort, startFreeRadius } from '../helpers/freeradius.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { radclient, q } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const peers = hasCommand('freeradius') && hasCommand('radclient') && hasCommand('oathtool');

/** NAS (radclient) → FreeRADIUS proxy → Countersign, as many sites run it. */
describe('behind a FreeRADIUS proxy', () => {
  let s: TestServer;
  let fr: Awaited<ReturnType<typeof startFreeRadius>> | undefined;
  let port: number;
  let secret: string;
  before(async () => {
    if (!peers) return;
    s = await startTestServer({}, {}, (c) => {
      c.radius.clients = [
        { name: 'freeradius-proxy', address: '127.0.0.1/32', secret: 'upstream-secret-123', mode: 'append', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [['Filter-Id', 'vpn']] },
      ];
    });
    port = await freeUdpPort();
    fr = await startFreeRadius({ port, nasSecret: 'nas-secret-1234', proxyTo: { port: s.radiusPort!, secret: 'upstream-secret-123' } });
    await s.api('POST', '/api/v1/users', { name: 'alice', password: 'alice-pw' });
    secret = (await s.api('POST', '/api/v1/users/alice/otp', {})).body.secret;
  });
  after(async () => {
    await fr?.stop();
    await s?.close();
  });

  it('password + TOTP through the proxy → Access-Accept with Countersign’s attributes', async (t) => {
    if (!requirePeer(t, peers, 'freeradius, radclient and oathtool')) return;
    const r = await radclient(port, 'nas-secret-1234', { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${oathTotp(secret)}`) }, { timeout: 5 });
    assert.equal(r.code, 'Access-Accept', `${r.output}\n--- freeradius:\n${fr!.output().slice(-3000)}`);
    assert.equal(r.attributes['Filter-Id'], 'vpn');
  });

  it('a wrong OTP → Access-Reject with Countersign’s Reply-Message passed through', async (t) => {
    if (!requirePeer(t, peers, 'freeradius, radclient and oathtool')) return;
    const r = await radclient(port, 'nas-secret-1234', { 'User-Name': 'alice', 'User-Password': q('alice-pw,000000') }, { timeout: 5 });
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.match(r.attributes['Reply-Message'] ?? '', /wrong/i);
  });
});
