/**
 * The audit an investigation needs is there when it looks: no user can push it out with
 * events they cause in volume, a wrong code is an event of the user who typed it, and a
 * bulk change is an event of every user it changed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import radius from 'radius';
import { base32Decode, totp } from '../../src/core/otp.js';
import { redisAvailable, testRedisUrl, uniquePrefix } from '../helpers/peers.js';
import { nasConfig } from '../helpers/radclient.js';
import { wrongCode, startTestServer, type TestServer } from '../helpers/server.js';

const SECRET = 'audit-test-nas-secret';

/** Audit records are written without holding up the answer: wait until the one looked for is there. */
async function eventually<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never happened: ${what}`);
}

const auditOf = async (s: TestServer, query: string): Promise<any[]> => {
  const r = await s.api('GET', `/api/v1/audit?limit=1000&${query}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.events;
};


/** A NAS on one loopback address: one UDP socket, one request at a time. */
async function nasAt(address: string) {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, address, r));
  let id = 0;
  const exchange = (packet: Buffer, port: number, decode: (msg: Buffer) => any) =>
    new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer')), 5000);
      sock.once('message', (msg) => {
        clearTimeout(timer);
        resolve(decode(msg));
      });
      sock.send(packet, port, '127.0.0.1');
    });
  return {
    /** An Access-Request; its answer's code and attributes. */
    access(port: number, attributes: [string, string | Buffer][]) {
      const packet = radius.encode({ code: 'Access-Request', secret: SECRET, identifier: ++id % 256, attributes, add_message_authenticator: true });
      return exchange(packet, port, (msg) => radius.decode({ packet: msg, secret: SECRET }));
    },
    /** An Accounting-Request (Start) signed per RFC 2866 §3; resolves when it is answered. */
    accountingStart(port: number, user: string, session: string) {
      const attr = (type: number, v: Buffer) => Buffer.concat([Buffer.from([type, v.length + 2]), v]);
      const status = Buffer.alloc(4);
      status.writeUInt32BE(1);
      const body = [attr(40, status), attr(1, Buffer.from(user)), attr(44, Buffer.from(session))];
      const pkt = Buffer.concat([Buffer.from([4, ++id % 256, 0, 0]), Buffer.alloc(16), ...body]);
      pkt.writeUInt16BE(pkt.length, 2);
      createHash('md5').update(pkt).update(SECRET).digest().copy(pkt, 4);
      return exchange(pkt, port, (msg) => msg[0]);
    },
    close: () => sock.close(),
  };
}

const stores = [
  { name: 'memory', env: async () => ({}) },
  {
    name: 'redis',
    env: async () => ((await redisAvailable()) ? { COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: uniquePrefix('audit') } : null),
  },
];

for (const kind of stores) {
  describe(`nothing a NAS or a user sends in volume pushes the security audit out (${kind.name} store)`, () => {
    let s: TestServer | undefined;
    let nas: Awaited<ReturnType<typeof nasAt>> | undefined;
    let prefix: string | undefined;
    before(async () => {
      const env = await kind.env();
      if (!env) return;
      prefix = (env as { COUNTERSIGN_REDIS_PREFIX?: string }).COUNTERSIGN_REDIS_PREFIX;
      s = await startTestServer(env, {}, (config) => {
        config.radius.clients = [nasConfig(SECRET, { name: 'vpn-gw', address: '127.0.0.1/32' })];
        // Both streams small: the flood below is three times either.
        config.audit.limit = 100;
        config.audit.activityLimit = 100;
      });
      nas = await nasAt('127.0.0.1');
    });
    after(async () => {
      nas?.close();
      await s?.close();
      // Audit streams keep no TTL: leave nothing behind in the shared Redis.
      if (prefix) {
        const raw = new Redis(testRedisUrl());
        const keys = await raw.keys(`${prefix}:*`);
        if (keys.length) await raw.del(...keys);
        raw.disconnect();
      }
    });

    it('an administrator\'s change and a login outlast 300 accounting events of the same user', async (t) => {
      if (!s) return t.skip('redis-server not reachable');
      assert.equal((await s.api('POST', '/api/v1/users', { name: 'victor', password: 'victor-pw' })).status, 201);
      assert.equal((await s.api('POST', '/api/v1/users/victor/otp', {})).status, 200);
      const open = await s.api('POST', '/api/v1/challenges', { user: 'victor' });
      assert.equal(open.status, 201, JSON.stringify(open.body));
      assert.equal((await s.api('POST', `/api/v1/challenges/${open.body.id}/approve`, {})).status, 200);
      await eventually(async () => ((await auditOf(s!, 'user=victor&type=login')).some((e) => e.type === 'login') ? true : undefined), 'the login audited');
      for (let i = 0; i < 300; i++) assert.equal(await nas!.accountingStart(s.radiusAccountingPort!, 'victor', `flood-${i}`), 5, 'Accounting-Response');
      await eventually(async () => ((await auditOf(s!, 'user=victor')).some((e) => e.detail?.sessionId === 'flood-299') ? true : undefined), 'the last accounting event');
      const events = await auditOf(s, 'user=victor');
      const accounting = events.filter((e) => e.type === 'accounting');
      assert.ok(accounting.length > 0 && accounting.length < 300, `the activity stream was trimmed (${accounting.length} kept)`);
      assert.ok(events.some((e) => e.type === 'admin' && e.detail?.action === 'user.create'), 'the user.create event is still there');
      assert.ok(events.some((e) => e.type === 'admin' && e.detail?.action === 'challenge.approve'), 'the approval is still there');
      assert.ok(events.some((e) => e.type === 'login' && e.challengeId === open.body.id), 'the login is still there');
      const security = await auditOf(s, 'user=victor&stream=security');
      assert.ok(security.every((e) => e.type !== 'accounting'), 'accounting is never a security event');
    });
  });
}

