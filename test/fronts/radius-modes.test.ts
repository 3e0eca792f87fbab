import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import radius from 'radius';
import type { Config } from '../../src/config/schema.js';
import { base32Decode, hotp, totpStep } from '../../src/core/otp.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { wrongCode, oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const haveOathtool = hasCommand('oathtool');
const SECRET = 'radius-modes-secret';

type ClientConfig = Config['radius']['clients'][number];
const client = (over: Partial<ClientConfig> & Pick<ClientConfig, 'name' | 'address'>): ClientConfig => nasConfig(SECRET, over);

async function serverWith(clients: ClientConfig[], env: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(env, {}, (config) => {
    config.radius.clients = clients;
  });
}

/** Creates a user with a password and OTP; returns the base32 OTP secret. */
async function userWithOtp(s: TestServer, name: string, password: string): Promise<string> {
  assert.equal((await s.api('POST', '/api/v1/users', { name, password })).status, 201);
  const secret = (await s.api('POST', '/api/v1/users/' + name + '/otp', {})).body.secret as string;
  assert.equal((await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'otp', enabled: true })).status < 300, true);
  return secret;
}


const dropped = async (s: TestServer, reason: string) =>
  Number(new RegExp(`countersign_radius_dropped_total\\{reason="${reason}"\\} (\\d+)`).exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);

// ------------------------------------------------------------ a NAS written here, checked by hand

/** RFC 3579 §3.2 Message-Authenticator filled in over the whole packet (the `radius` package leaves an explicit one zero). */
function signRequest(pkt: Buffer, secret: string): Buffer {
  for (let off = 20; off + 2 <= pkt.length; off += pkt[off + 1]!) {
    if (pkt[off + 1]! < 2) break;
    if (pkt[off] === 80 && pkt[off + 1] === 18) {
      pkt.fill(0, off + 2, off + 18);
      createHmac('md5', secret).update(pkt).digest().copy(pkt, off + 2);
      break;
    }
  }
  return pkt;
}

function accessRequest(attributes: [string, unknown][], opts: { messageAuthenticator?: boolean; secret?: string } = {}): Buffer {
  const secret = opts.secret ?? SECRET;
  const attrs = opts.messageAuthenticator === false ? attributes : [...attributes, ['Message-Authenticator', Buffer.alloc(16)]];
  const pkt = radius.encode({ code: 'Access-Request', secret, identifier: randomBytes(1)[0]!, attributes: attrs, add_message_authenticator: false });
  return opts.messageAuthenticator === false ? pkt : signRequest(pkt, secret);
}

/** Sends one datagram from `bindAddress` and waits for one answer (null after `ms`). */
async function exchange(port: number, pkt: Buffer, opts: { bindAddress?: string; to?: string; ms?: number } = {}): Promise<Buffer | null> {
  const sock = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer | null>((resolve, reject) => {
      const timer = setTimeout(() => resolve(null), opts.ms ?? 1500);
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.on('message', (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      sock.bind(0, opts.bindAddress ?? '127.0.0.1', () => sock.send(pkt, port, opts.to ?? '127.0.0.1'));
    });
  } finally {
    sock.close();
  }
}

interface Attribute {
  type: number;
  value: Buffer;
}

/** Parses a reply strictly and checks both authenticators per RFC 2865 §3 and RFC 3579 §3.2. */
function verifyReply(reply: Buffer, request: Buffer, secret = SECRET): { code: number; attributes: Attribute[] } {
  assert.ok(reply.length >= 20, 'a RADIUS header');
  const length = reply.readUInt16BE(2);
  assert.equal(length, reply.length, 'Length field = datagram size');
  assert.ok(length <= 4096);
  assert.equal(reply[1], request[1], 'Identifier echoed');
  const attributes: Attribute[] = [];
  for (let off = 20; off < length; ) {
    assert.ok(off + 2 <= length, 'attribute header inside the packet');
    const len = reply[off + 1]!;
    assert.ok(len >= 2 && off + len <= length, `attribute ${reply[off]} has a sound length`);
    attributes.push({ type: reply[off]!, value: reply.subarray(off + 2, off + len) });
    off += len;
  }
  const requestAuth = request.subarray(4, 20);
  // Response Authenticator = MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
  const responseAuth = createHash('md5').update(reply.subarray(0, 4)).update(requestAuth).update(reply.subarray(20)).update(secret).digest();
  assert.ok(responseAuth.equals(reply.subarray(4, 20)), 'Response Authenticator verifies');
  // Message-Authenticator = HMAC-MD5(secret, packet with the Request Authenticator in place and the attribute zeroed).
  const zeroed = Buffer.from(reply);
  requestAuth.copy(zeroed, 4);
  const at = 20;
  assert.equal(reply[at], 80, 'the first attribute (byte 20) is Message-Authenticator');
  assert.equal(reply[at + 1], 18, 'Message-Authenticator is 18 bytes long');
  zeroed.fill(0, at + 2, at + 18);
  const ma = createHmac('md5', secret).update(zeroed).digest();
  assert.ok(ma.equals(reply.subarray(at + 2, at + 18)), 'Message-Authenticator verifies');
  assert.equal(attributes.filter((a) => a.type === 80).length, 1, 'one Message-Authenticator');
  return { code: reply[0]!, attributes };
}

const text = (attrs: Attribute[], type: number) => attrs.find((a) => a.type === type)?.value.toString('utf8');

// ------------------------------------------------------------ (a) IPv6

describe('RADIUS over IPv6 (::1)', () => {
  let s: TestServer;
  let otp: string;
  before(async () => {
    s = await serverWith([client({ name: 'v6-nas', address: '::1/128' })], { COUNTERSIGN_RADIUS_HOST: '::1' });
    otp = await userWithOtp(s, 'alice', 'alice-pw');
  });
  after(() => s?.close());

  it('accepts password + TOTP from radclient sent to [::1]:port', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${oathTotp(otp)}`) }, { host: '[::1]' });
    assert.match(r.output, /to \[::1\]:\d+/, 'radclient talked IPv6');
    assert.equal(r.code, 'Access-Accept', r.output);
    assert.match(r.output, /Message-Authenticator/);
  });

  it('rejects a wrong code over IPv6 too', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${wrongCode(otp)}`) }, { host: '[::1]' });
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.ok(r.attributes['Reply-Message'], 'a Reply-Message says why');
  });
});

