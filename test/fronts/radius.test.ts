import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { radclient, q } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const haveOathtool = hasCommand('oathtool');
const SECRET = 'radius-test-secret';

describe('RADIUS front with radclient as the NAS', () => {
  let s: TestServer;
  let port: number;
  let opened = 0;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.radius.clients = [
        // From the config file; radclient's requests come from 127.0.0.1 and meet the API client below.
        { name: 'branch-office', address: '192.0.2.1/32', secret: SECRET, mode: 'append', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      ];
      config.radius.userAttributes = { alice: [['Filter-Id', 'admins']] };
      config.push.rateLimit.count = 100; // these tests push bob many times on purpose
    });
    port = s.radiusPort!;
    s.ctx.engine.on('opened', () => opened++);
    await s.api('POST', '/api/v1/users', { name: 'alice', password: 'alice-pw' });
    await s.api('POST', '/api/v1/users', { name: 'bob', password: 'bob-pw-2024' });
    await mode('append');
  });
  after(() => s.close());

  const otpSecret = async (user: string) => (await s.api('POST', `/api/v1/users/${user}/otp`, {})).body.secret as string;

  /** Swaps the client's mode in place (the config list is what RadiusClients serves). */
  const mode = async (m: 'append' | 'push-wait' | 'challenge', extra: Record<string, unknown> = {}) => {
    await s.api('DELETE', '/api/v1/radius-clients/vpn');
    const r = await s.api('POST', '/api/v1/radius-clients', {
      name: 'vpn',
      address: '127.0.0.0/8',
      secret: SECRET,
      mode: m,
      acceptAttributes: [['Class', 'vpn-users']],
      ...extra,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };

  it('accepts PAP password + appended TOTP from oathtool, with reply attributes, once', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const secret = await otpSecret('alice');
    const code = oathTotp(secret);
    const ok = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`), 'Proxy-State': '0x0102' });
    assert.equal(ok.code, 'Access-Accept', ok.output);
    assert.equal(ok.attributes.Class, '0x76706e2d7573657273'); // "vpn-users"
    assert.equal(ok.attributes['Filter-Id'], 'admins');
    assert.equal(ok.attributes['Proxy-State'], '0x0102', 'Proxy-State echoed');
    assert.match(ok.output, /Message-Authenticator/);

    const again = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) });
    assert.equal(again.code, 'Access-Reject', 'the same code twice');
    assert.match(again.attributes['Reply-Message'] ?? '', /already used/);
  });

  it('rejects a wrong OTP or password with a Reply-Message', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const wrongOtp = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q('alice-pw,000000') });
    assert.equal(wrongOtp.code, 'Access-Reject');
    assert.match(wrongOtp.attributes['Reply-Message']!, /wrong/i);
    const wrongPw = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q('nope,123456') });
    assert.equal(wrongPw.code, 'Access-Reject');
    assert.equal(wrongPw.attributes['Reply-Message'], 'Wrong user name or password');
    const ghost = await radclient(port, SECRET, { 'User-Name': 'ghost', 'User-Password': q('x,123456') });
    assert.equal(ghost.attributes['Reply-Message'], 'Wrong user name or password', 'unknown users look the same');
    await s.api('POST', '/api/v1/users/alice/unlock');
  });

  it('drops requests without Message-Authenticator, with a wrong secret, or from unknown clients', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const code = oathTotp(await otpSecret('alice'));
    const noMa = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) }, { messageAuthenticator: false, timeout: 1, retries: 1 });
    assert.equal(noMa.code, 'timeout', 'no Accept without Message-Authenticator');
    const wrongSecret = await radclient(port, 'not-the-secret', { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) }, { timeout: 1, retries: 1 });
    assert.equal(wrongSecret.code, 'timeout');
    const metrics = (await s.api('GET', '/metrics')).body as string;
    assert.match(metrics, /countersign_radius_dropped_total\{reason="missing_message_authenticator"\} [1-9]/);
    assert.match(metrics, /countersign_radius_dropped_total\{reason="bad_message_authenticator"\} [1-9]/);
    // The code was never used: it still works.
    const ok = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) });
    assert.equal(ok.code, 'Access-Accept', ok.output);
  });

  it('tries a digit-ending password whole when the split fails, then pushes', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await mode('append', { appendDelimiter: '' });
    await s.api('POST', '/api/v1/users/factors', { users: ['bob'], factor: 'push', enabled: true });
    const link = await s.api('POST', '/api/v1/users/bob/enrolments');
    const phone = await Authenticator.enrol(link.body.uri, {});
    const before = opened;
    const pending = radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') }, { timeout: 10 });
    let p;
    for (let i = 0; i < 200 && !(p = (await phone.pending())[0]); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(p, 'a push login was opened');
    await phone.answer(p!.challengeId, 'approve');
    const r = await pending;
    assert.equal(r.code, 'Access-Accept', r.output);
    assert.equal(opened - before, 1);
  });

  it('push-wait: holds the request until the phone answers; a rejection ends it at once', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await mode('push-wait');
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
    const waitPush = async () => {
      for (let i = 0; i < 200; i++) {
        const [p] = await phone.pending();
        if (p) return p;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no push');
    };
    const approved = radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') }, { timeout: 10 });
    await phone.answer((await waitPush()).challengeId, 'approve');
    assert.equal((await approved).code, 'Access-Accept');

    const started = Date.now();
    const rejected = radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') }, { timeout: 10 });
    await phone.answer((await waitPush()).challengeId, 'reject');
    const r = await rejected;
    assert.equal(r.code, 'Access-Reject');
    assert.match(r.attributes['Reply-Message']!, /rejected on your phone/);
    assert.ok(Date.now() - started < 5000, 'not waiting out the deadline');
    await s.api('POST', '/api/v1/users/bob/unlock');
  });

  it('a retransmitted request starts one login and one push only', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
    const before = opened;
    // radclient resends the same packet every 0.3 s while the phone takes ~1.5 s.
    const pending = radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') }, { timeout: 0.3, retries: 10 });
    await new Promise((r) => setTimeout(r, 1500));
    const [p] = await phone.pending();
    await phone.answer(p!.challengeId, 'approve');
    const r = await pending;
    assert.equal(r.code, 'Access-Accept', r.output);
    assert.ok((r.output.match(/Sent Access-Request/g) ?? []).length > 1 || /retransmit|Resending/i.test(r.output), 'radclient did retransmit');
    assert.equal(opened - before, 1, 'one challenge for all the copies');
    const dupes = (await s.api('GET', '/metrics')).body as string;
    assert.match(dupes, /countersign_radius_duplicates_total\{state="pending"\} [1-9]/);
  });

  it('challenge mode: Access-Challenge with State, then the OTP or Enter after the push', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    await mode('challenge');
    await s.api('POST', '/api/v1/users/factors', { users: ['bob'], factor: 'otp', enabled: true });
    const secret = await otpSecret('bob');
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
    const first = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') });
    assert.equal(first.code, 'Access-Challenge', first.output);
    const [p] = await phone.pending();
    assert.match(first.attributes['Reply-Message']!, new RegExp(`Enter your one-time code, or approve the push \\(ID ${p!.displayCode}\\)`));
    const state = first.attributes.State!;
    assert.ok(state);

    const early = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q(''), State: state });
    assert.equal(early.code, 'Access-Challenge');
    assert.match(early.attributes['Reply-Message']!, /Not approved yet/);
    const stolen = await radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q(''), State: state });
    assert.equal(stolen.code, 'Access-Reject', 'the State is bound to the user');
    await phone.answer(p!.challengeId, 'approve');
    const done = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q(''), State: state });
    assert.equal(done.code, 'Access-Accept', done.output);
    const again = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q(''), State: state });
    assert.equal(again.code, 'Access-Reject', 'a State gets one final answer: a new packet with it is refused');

    const second = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') });
    const wrong = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('000000'), State: second.attributes.State! });
    assert.equal(wrong.code, 'Access-Challenge');
    assert.match(wrong.attributes['Reply-Message']!, /^Wrong code/);
    const right = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q(oathTotp(secret)), State: second.attributes.State! });
    assert.equal(right.code, 'Access-Accept', right.output);
  });

  it('number matching survives RADIUS: the challenge prompt shows it, push-wait refuses rather than drop it', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await s.api('PATCH', '/api/v1/users/bob', { numberMatching: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
    const first = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') });
    assert.equal(first.code, 'Access-Challenge');
    const number = /type (\d{2}) on your phone/.exec(first.attributes['Reply-Message']!)?.[1];
    assert.ok(number, first.attributes['Reply-Message']);
    const [p] = await phone.pending();
    assert.equal(p!.numberMatching, true);
    assert.equal((await phone.answer(p!.challengeId, 'approve', { number })).state, 'approved');
    const done = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q(''), State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept');

    await mode('push-wait');
    const refused = await radclient(port, SECRET, { 'User-Name': 'bob', 'User-Password': q('bob-pw-2024') });
    assert.equal(refused.code, 'Access-Reject');
    assert.match(refused.attributes['Reply-Message']!, /number matching is on/);
    await s.api('PATCH', '/api/v1/users/bob', { numberMatching: null });
    await mode('challenge');
  });

  it('clients are managed through the admin API, secrets never shown', async () => {
    const list = await s.api('GET', '/api/v1/radius-clients');
    const vpn = list.body.clients.find((c: any) => c.name === 'vpn');
    assert.equal(vpn.mode, 'challenge');
    assert.equal(list.body.clients.find((c: any) => c.name === 'branch-office').source, 'config');
    assert.equal((await s.api('DELETE', '/api/v1/radius-clients/branch-office')).status, 400, 'config clients stay');
    assert.equal(vpn.secret, undefined);
    assert.equal((await s.api('POST', '/api/v1/radius-clients', { name: 'bad', address: '10.0.0.0/99', secret: 'x'.repeat(10) })).status, 400);
    assert.equal((await s.api('POST', '/api/v1/radius-clients', { name: 'short', address: '10.0.0.0/8', secret: 'x' })).status, 400);
    assert.equal((await s.api('POST', '/api/v1/radius-clients', { name: 'vpn', address: '10.0.0.0/8', secret: 'x'.repeat(10) })).status, 409);
    assert.equal((await s.api('DELETE', '/api/v1/radius-clients/nope')).status, 404);
  });
});