describe('a wrong code is an audit event of the user who typed it', () => {
  let s: TestServer;
  let bridgeToken: string;
  const secrets: Record<string, string> = {};
  let challengeNas: Awaited<ReturnType<typeof nasAt>>;
  let appendNas: Awaited<ReturnType<typeof nasAt>>;

  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.otp.maxFailures = 3;
      config.radius.clients = [
        nasConfig(SECRET, { name: 'vpn-challenge', address: '127.0.0.1/32', mode: 'challenge' }),
        nasConfig(SECRET, { name: 'vpn-append', address: '127.0.0.2/32', mode: 'append' }),
      ];
    });
    for (const name of ['ann', 'ben', 'cat', 'dan', 'eve', 'fay']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
      secrets[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    bridgeToken = (await s.api('POST', '/api/v1/bridge-credentials', { name: 'fleet-audit' })).body.token;
    challengeNas = await nasAt('127.0.0.1');
    appendNas = await nasAt('127.0.0.2');
  });
  after(async () => {
    challengeNas?.close();
    appendNas?.close();
    await s?.close();
  });

  const otpEvents = (user: string) =>
    eventually(async () => {
      const events = (await auditOf(s, `user=${user}`)).filter((e) => e.type === 'otp');
      return events.length > 0 ? events : undefined;
    }, `an otp event of ${user}`);

  it('the admin API: who, where from, which login, why; and a lock after too many', async () => {
    const open = await s.api('POST', '/api/v1/challenges', { user: 'ann' });
    assert.equal(open.status, 201);
    const wrong = wrongCode(secrets.ann!);
    assert.equal((await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code: wrong })).status, 401);
    const [e] = await otpEvents('ann');
    assert.equal(e.outcome, 'otp_invalid');
    assert.equal(e.method, 'otp');
    assert.equal(e.front, 'api');
    assert.equal(e.challengeId, open.body.id);
    assert.ok(e.ip, 'the source address');
    assert.ok(!JSON.stringify(e).includes(wrong), 'the code typed is not kept');
    // Two more: the third wrong code (otp.maxFailures) locks.
    assert.equal((await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code: wrong })).status, 401);
    assert.equal((await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code: wrong })).status, 423);
    const all = await eventually(async () => {
      const events = (await auditOf(s, 'user=ann&type=otp')).filter((x) => x.type === 'otp');
      return events.length === 3 ? events : undefined;
    }, 'three otp events');
    assert.deepEqual(all.map((x) => x.outcome), ['otp_locked', 'otp_invalid', 'otp_invalid']);
    assert.ok((await auditOf(s, 'user=ann&outcome=otp_locked')).some((x) => x.type === 'otp'), 'found by outcome');
  });

  it('the bridge: the workstation and the credential\'s login', async () => {
    const res = await fetch(`${s.url}/bridge/v1/logins`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bridgeToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'ben', workstation: 'PC-0042', ip: '192.0.2.42' }),
    });
    assert.equal(res.status, 201);
    const login = (await res.json()) as { challengeId: string };
    const answer = await fetch(`${s.url}/bridge/v1/logins/${login.challengeId}/otp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bridgeToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ code: wrongCode(secrets.ben!) }),
    });
    assert.equal(answer.status, 401);
    const [e] = await otpEvents('ben');
    assert.equal(e.outcome, 'otp_invalid');
    assert.equal(e.front, 'bridge');
    assert.equal(e.client, 'PC-0042');
    assert.equal(e.ip, '192.0.2.42');
  });

  it('RADIUS challenge mode: the code typed at the prompt', async () => {
    const first = await challengeNas.access(s.radiusPort!, [['User-Name', 'cat'], ['User-Password', 'cat-pw']]);
    assert.equal(first.code, 'Access-Challenge');
    const again = await challengeNas.access(s.radiusPort!, [
      ['User-Name', 'cat'],
      ['User-Password', wrongCode(secrets.cat!)],
      ['State', first.raw_attributes.find(([t]: [number]) => t === 24)[1]],
    ]);
    assert.equal(again.code, 'Access-Challenge', 'asked again');
    const [e] = await otpEvents('cat');
    assert.equal(e.outcome, 'otp_invalid');
    assert.equal(e.front, 'radius');
    assert.equal(e.client, 'vpn-challenge');
  });

  it('RADIUS append: a wrong code and a reused one', async () => {
    const wrong = await appendNas.access(s.radiusPort!, [['User-Name', 'dan'], ['User-Password', `dan-pw,${wrongCode(secrets.dan!)}`]]);
    assert.equal(wrong.code, 'Access-Reject');
    const [e] = await otpEvents('dan');
    assert.equal(e.outcome, 'otp_invalid');
    assert.equal(e.front, 'radius');
    assert.equal(e.client, 'vpn-append');
    assert.ok(e.challengeId, 'names the login it ended');

    const code = totp(base32Decode(secrets.eve!), Date.now(), { algorithm: 'SHA1', digits: 6, period: 30 });
    assert.equal((await appendNas.access(s.radiusPort!, [['User-Name', 'eve'], ['User-Password', `eve-pw,${code}`]])).code, 'Access-Accept');
    assert.equal((await appendNas.access(s.radiusPort!, [['User-Name', 'eve'], ['User-Password', `eve-pw,${code}`]])).code, 'Access-Reject');
    const [r] = await otpEvents('eve');
    assert.equal(r.outcome, 'otp_replayed');
  });

  it('a store that cannot take the event changes no outcome', async () => {
    const audit = s.ctx.store.audit;
    const append = audit.append.bind(audit);
    audit.append = async () => {
      throw new Error('audit store down');
    };
    try {
      const open = await s.api('POST', '/api/v1/challenges', { user: 'fay' });
      assert.equal((await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code: wrongCode(secrets.fay!) })).status, 401, 'still a wrong code');
      const code = totp(base32Decode(secrets.fay!), Date.now(), { algorithm: 'SHA1', digits: 6, period: 30 });
      const right = await s.api('POST', `/api/v1/challenges/${open.body.id}/otp`, { code });
      assert.equal(right.status, 200, JSON.stringify(right.body));
      assert.equal(right.body.state, 'approved');
    } finally {
      audit.append = append;
    }
  });
});

describe('a bulk change is an audit event of every user it changed', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    for (const name of ['alice', 'bob', 'carol']) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, email: `${name}@example.org` })).status, 201);
    }
    assert.equal((await s.api('POST', '/api/v1/users/factors', { users: ['carol'], factor: 'push', enabled: true })).status, 200);
  });
  after(() => s?.close());

  it('turning a factor on for alice, bob and carol: one event each for alice and bob, one for the call', async () => {
    const r = await s.api('POST', '/api/v1/users/factors', { users: ['alice', 'bob', 'carol', 'ghost'], factor: 'push', enabled: true });
    assert.equal(r.status, 200);
    const forAlice = await eventually(
      async () => (await auditOf(s, 'user=alice')).find((e) => e.type === 'admin' && e.detail?.action === 'push.enable'),
      'alice\'s push.enable',
    );
    assert.equal(forAlice.actor, 'admin-token');
    assert.ok(forAlice.ip);
    const forBob = (await auditOf(s, 'user=bob')).find((e) => e.detail?.action === 'push.enable');
    assert.ok(forBob, 'bob\'s push.enable');
    assert.equal(forBob.detail.batch, forAlice.detail.batch, 'one batch');
    const carol = (await auditOf(s, 'user=carol')).filter((e) => e.detail?.action === 'push.enable');
    assert.equal(carol.length, 1, 'carol had push already: only the earlier call changed her');
    const summary = (await auditOf(s, 'type=admin')).find((e) => e.detail?.action === 'factors.bulk' && e.detail.batch === forAlice.detail.batch);
    assert.ok(summary, 'one event for the call');
    assert.equal(summary.user, undefined);
    assert.deepEqual(
      { factor: summary.detail.factor, enabled: summary.detail.enabled, requested: summary.detail.requested, failed: summary.detail.failed, changed: summary.detail.changed },
      { factor: 'push', enabled: true, requested: 4, failed: 1, changed: 2 },
    );
  });

  it('invitations to several users: one event each', async () => {
    const r = await s.api('POST', '/api/v1/invitations', { users: ['alice', 'bob'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const name of ['alice', 'bob']) {
      await eventually(
        async () => (await auditOf(s, `user=${name}`)).find((e) => e.type === 'admin' && e.detail?.action === 'invitation.send'),
        `${name}'s invitation`,
      );
    }
  });
});