// ------------------------------------------------------------ (b) second factor only; Message-Authenticator required or not

describe('RADIUS client options', () => {
  describe('secondFactorOnly in append mode (the NAS checked the password)', () => {
    let s: TestServer;
    let otp: string;
    before(async () => {
      s = await serverWith([client({ name: 'sfo-nas', address: '127.0.0.1/32', secondFactorOnly: true })]);
      otp = await userWithOtp(s, 'alice', 'alice-pw');
    });
    after(() => s?.close());

    it('accepts the TOTP alone as User-Password', async (t) => {
      if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(oathTotp(otp)) });
      assert.equal(r.code, 'Access-Accept', r.output);
    });

    it('rejects a wrong code with a Reply-Message', async (t) => {
      if (!requirePeer(t, haveRadclient, 'radclient')) return;
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(wrongCode(otp)) });
      assert.equal(r.code, 'Access-Reject', r.output);
      assert.match(r.attributes['Reply-Message'] ?? '', /wrong/i);
    });

    it('rejects password + code: the field is the code alone', async (t) => {
      if (!requirePeer(t, haveRadclient, 'radclient')) return;
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${wrongCode(otp)}`) });
      assert.equal(r.code, 'Access-Reject', r.output);
      assert.ok(r.attributes['Reply-Message']);
    });

    it('drops a request without Message-Authenticator (required by default): no reply, counted', async (t) => {
      if (!requirePeer(t, haveRadclient, 'radclient')) return;
      const before = await dropped(s, 'missing_message_authenticator');
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'alice', 'User-Password': q(wrongCode(otp)) }, { messageAuthenticator: false, timeout: 1, retries: 1 });
      assert.equal(r.code, 'timeout', r.output);
      assert.ok((await dropped(s, 'missing_message_authenticator')) > before);
    });
  });

  describe('requireMessageAuthenticator: false (old gear)', () => {
    let s: TestServer;
    let otp: string;
    before(async () => {
      s = await serverWith([client({ name: 'legacy-nas', address: '127.0.0.1/32', requireMessageAuthenticator: false })]);
      otp = await userWithOtp(s, 'bob', 'bob-pw');
    });
    after(() => s?.close());

    it('accepts a request without Message-Authenticator, and still signs the answer', async (t) => {
      if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
      const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'bob', 'User-Password': q(`bob-pw,${oathTotp(otp)}`) }, { messageAuthenticator: false });
      assert.equal(r.code, 'Access-Accept', r.output);
      assert.doesNotMatch(r.output.slice(0, r.output.indexOf('Received')), /Message-Authenticator/, 'the request had none');
      assert.match(r.output.slice(r.output.indexOf('Received')), /Message-Authenticator/, 'the answer has one');
    });

    it('still drops a request whose Message-Authenticator is wrong', async () => {
      const before = await dropped(s, 'bad_message_authenticator');
      const pkt = accessRequest([['User-Name', 'bob'], ['User-Password', 'bob-pw,123456']]);
      pkt[pkt.length - 1]! ^= 0x01;
      assert.equal(await exchange(s.radiusPort!, pkt), null);
      assert.ok((await dropped(s, 'bad_message_authenticator')) > before);
    });
  });
});

// ------------------------------------------------------------ (c) the shape of an answer, checked by hand

describe('RADIUS answers: Message-Authenticator first, both authenticators verify', () => {
  let s: TestServer;
  let otp: string;
  before(async () => {
    s = await serverWith([
      client({ name: 'vpn', address: '127.0.0.1/32', acceptAttributes: [['Class', 'vpn-users'], ['Session-Timeout', 3600]] }),
      client({ name: 'legacy', address: '127.0.0.3/32', requireMessageAuthenticator: false }),
    ]);
    otp = await userWithOtp(s, 'carol', 'carol-pw');
  });
  after(() => s?.close());

  it('an Access-Accept with attributes and an echoed Proxy-State', async () => {
    const proxyState = Buffer.from('ps-0123');
    const req = accessRequest([
      ['User-Name', 'carol'],
      ['User-Password', `carol-pw,${hotp(base32Decode(otp), totpStep(Date.now(), 30), 'SHA1', 6)}`],
      ['Proxy-State', proxyState],
    ]);
    const reply = await exchange(s.radiusPort!, req);
    assert.ok(reply, 'an answer');
    const { code, attributes } = verifyReply(reply, req);
    assert.equal(code, 2, `Access-Accept; Reply-Message: ${text(attributes, 18)}`);
    assert.equal(reply[20], 80);
    assert.equal(text(attributes, 25), 'vpn-users', 'Class');
    assert.equal(attributes.find((a) => a.type === 27)?.value.readUInt32BE(0), 3600, 'Session-Timeout');
    assert.ok(attributes.find((a) => a.type === 33)?.value.equals(proxyState), 'Proxy-State echoed');
  });

  it('an Access-Reject with a Reply-Message', async () => {
    const req = accessRequest([['User-Name', 'carol'], ['User-Password', 'wrong-pw,123456']]);
    const reply = await exchange(s.radiusPort!, req);
    assert.ok(reply, 'an answer');
    const { code, attributes } = verifyReply(reply, req);
    assert.equal(code, 3);
    assert.equal(text(attributes, 18), 'Wrong user name or password');
  });

  it('an answer to a request that had no Message-Authenticator (client that allows it) carries one, first', async () => {
    const req = accessRequest([['User-Name', 'carol'], ['User-Password', 'wrong-pw']], { messageAuthenticator: false });
    assert.equal(req.indexOf(Buffer.from([80, 18]), 20), -1, 'the request has none');
    const reply = await exchange(s.radiusPort!, req, { bindAddress: '127.0.0.3' });
    assert.ok(reply, 'an answer');
    assert.equal(verifyReply(reply, req).code, 3);
  });

  it('a retransmit gets the same answer, byte for byte', async () => {
    const req = accessRequest([['User-Name', 'carol'], ['User-Password', 'wrong-again']]);
    const sock = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    try {
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
      sock.on('message', (m) => replies.push(m));
      sock.send(req, s.radiusPort!, '127.0.0.1');
      for (let i = 0; i < 100 && replies.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      sock.send(req, s.radiusPort!, '127.0.0.1');
      for (let i = 0; i < 100 && replies.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      sock.close();
    }
    assert.equal(replies.length, 2);
    verifyReply(replies[0]!, req);
    assert.ok(replies[0]!.equals(replies[1]!));
  });
});

// ------------------------------------------------------------ (d) unknown source address

describe('RADIUS from an address no client covers', () => {
  let s: TestServer;
  before(async () => {
    s = await serverWith([client({ name: 'remote-office', address: '127.0.0.2/32' })]);
    assert.equal((await s.api('POST', '/api/v1/users', { name: 'dave', password: 'dave-pw' })).status, 201);
  });
  after(() => s?.close());

  it('drops radclient from 127.0.0.1 (client defined for 127.0.0.2/32 only) and counts unknown_client', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const before = await dropped(s, 'unknown_client');
    const r = await radclient(s.radiusPort!, SECRET, { 'User-Name': 'dave', 'User-Password': q('dave-pw,123456') }, { timeout: 1, retries: 1 });
    assert.equal(r.code, 'timeout', r.output);
    const after = await dropped(s, 'unknown_client');
    assert.ok(after > before, `unknown_client ${before} → ${after}`);
  });

  it('answers the same request sent from 127.0.0.2 (the client it knows)', async () => {
    const req = accessRequest([['User-Name', 'dave'], ['User-Password', 'dave-pw,123456']]);
    assert.equal(await exchange(s.radiusPort!, req, { bindAddress: '127.0.0.1', ms: 700 }), null, 'not from 127.0.0.1');
    const reply = await exchange(s.radiusPort!, req, { bindAddress: '127.0.0.2' });
    assert.ok(reply, 'an answer from 127.0.0.2');
    assert.equal(verifyReply(reply, req).code, 3, 'dave has no second factor: rejected, but answered');
  });
});
