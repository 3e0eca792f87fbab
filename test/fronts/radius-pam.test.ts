import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pamMissing, pamRadiusService, pamtester, type PamService } from '../helpers/pam.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig } from '../helpers/radclient.js';
import { wrongCode, oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const missing = pamMissing() ?? (hasCommand('oathtool') ? null : 'oathtool');
const SECRET = 'pam-radius-secret-1';


/**
 * Linux-PAM as the NAS: pam_radius_auth 2.0 (Debian's libpam-radius-auth) driven by pamtester,
 * against the UDP front. Each mode is a client of its own, told apart by the source address
 * pam_radius binds to (its config's source_ip). pam_radius 2.0 sends no Message-Authenticator
 * (3.0 does), so its clients need requireMessageAuthenticator: false; one that requires it
 * shows the drop.
 */
describe('pam_radius_auth through pamtester', () => {
  let s: TestServer;
  const otp: Record<string, string> = {};
  const services: PamService[] = [];
  const service = (sourceIp: string) => {
    const svc = pamRadiusService({ port: s.radiusPort!, secret: SECRET, sourceIp });
    services.push(svc);
    return svc.name;
  };

  before(async () => {
    if (missing) return;
    s = await startTestServer({}, {}, (config) => {
      config.radius.clients = [
        nasConfig(SECRET, { name: 'pam-append', address: '127.0.0.1/32', mode: 'append', requireMessageAuthenticator: false }),
        nasConfig(SECRET, { name: 'pam-challenge', address: '127.0.0.2/32', mode: 'challenge', requireMessageAuthenticator: false }),
        nasConfig(SECRET, { name: 'pam-strict', address: '127.0.0.3/32', mode: 'append' }),
      ];
    });
    for (const name of ['alice', 'bob', 'carol']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
      otp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
  });
  after(async () => {
    for (const svc of services) svc.remove();
    await s?.close();
  });

  it('append mode: password,code authenticates; a wrong code fails (pamtester exits non-zero)', async (t) => {
    if (!requirePeer(t, !missing, missing ?? '')) return;
    const name = service('127.0.0.1');
    const wrong = await pamtester(name, 'alice', [`alice-pw,${wrongCode(otp.alice!)}`]);
    assert.notEqual(wrong.code, 0, wrong.output);
    assert.match(wrong.output, /Authentication failure|authentication failed/i);
    const right = await pamtester(name, 'alice', [`alice-pw,${oathTotp(otp.alice!)}`]);
    assert.equal(right.code, 0, right.output);
    assert.match(right.output, /successfully authenticated/);
    const events = (await s.api('GET', '/api/v1/audit?front=radius&user=alice&limit=10')).body.events as any[];
    assert.deepEqual(events.filter((e) => e.type === 'radius').map((e) => [e.client, e.outcome]), [['pam-append', 'accept'], ['pam-append', 'reject']]);
  });

  it('challenge mode: pam_radius shows the Reply-Message and sends the answer with the State', async (t) => {
    if (!requirePeer(t, !missing, missing ?? '')) return;
    const name = service('127.0.0.2');
    const r = await pamtester(name, 'bob', ['bob-pw', oathTotp(otp.bob!)]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /Enter your one-time code/, 'the Reply-Message was the prompt');
    const events = (await s.api('GET', '/api/v1/audit?front=radius&user=bob&limit=10')).body.events as any[];
    assert.deepEqual(events.filter((e) => e.type === 'radius').map((e) => [e.client, e.outcome]), [['pam-challenge', 'accept'], ['pam-challenge', 'challenge']]);
  });

  it('pam_radius 2.0 sends no Message-Authenticator: a client that requires one drops it', async (t) => {
    if (!requirePeer(t, !missing, missing ?? '')) return;
    const name = service('127.0.0.3');
    const r = await pamtester(name, 'carol', [`carol-pw,${oathTotp(otp.carol!)}`]);
    assert.notEqual(r.code, 0, r.output);
    const metrics = (await s.api('GET', '/metrics')).body as string;
    assert.match(metrics, /countersign_radius_client_dropped_total\{client="pam-strict",reason="missing_message_authenticator"\} [1-9]/);
  });
});
