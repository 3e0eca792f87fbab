import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import radius from 'radius';
import { Authenticator } from '../../src/cli/authenticator.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { decryptMppeKey, encryptMppeKey, freshSalts, hidePassword, msAttribute, msAttributes, unhidePassword } from '../../src/fronts/radius/mppe.js';
import { encodeRequest, forwardedAttributes, verifyAnswer } from '../../src/fronts/radius/upstream.js';
import { parseRaw, type RawPacket } from '../../src/fronts/radius/packet.js';
import { freeUdpPort, startFreeRadius, type FreeRadius } from '../helpers/freeradius.js';
import { authenticatorResponse, challengeHash, challengeResponse, masterKey, asymmetricStartKey, md4, msChapV2, ntPasswordHash, serverMppeKeys } from '../helpers/mschap.js';
import { hasCommand, redisAvailable, requirePeer, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { nasConfig, q, radclient, type RadResult } from '../helpers/radclient.js';
import { ROOT } from '../helpers/processes.js';
import { oathTotp, startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const peers = hasCommand('freeradius') && hasCommand('radclient') && hasCommand('oathtool');
const PEERS = 'freeradius, radclient and oathtool';
const NAS_SECRET = 'nas-to-countersign-secret';
const UPSTREAM_SECRET = 'countersign-to-upstream-secret';
const h = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
const hex = (b: Buffer) => `0x${b.toString('hex')}`;

// ------------------------------------------------------------------ the cryptography, on its own

describe('RFC 2548 / RFC 2865 attribute encryption', () => {
  it('the test helper computes RFC 2759 and RFC 3079 known values (MD4, DES, NT-Response, MPPE keys)', () => {
    assert.equal(md4(Buffer.from('abc')).toString('hex'), 'a448017aaf21d8525fc10ae87aa6729d');
    const ac = h('5B5D7C7D7B3F2F3E3C2C602132262628');
    const pc = h('21402324255E262A28295F2B3A337C7E');
    assert.equal(ntPasswordHash('clientPass').toString('hex'), '44ebba8d5312b8d611474411f56989ae');
    const nt = challengeResponse(challengeHash(pc, ac, 'User'), ntPasswordHash('clientPass'));
    assert.equal(nt.toString('hex'), '82309ecd8d708b5ea08faa3981cd83544233114a3d85d6df');
    assert.equal(authenticatorResponse('clientPass', nt, pc, ac, 'User'), 'S=407A5589115FD0D6209F510FE9C04566932CDA56');
    const master = masterKey('clientPass', nt);
    assert.equal(master.toString('hex'), 'fdece3717a8c838cb388e527ae3cdd31');
    assert.equal(asymmetricStartKey(master, true, true).toString('hex'), '8b7cdc149b993a1ba118cb153f56dccb');
  });

  it('MPPE keys: round trip, fresh distinct salts with the high bit, and a wrong secret or authenticator fails', () => {
    const key = randomBytes(16);
    const ra = randomBytes(16);
    const [s1, s2] = freshSalts(2);
    assert.ok(s1![0]! & 0x80 && s2![0]! & 0x80);
    assert.notDeepEqual(s1, s2);
    const enc = encryptMppeKey(key, 'secret-one', ra, s1!);
    assert.equal(enc.length, 2 + 32, 'salt + (1 + 16 → 32)');
    assert.deepEqual(enc.subarray(0, 2), s1);
    assert.deepEqual(decryptMppeKey(enc, 'secret-one', ra), key);
    assert.notDeepEqual(encryptMppeKey(key, 'secret-one', ra, s2!).subarray(2), enc.subarray(2), 'the salt changes the ciphertext');
    // A wrong secret or authenticator gives noise: most often a length that cannot fit (thrown),
    // else a key that is not this one (the length octet is random, so either can happen).
    const wrong = (f: () => Buffer) => {
      try {
        return !f().equals(key);
      } catch {
        return true;
      }
    };
    assert.ok(wrong(() => decryptMppeKey(enc, 'secret-two', ra)));
    assert.ok(wrong(() => decryptMppeKey(enc, 'secret-one', randomBytes(16))));
    assert.throws(() => encryptMppeKey(key, 's', ra, Buffer.from([0x01, 0x02])), /high bit/);
  });

  it('User-Password hiding round-trips, padded to 16 octets', () => {
    const ra = randomBytes(16);
    const hidden = hidePassword(Buffer.from('pässwörd-with-17b'), 'shh-secret', ra);
    assert.equal(hidden.length, 32);
    assert.equal(unhidePassword(hidden, 'shh-secret', ra).toString().replace(/\0+$/, ''), 'pässwörd-with-17b');
  });

  it('the forwarded request: fresh authenticator, password hidden with the upstream secret, CHAP challenge named, Message-Authenticator valid', () => {
    const nasAuth = randomBytes(16);
    const nasPacket = radius.encode({
      code: 'Access-Request',
      secret: NAS_SECRET,
      identifier: 7,
      authenticator: nasAuth,
      attributes: [
        ['User-Name', 'alice'],
        ['CHAP-Password', Buffer.concat([Buffer.from([1]), randomBytes(16)])],
        ['NAS-Identifier', 'vpn-1'],
        ['State', Buffer.from('not-forwarded')],
      ],
    } as never);
    const nas = parseRaw(nasPacket) as RawPacket;
    const fwd = forwardedAttributes(nas, NAS_SECRET);
    assert.deepEqual(
      fwd.attributes.map(([t]) => t),
      [1, 3, 32, 60],
      'User-Name, CHAP-Password, NAS-Identifier, and CHAP-Challenge = the NAS authenticator; no State',
    );
    assert.deepEqual(fwd.attributes.find(([t]) => t === 60)![1], nasAuth);

    const pap = parseRaw(radius.encode({ code: 'Access-Request', secret: NAS_SECRET, identifier: 8, attributes: [['User-Name', 'bob'], ['User-Password', 'bob-pw']] })) as RawPacket;
    const f2 = forwardedAttributes(pap, NAS_SECRET);
    assert.equal(f2.password!.toString(), 'bob-pw');
    const ra = randomBytes(16);
    const out = parseRaw(encodeRequest(42, ra, UPSTREAM_SECRET, f2.attributes, f2.password)) as RawPacket;
    assert.equal(out.identifier, 42);
    assert.deepEqual(out.authenticator, ra);
    assert.deepEqual(out.attributes.map(([t]) => t), [80, 1, 2]);
    const decoded = radius.decode({ packet: out.bytes, secret: UPSTREAM_SECRET }) as { attributes: Record<string, unknown> };
    assert.equal(decoded.attributes['User-Password'], 'bob-pw');
  });

  it('an answer is checked: Response Authenticator, Message-Authenticator (required by default)', () => {
    const ra = randomBytes(16);
    const answer = (secret: string, ma: boolean) => {
      // The package signs the answer with Message-Authenticator when the request carried one.
      return radius.encode_response({
        packet: { code: 'Access-Request', identifier: 3, authenticator: ra, attributes: ma ? { 'Message-Authenticator': Buffer.alloc(16) } : {}, raw_attributes: [] },
        code: 'Access-Accept',
        secret,
      } as never);
    };
    assert.equal(typeof verifyAnswer(answer(UPSTREAM_SECRET, true), ra, UPSTREAM_SECRET, true), 'object');
    assert.equal(verifyAnswer(answer('some-other-secret', true), ra, UPSTREAM_SECRET, true), 'bad response authenticator');
    assert.equal(verifyAnswer(answer(UPSTREAM_SECRET, false), ra, UPSTREAM_SECRET, true), 'missing message authenticator');
    assert.equal(typeof verifyAnswer(answer(UPSTREAM_SECRET, false), ra, UPSTREAM_SECRET, false), 'object');
    assert.equal(verifyAnswer(answer(UPSTREAM_SECRET, true), randomBytes(16), UPSTREAM_SECRET, true), 'bad response authenticator');
  });
});

describe('upstream configuration', () => {
  const env = (clients: unknown[], upstreams: unknown[]) => ({
    COUNTERSIGN_RADIUS_CLIENTS: JSON.stringify(clients),
    COUNTERSIGN_RADIUS_UPSTREAMS: JSON.stringify(upstreams),
    COUNTERSIGN_DEMO: 'false',
  });
  const nps = { name: 'nps', host: '192.0.2.5', secret: 'an-nps-shared-secret' };
  const vpn = { name: 'vpn', address: '192.0.2.1', secret: NAS_SECRET };

  it('a client naming an unknown upstream, or an upstream and secondFactorOnly, stops the start with a clear error', () => {
    assert.throws(() => loadConfig(env([{ ...vpn, upstream: 'npss' }], [nps]), '/nonexistent'), (e: Error) => e instanceof ConfigError && /upstream 'npss', which radius\.upstreams does not define \(nps\)/.test(e.message));
    assert.throws(() => loadConfig(env([{ ...vpn, upstream: 'nps', secondFactorOnly: true }], [nps]), '/nonexistent'), /secondFactorOnly checks no first factor/);
    assert.throws(() => loadConfig(env([], [{ ...nps, host: 'nps.example.org' }]), '/nonexistent'), /IPv4 or IPv6 address/);
    assert.throws(() => loadConfig(env([], [nps, nps]), '/nonexistent'), /defined twice/);
    assert.throws(() => loadConfig(env([], [{ ...nps, timeoutMs: 10_000, retries: 2 }]), '/nonexistent'), /processingLeaseSeconds/);
    const ok = loadConfig(env([{ ...vpn, upstream: 'nps', mode: 'challenge' }], [nps]), '/nonexistent');
    assert.deepEqual(ok.radius.upstreams[0], { ...nps, port: 1812, timeoutMs: 3000, retries: 2, requireMessageAuthenticator: true });
    assert.equal(ok.radius.clients[0]!.upstream, 'nps');
  });
});

// ------------------------------------------------------------------ NAS → Countersign → FreeRADIUS

/** A "server" that answers every Access-Request with an Accept signed with the wrong secret. */
async function forger(): Promise<{ port: number; seen: () => number; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  let seen = 0;
  sock.on('message', (msg, rinfo) => {
    seen++;
    const request = radius.decode_without_secret({ packet: msg });
    const reply = radius.encode_response({
      packet: request,
      code: 'Access-Accept',
      secret: 'not-the-upstream-secret',
    } as never);
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { port: sock.address().port, seen: () => seen, close: () => new Promise((r) => sock.close(() => r())) };
}

describe('upstream RADIUS as the first factor: radclient → Countersign → FreeRADIUS', () => {
  let s: TestServer;
  let fr: FreeRadius | undefined;
  let fake: Awaited<ReturnType<typeof forger>> | undefined;
  const USERS = ['alice', 'bob', 'carol', 'dave', 'erin'];
  const otp: Record<string, string> = {};
  let phone: Authenticator;

  before(async () => {
    if (!peers) return;
    fr = await startFreeRadius({
      upstream: true,
      nasSecret: UPSTREAM_SECRET,
      users: USERS.map((name) => ({ name, password: `${name}-upstream-pw`, ...(name === 'bob' ? {} : { reply: [['Class', '0x6e70732d636c617373']] as [string, string][] }) })),
    });
    fake = await forger();
    const nobody = await freeUdpPort();
    s = await startTestServer({}, {}, (c) => {
      c.radius.upstreams = [
        { name: 'freeradius', host: '127.0.0.1', port: fr!.port, secret: UPSTREAM_SECRET, timeoutMs: 1500, retries: 1, requireMessageAuthenticator: true },
        { name: 'down', host: '127.0.0.1', port: nobody, secret: UPSTREAM_SECRET, timeoutMs: 300, retries: 1, requireMessageAuthenticator: true },
        { name: 'wrong-secret', host: '127.0.0.1', port: fr!.port, secret: 'not-the-upstream-secret', timeoutMs: 400, retries: 0, requireMessageAuthenticator: true },
        { name: 'forger', host: '127.0.0.1', port: fake!.port, secret: UPSTREAM_SECRET, timeoutMs: 400, retries: 0, requireMessageAuthenticator: true },
      ];
      c.push.rateLimit.count = 100;
    });
    // Countersign's own passwords differ from the upstream's: only the upstream decides.
    // Each OTP user signs in once (a TOTP code is good once).
    for (const name of USERS) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-local-pw` })).status, 201);
      if (name !== 'bob') otp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    await s.api('POST', '/api/v1/users/factors', { users: ['bob'], factor: 'push', enabled: true });
    phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
  });
  after(async () => {
    await s?.close();
    await fr?.stop();
    await fake?.close();
  });

  /** The NAS (127.0.0.1) as an API-added client with this upstream and mode. */
  const nas = async (upstream: string, mode: 'push-wait' | 'append' | 'challenge') => {
    await s.api('DELETE', '/api/v1/radius-clients/vpn');
    const r = await s.api('POST', '/api/v1/radius-clients', { name: 'vpn', address: '127.0.0.0/8', secret: NAS_SECRET, mode, upstream });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.upstream, upstream);
  };
  const ask = (attrs: Record<string, string>, timeout = 5) => radclient(s.radiusPort!, NAS_SECRET, attrs, { timeout, retries: 1 });
  const why = (r: RadResult) => `${r.output}\n--- freeradius:\n${fr?.output().slice(-3000)}`;
  const approveNextPush = async () => {
    for (let i = 0; i < 250; i++) {
      const [p] = await phone.pending();
      if (p) return phone.answer(p.challengeId, 'approve');
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no push arrived');
  };
  const metric = async (outcome: string, upstream: string) =>
    Number(new RegExp(`countersign_radius_upstream_requests_total\\{upstream="${upstream}",outcome="${outcome}"\\} (\\d+)`).exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);

  it('the API refuses a client naming an upstream that is not configured', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    const r = await s.api('POST', '/api/v1/radius-clients', { name: 'typo', address: '192.0.2.9', secret: NAS_SECRET, upstream: 'freeradiuss' });
    assert.equal(r.status, 400);
    assert.match(r.body.message ?? JSON.stringify(r.body), /upstream 'freeradiuss' is not defined/);
    const listed = JSON.stringify((await s.api('GET', '/api/v1/radius-clients')).body);
    assert.doesNotMatch(listed, new RegExp(UPSTREAM_SECRET), 'no upstream secret in API output');
  });

  it('the CLI adds a client with --upstream, lists it, and refuses an unknown upstream', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    const cli = (args: string[], input = '') =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const child = spawn(process.execPath, [`${ROOT}/bin/countersign.js`, ...args], { env: { ...process.env, COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN } });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.stdin.end(input);
        child.on('close', (code) => resolve({ code: code ?? -1, out }));
      });
    const added = await cli(['radius-client', 'add', 'branch', '--address', '192.0.2.44', '--secret-stdin', '--mode', 'challenge', '--upstream', 'freeradius'], NAS_SECRET);
    assert.equal(added.code, 0, added.out);
    assert.match(added.out, /first factor by upstream freeradius/);
    assert.match((await cli(['radius-client', 'list'])).out, /branch {2}192\.0\.2\.44 {2}challenge upstream:freeradius/);
    const typo = await cli(['radius-client', 'add', 'branch2', '--address', '192.0.2.45', '--secret-stdin', '--upstream', 'nps'], NAS_SECRET);
    assert.notEqual(typo.code, 0);
    assert.match(typo.out, /upstream 'nps' is not defined/);
    assert.equal((await cli(['radius-client', 'delete', 'branch'])).code, 0);
  });

  it('PAP, push-wait: the upstream checks the password, the push decides; the upstream Class reaches the NAS', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'push-wait');
    const before = await metric('accept', 'freeradius');
    const pending = ask({ 'User-Name': 'bob', 'User-Password': q('bob-upstream-pw') }, 10);
    await approveNextPush();
    const r = await pending;
    assert.equal(r.code, 'Access-Accept', why(r));
    assert.equal(await metric('accept', 'freeradius'), before + 1);
    const audit = (await s.api('GET', '/api/v1/audit?user=bob&front=radius&limit=1')).body.events[0];
    assert.equal(audit.detail.firstFactor, 'upstream:freeradius');
    assert.equal(audit.outcome, 'accept');
  });

  it('PAP, challenge mode: Access-Challenge after the upstream accepts, then the TOTP code; the Class comes with the final Accept', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'challenge');
    const first = await ask({ 'User-Name': 'alice', 'User-Password': q('alice-upstream-pw') });
    assert.equal(first.code, 'Access-Challenge', why(first));
    assert.match(first.attributes['Reply-Message'] ?? '', /one-time code/);
    assert.equal(first.attributes.Class, undefined, 'nothing from the upstream before the second factor');
    const done = await ask({ 'User-Name': 'alice', 'User-Password': q(oathTotp(otp.alice!)), State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept', why(done));
    assert.equal(done.attributes.Class, '0x6e70732d636c617373', 'the upstream Class ("nps-class") is passed on');
  });

  it('PAP, append mode: the code is split off and only the password goes upstream', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'append');
    const r = await ask({ 'User-Name': 'carol', 'User-Password': q(`carol-upstream-pw,${oathTotp(otp.carol!)}`) });
    assert.equal(r.code, 'Access-Accept', why(r));
    assert.equal(r.attributes.Class, '0x6e70732d636c617373');
  });

  it('a wrong password (or Countersign’s own) → Access-Reject "Wrong user name or password", no push, no challenge', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'challenge');
    for (const pw of ['not-the-password', 'alice-local-pw']) {
      const r = await ask({ 'User-Name': 'alice', 'User-Password': q(pw) });
      assert.equal(r.code, 'Access-Reject', why(r));
      assert.equal(r.attributes['Reply-Message'], 'Wrong user name or password');
    }
    const ghost = await ask({ 'User-Name': 'mallory', 'User-Password': q('whatever-pw') });
    assert.equal(ghost.attributes['Reply-Message'], 'Wrong user name or password');
  });

  it('upstream down → Access-Reject "The password server is unavailable; login denied"', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('down', 'push-wait');
    const r = await ask({ 'User-Name': 'bob', 'User-Password': q('bob-upstream-pw') });
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.equal(r.attributes['Reply-Message'], 'The password server is unavailable; login denied');
    assert.ok((await metric('timeout', 'down')) >= 1);
  });

  it('a wrong upstream secret → Access-Reject (FreeRADIUS drops the request; a forged Accept fails the Response Authenticator)', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('wrong-secret', 'push-wait');
    const r = await ask({ 'User-Name': 'bob', 'User-Password': q('bob-upstream-pw') });
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.equal(r.attributes['Reply-Message'], 'The password server is unavailable; login denied');

    await nas('forger', 'push-wait');
    const seen = fake!.seen();
    const forged = await ask({ 'User-Name': 'bob', 'User-Password': q('anything-at-all') });
    assert.equal(forged.code, 'Access-Reject', forged.output);
    assert.equal(forged.attributes['Reply-Message'], 'The password server is unavailable; login denied');
    assert.ok(fake!.seen() > seen, 'the forger did answer');
    assert.ok((await metric('bad_response', 'forger')) >= 1);
    assert.equal((await phone.pending()).length, 0, 'no push for a forged accept');
  });

  it('CHAP passes through: radclient’s CHAP-Password (challenge = its authenticator) is checked upstream', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'challenge');
    const r = await ask({ 'User-Name': 'alice', 'CHAP-Password': q('alice-upstream-pw') });
    assert.equal(r.code, 'Access-Challenge', why(r));
    const bad = await ask({ 'User-Name': 'alice', 'CHAP-Password': q('wrong-pw') });
    assert.equal(bad.code, 'Access-Reject', why(bad));
  });

  it('MS-CHAPv1 from radclient (MS-CHAP-Password → MS-CHAP-Challenge + MS-CHAP-Response), challenge mode: MS-CHAP-MPPE-Keys re-encrypted for the follow-up', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'challenge');
    const first = await ask({ 'User-Name': 'dave', 'MS-CHAP-Password': q('dave-upstream-pw') });
    assert.equal(first.code, 'Access-Challenge', why(first));
    assert.equal(first.attributes['MS-CHAP-MPPE-Keys'], undefined);
    const done = await ask({ 'User-Name': 'dave', 'User-Password': q(oathTotp(otp.dave!)), State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept', why(done));
    // LM key (8 octets: none, as FreeRADIUS has no LM password here) then the NT session key MD4(MD4(password)).
    const keys = done.attributes['MS-CHAP-MPPE-Keys'] ?? '';
    assert.match(keys, new RegExp(`^0x[0-9a-f]{16}${md4(ntPasswordHash('dave-upstream-pw')).toString('hex')}`), why(done));
    const bad = await ask({ 'User-Name': 'dave', 'MS-CHAP-Password': q('wrong-pw') });
    assert.equal(bad.code, 'Access-Reject', why(bad));
    assert.match(bad.attributes['MS-CHAP-Error'] ?? '', /E=691/, 'the upstream’s MS-CHAP-Error reaches the NAS');
  });

  const v2Attrs = (user: string, m: ReturnType<typeof msChapV2>) => ({ 'User-Name': user, 'MS-CHAP-Challenge': hex(m.challenge), 'MS-CHAP2-Response': hex(m.response) });

  it('MS-CHAPv2, push-wait: MS-CHAP2-Success and MS-MPPE-Send/Recv-Key equal to the RFC 3079 keys as the NAS decrypts them', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'push-wait');
    const m = msChapV2('bob', 'bob-upstream-pw');
    const pending = ask(v2Attrs('bob', m), 10);
    await approveNextPush();
    const r = await pending;
    assert.equal(r.code, 'Access-Accept', why(r));
    const expected = serverMppeKeys('bob-upstream-pw', m.ntResponse);
    assert.equal(r.attributes['MS-MPPE-Send-Key'], hex(expected.send), why(r));
    assert.equal(r.attributes['MS-MPPE-Recv-Key'], hex(expected.recv), why(r));
    const success = Buffer.from(r.attributes['MS-CHAP2-Success']!.slice(2), 'hex');
    assert.equal(success.subarray(1).toString(), authenticatorResponse('bob-upstream-pw', m.ntResponse, m.peerChallenge, m.challenge, 'bob'));
    assert.ok(r.attributes['MS-MPPE-Encryption-Policy'] && r.attributes['MS-MPPE-Encryption-Types'], why(r));
  });

  it('MS-CHAPv2, challenge mode: no keys in the Access-Challenge; the follow-up’s Accept has them encrypted for the follow-up, once', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'challenge');
    const m = msChapV2('erin', 'erin-upstream-pw');
    const first = await ask(v2Attrs('erin', m));
    assert.equal(first.code, 'Access-Challenge', why(first));
    for (const a of ['MS-MPPE-Send-Key', 'MS-MPPE-Recv-Key', 'MS-CHAP2-Success', 'Class']) assert.equal(first.attributes[a], undefined, a);
    const expected = serverMppeKeys('erin-upstream-pw', m.ntResponse);
    // Kept beside the State until the final answer, sealed: the keys are not in the stored text.
    const stateKey = `radius-upstream:${Buffer.from(first.attributes.State!.slice(2), 'hex').toString('base64url')}`;
    const sealed = await s.ctx.store.kv.get(stateKey);
    assert.ok(sealed?.startsWith('v1.'), `sealed record at ${stateKey}`);
    for (const k of [expected.send, expected.recv]) assert.ok(!sealed!.includes(k.toString('hex')) && !sealed!.includes(k.toString('base64')));

    const code = oathTotp(otp.erin!);
    const done = await ask({ 'User-Name': 'erin', 'User-Password': q(code), State: first.attributes.State! });
    assert.equal(done.code, 'Access-Accept', why(done));
    assert.equal(await s.ctx.store.kv.get(stateKey), null, 'spent');
    // radclient decrypts with the authenticator of the request it sent: the follow-up's.
    assert.equal(done.attributes['MS-MPPE-Send-Key'], hex(expected.send), why(done));
    assert.equal(done.attributes['MS-MPPE-Recv-Key'], hex(expected.recv), why(done));
    assert.equal(Buffer.from(done.attributes['MS-CHAP2-Success']!.slice(2), 'hex').subarray(1).toString(), authenticatorResponse('erin-upstream-pw', m.ntResponse, m.peerChallenge, m.challenge, 'erin'));
    assert.equal(done.attributes.Class, '0x6e70732d636c617373');

    const again = await ask({ 'User-Name': 'erin', 'User-Password': q(code), State: first.attributes.State! });
    assert.equal(again.code, 'Access-Reject');
    assert.equal(again.attributes['MS-MPPE-Send-Key'], undefined);
  });

  it('MS-CHAPv2 with a wrong password → Access-Reject with the upstream’s MS-CHAP-Error', async (t) => {
    if (!requirePeer(t, peers, PEERS)) return;
    await nas('freeradius', 'push-wait');
    const m = msChapV2('bob', 'not-bobs-password');
    const r = await ask(v2Attrs('bob', m));
    assert.equal(r.code, 'Access-Reject', why(r));
    assert.equal(r.attributes['Reply-Message'], 'Wrong user name or password');
    assert.match(r.attributes['MS-CHAP-Error'] ?? '', /E=691/);
    assert.equal(r.attributes['MS-MPPE-Send-Key'], undefined);
  });
});

// ------------------------------------------------------------------ two instances, one NAS failing over

describe('upstream keys when a retransmit lands on another instance (Redis)', () => {
  let fr: FreeRadius | undefined;
  let a: TestServer | undefined;
  let b: TestServer | undefined;
  let up = false;

  before(async () => {
    up = peers && (await redisAvailable());
    if (!up) return;
    fr = await startFreeRadius({ upstream: true, nasSecret: UPSTREAM_SECRET, users: [{ name: 'bob', password: 'bob-upstream-pw' }] });
    const env = { COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: uniquePrefix('upstream') };
    const tweak = (c: Config) => {
      c.radius.upstreams = [{ name: 'freeradius', host: '127.0.0.1', port: fr!.port, secret: UPSTREAM_SECRET, timeoutMs: 1500, retries: 1, requireMessageAuthenticator: true }];
      c.radius.clients = [{ ...nasConfig(NAS_SECRET, { name: 'vpn', address: '127.0.0.0/8' }), mode: 'push-wait', upstream: 'freeradius' }];
    };
    a = await startTestServer(env, {}, tweak);
    b = await startTestServer({ ...env, COUNTERSIGN_SECRET_KEY: a.ctx.config.secretKey! }, {}, tweak);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await fr?.stop();
  });

  it('MS-CHAPv2 push-wait: the instance that answers the retransmit re-encrypts the keys for it', async (t) => {
    if (!requirePeer(t, up, `${PEERS} and redis-server`)) return;
    await a!.api('POST', '/api/v1/users', { name: 'bob' });
    await a!.api('POST', '/api/v1/users/factors', { users: ['bob'], factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await a!.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});

    const m = msChapV2('bob', 'bob-upstream-pw');
    const auth = randomBytes(16);
    const packet = encodeRequest(17, auth, NAS_SECRET, [
      [1, Buffer.from('bob')],
      [26, msAttribute(11, m.challenge)],
      [26, msAttribute(25, m.response)],
    ]);
    const sock = dgram.createSocket('udp4');
    const replies = new Map<number, Buffer>();
    sock.on('message', (msg, rinfo) => replies.set(rinfo.port, msg));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      sock.send(packet, a!.radiusPort!, '127.0.0.1');
      let pending;
      for (let i = 0; i < 250 && !(pending = (await phone.pending())[0]); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(pending, 'the push went out');
      // The NAS fails over: the same packet to the other instance, until it has joined the login.
      const joined = async () => /countersign_radius_duplicates_total\{state="pending"\} [1-9]/.test((await b!.api('GET', '/metrics')).body as string);
      for (let i = 0; i < 25 && !(await joined()); i++) {
        sock.send(packet, b!.radiusPort!, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(await joined(), 'the second instance joined the pending login');
      await phone.answer(pending!.challengeId, 'approve');
      for (let i = 0; i < 150 && replies.size < 2; i++) await new Promise((r) => setTimeout(r, 20));
      const expected = serverMppeKeys('bob-upstream-pw', m.ntResponse);
      for (const port of [a!.radiusPort!, b!.radiusPort!]) {
        const reply = parseRaw(replies.get(port) ?? Buffer.alloc(0));
        assert.ok(!('ok' in reply), `a reply from ${port}`);
        const r = reply as RawPacket;
        assert.equal(r.code, 2, 'Access-Accept');
        const ms = new Map(msAttributes(r.attributes));
        assert.deepEqual(decryptMppeKey(ms.get(16)!, NAS_SECRET, auth), expected.send, `MS-MPPE-Send-Key from ${port}`);
        assert.deepEqual(decryptMppeKey(ms.get(17)!, NAS_SECRET, auth), expected.recv, `MS-MPPE-Recv-Key from ${port}`);
        assert.ok(ms.get(26), 'MS-CHAP2-Success');
      }
    } finally {
      sock.close();
    }
  });
});
