import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { SessionStore, type RadiusSession } from '../../src/fronts/radius/accounting.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { storeKinds } from '../helpers/stores.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const SECRET = 'radius-acct-secret';

const dropped = async (s: TestServer, reason: string) =>
  Number(new RegExp(`countersign_radius_dropped_total\\{reason="${reason}"\\} (\\d+)`).exec((await s.api('GET', '/metrics')).body as string)?.[1] ?? 0);

const events = async (s: TestServer, query: string) =>
  ((await s.api('GET', `/api/v1/audit?front=radius&limit=1000&${query}`)).body.events as any[]).filter((e) => e.type === 'accounting');

const sessions = async (s: TestServer, query = '') => {
  const r = await s.api('GET', `/api/v1/radius-sessions${query}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.sessions as any[];
};

// ------------------------------------------------------------ a NAS written here, for what radclient cannot send

const attr = (type: number, value: Buffer | string | number): Buffer => {
  const v = typeof value === 'number' ? Buffer.from([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]) : Buffer.from(value);
  return Buffer.concat([Buffer.from([type, v.length + 2]), v]);
};

/**
 * An Accounting-Request signed per RFC 2866 §3 (and RFC 3579 §3.2 when it carries
 * Message-Authenticator, computed with a zero Request Authenticator as FreeRADIUS does).
 */
function accountingRequest(attrs: Buffer[], opts: { secret?: string; id?: number; messageAuthenticator?: 'good' | 'bad' } = {}): Buffer {
  const secret = opts.secret ?? SECRET;
  const ma = opts.messageAuthenticator ? [Buffer.from([80, 18]), Buffer.alloc(16)] : [];
  const pkt = Buffer.concat([Buffer.from([4, opts.id ?? randomBytes(1)[0]!, 0, 0]), Buffer.alloc(16), ...attrs, ...ma]);
  pkt.writeUInt16BE(pkt.length, 2);
  if (opts.messageAuthenticator) {
    const mac = createHmac('md5', secret).update(pkt).digest();
    if (opts.messageAuthenticator === 'bad') mac[0] = mac[0]! ^ 1;
    mac.copy(pkt, pkt.length - 16);
  }
  createHash('md5').update(pkt).update(secret).digest().copy(pkt, 4);
  return pkt;
}

/** One UDP socket (one source port), as a NAS keeps it: sends and waits for one answer, null after `ms`. */
async function nasSocket() {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return {
    send(pkt: Buffer, port: number, ms = 1500): Promise<Buffer | null> {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          sock.off('message', on);
          resolve(null);
        }, ms);
        const on = (msg: Buffer) => {
          clearTimeout(timer);
          sock.off('message', on);
          resolve(msg);
        };
        sock.on('message', on);
        sock.send(pkt, port, '127.0.0.1');
      });
    },
    close: () => sock.close(),
  };
}

/** An Accounting-Response to `request`: code 5, the Identifier, the Response Authenticator of RFC 2866 §3. */
function checkResponse(reply: Buffer | null, request: Buffer, secret = SECRET): Buffer {
  assert.ok(reply, 'an answer');
  assert.equal(reply[0], 5, 'Accounting-Response');
  assert.equal(reply[1], request[1], 'Identifier echoed');
  assert.equal(reply.readUInt16BE(2), reply.length);
  const expected = createHash('md5').update(reply.subarray(0, 4)).update(request.subarray(4, 20)).update(reply.subarray(20)).update(secret).digest();
  assert.ok(expected.equals(reply.subarray(4, 20)), 'Response Authenticator verifies');
  return reply;
}

describe('RADIUS accounting (RFC 2866) with radclient as the NAS', () => {
  let s: TestServer;
  let acct: number;
  let auth: number;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.radius.clients = [
        // Message-Authenticator is required for Access-Request; accounting does without it.
        nasConfig(SECRET, { name: 'vpn-gw', address: '127.0.0.1/32' }),
        nasConfig('other-nas-secret', { name: 'other-gw', address: '127.0.0.3/32' }),
      ];
    });
    acct = s.radiusAccountingPort!;
    auth = s.radiusPort!;
    assert.ok(acct > 0 && acct !== auth, 'an accounting port of its own');
  });
  after(() => s?.close());

  it('Start, Interim-Update and Stop: each answered, recorded as an audit event, the session listed until Stop', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const session = {
      'User-Name': 'alice',
      'Acct-Session-Id': q('sess-0001'),
      'NAS-IP-Address': '192.0.2.10',
      'NAS-Identifier': q('vpn-gw-1'),
      'Framed-IP-Address': '10.8.0.6',
      'Calling-Station-Id': q('198.51.100.7'),
    };
    const start = await radclient(acct, SECRET, { ...session, 'Acct-Status-Type': 'Start', 'Proxy-State': '0x0a0b' }, { type: 'acct', messageAuthenticator: false });
    assert.equal(start.code, 'Accounting-Response', start.output);
    assert.equal(start.attributes['Proxy-State'], '0x0a0b', 'Proxy-State echoed');
    assert.doesNotMatch(start.output.slice(start.output.indexOf('Received')), /Message-Authenticator|Reply-Message/, 'no other attributes');

    let [open] = await sessions(s, '?user=alice');
    assert.ok(open, 'listed after Start');
    assert.equal(open.sessionId, 'sess-0001');
    assert.equal(open.client, 'vpn-gw');
    assert.deepEqual(open.nas, { address: '127.0.0.1', ip: '192.0.2.10', identifier: 'vpn-gw-1' });
    assert.equal(open.framedIp, '10.8.0.6');
    assert.equal(open.callingStationId, '198.51.100.7');

    // Interim-Update, sent with Message-Authenticator (verified when present), on the auth port this time.
    const interim = await radclient(
      auth,
      SECRET,
      { ...session, 'Acct-Status-Type': 'Interim-Update', 'Acct-Session-Time': '600', 'Acct-Input-Octets': '1000', 'Acct-Input-Gigawords': '1', 'Acct-Output-Octets': '2000' },
      { type: 'acct' },
    );
    assert.equal(interim.code, 'Accounting-Response', interim.output);
    [open] = await sessions(s, '?client=vpn-gw');
    assert.equal(open.sessionTime, 600);
    assert.equal(open.inputOctets, 2 ** 32 + 1000, 'Gigawords counted');
    assert.equal(open.outputOctets, 2000);
    assert.equal((await sessions(s, '?user=bob')).length, 0, 'filtered by user');
    assert.equal((await sessions(s, '?client=other-gw')).length, 0, 'filtered by client');

    const stop = await radclient(
      acct,
      SECRET,
      { ...session, 'Acct-Status-Type': 'Stop', 'Acct-Session-Time': '900', 'Acct-Input-Octets': '5000', 'Acct-Output-Octets': '7000', 'Acct-Terminate-Cause': 'User-Request' },
      { type: 'acct', messageAuthenticator: false },
    );
    assert.equal(stop.code, 'Accounting-Response', stop.output);
    assert.equal((await sessions(s, '?user=alice')).length, 0, 'gone after Stop');
    const late = await radclient(acct, SECRET, { ...session, 'Acct-Status-Type': 'Interim-Update', 'Acct-Session-Time': '590' }, { type: 'acct', messageAuthenticator: false });
    assert.equal(late.code, 'Accounting-Response', late.output);
    assert.equal((await sessions(s, '?user=alice')).length, 0, 'an Interim-Update after the Stop (reordered) does not bring it back');

    const audit = (await events(s, 'user=alice')).filter((e) => e.detail.sessionId === 'sess-0001').reverse();
    assert.deepEqual(audit.map((e) => e.outcome), ['start', 'interim-update', 'stop', 'interim-update']);
    assert.equal(audit[0].client, 'vpn-gw');
    assert.equal(audit[0].ip, '198.51.100.7', 'the user’s address, as for Access-Requests');
    assert.equal(audit[0].detail.framedIp, '10.8.0.6');
    assert.equal(audit[0].detail.nasIdentifier, 'vpn-gw-1');
    assert.equal(audit[0].detail.nasIp, '192.0.2.10');
    assert.deepEqual(
      { sessionTime: audit[2].detail.sessionTime, inputOctets: audit[2].detail.inputOctets, outputOctets: audit[2].detail.outputOctets, cause: audit[2].detail.terminateCause },
      { sessionTime: 900, inputOctets: 5000, outputOctets: 7000, cause: 'User-Request' },
    );
    const metrics = (await s.api('GET', '/metrics')).body as string;
    assert.match(metrics, /countersign_radius_accounting_total\{client="vpn-gw",status="stop"\} 1/);
  });

  it('a wrong secret (bad Request Authenticator) → no answer, nothing recorded, counted', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const before = await dropped(s, 'bad_accounting_authenticator');
    const r = await radclient(acct, 'not-the-secret', { 'Acct-Status-Type': 'Start', 'User-Name': 'mallory', 'Acct-Session-Id': q('forged') }, { type: 'acct', messageAuthenticator: false, timeout: 1 });
    assert.equal(r.code, 'timeout', r.output);
    assert.equal(await dropped(s, 'bad_accounting_authenticator'), before + 1);
    assert.equal((await sessions(s, '?user=mallory')).length, 0);
    assert.equal((await events(s, 'user=mallory')).length, 0);
  });

  it('an unknown client → no answer, on either port', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const before = await dropped(s, 'unknown_client');
    for (const port of [acct, auth]) {
      // radclient sends from 127.0.0.2, which no client covers.
      const r = await radclient(
        port,
        SECRET,
        { 'Acct-Status-Type': 'Start', 'User-Name': 'stranger', 'Acct-Session-Id': q('x'), 'Packet-Src-IP-Address': '127.0.0.2' },
        { type: 'acct', messageAuthenticator: false, timeout: 1 },
      );
      assert.equal(r.code, 'timeout', r.output);
    }
    assert.equal(await dropped(s, 'unknown_client'), before + 2);
    assert.equal((await sessions(s, '?user=stranger')).length, 0);
  });

  it('a retransmit (same source port, identifier and authenticator) is answered again but recorded once', async () => {
    const nas = await nasSocket();
    try {
      const pkt = accountingRequest([attr(40, 1), attr(1, 'carol'), attr(44, 'dup-1'), attr(32, 'vpn-gw-1')], { messageAuthenticator: 'good' });
      const first = checkResponse(await nas.send(pkt, acct), pkt);
      const again = checkResponse(await nas.send(pkt, acct), pkt);
      assert.ok(first.equals(again), 'the same answer');
      assert.equal((await events(s, 'user=carol')).length, 1, 'one audit event');
      assert.equal((await sessions(s, '?user=carol')).length, 1);
      assert.match((await s.api('GET', '/metrics')).body as string, /countersign_radius_duplicates_total\{state="accounting-done"\} [1-9]/);
    } finally {
      nas.close();
    }
  });

  it('a wrong Message-Authenticator or a request without Acct-Status-Type → dropped', async () => {
    const nas = await nasSocket();
    try {
      const badMa = await dropped(s, 'bad_message_authenticator');
      const forged = accountingRequest([attr(40, 1), attr(1, 'dave'), attr(44, 'ma-1')], { messageAuthenticator: 'bad' });
      assert.equal(await nas.send(forged, acct, 500), null);
      assert.equal(await dropped(s, 'bad_message_authenticator'), badMa + 1);

      const badAttrs = await dropped(s, 'bad_attributes');
      assert.equal(await nas.send(accountingRequest([attr(1, 'dave'), attr(44, 'ma-2')]), acct, 500), null, 'no Acct-Status-Type');
      assert.equal(await nas.send(accountingRequest([attr(40, 1), attr(1, 'dave')]), acct, 500), null, 'Start without Acct-Session-Id');
      assert.equal(await dropped(s, 'bad_attributes'), badAttrs + 2);
      assert.equal((await events(s, 'user=dave')).length, 0);
    } finally {
      nas.close();
    }
  });

  it('Accounting-On from a NAS closes its open sessions, not those of another NAS', async () => {
    const nas = await nasSocket();
    try {
      const start = (user: string, id: string, nasId: string) => accountingRequest([attr(40, 1), attr(1, user), attr(44, id), attr(32, nasId)]);
      for (const [user, id, nasId] of [
        ['erin', 'on-1', 'gw-a'],
        ['erin', 'on-2', 'gw-a'],
        ['frank', 'on-3', 'gw-b'],
      ] as const) {
        const pkt = start(user, id, nasId);
        checkResponse(await nas.send(pkt, acct), pkt);
      }
      assert.equal((await sessions(s, '?user=erin')).length, 2);
      const on = accountingRequest([attr(40, 7), attr(32, 'gw-a')]);
      checkResponse(await nas.send(on, auth), on);
      assert.equal((await sessions(s, '?user=erin')).length, 0, "gw-a's sessions closed");
      assert.equal((await sessions(s, '?user=frank')).length, 1, "gw-b's session stays open");
      const [event] = (await s.api('GET', '/api/v1/audit?front=radius&outcome=accounting-on')).body.events;
      assert.equal(event.detail.closedSessions, 2);
    } finally {
      nas.close();
    }
  });

  it('the session list needs the admin token', async () => {
    assert.equal((await s.api('GET', '/api/v1/radius-sessions', undefined, '')).status, 401);
  });
});

describe('RADIUS accounting settings', () => {
  it('a port in use stops the start with a StartError naming the setting', async () => {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    try {
      await assert.rejects(
        startTestServer({ COUNTERSIGN_RADIUS_ACCOUNTING_PORT: String(udp.address().port) }),
        (err: Error) => {
          assert.equal(err.name, 'StartError');
          assert.match(err.message, /cannot listen for RADIUS accounting on 127\.0\.0\.1:\d+: the port is in use \(set radius\.accountingPort, COUNTERSIGN_RADIUS_ACCOUNTING_PORT/);
          return true;
        },
      );
    } finally {
      udp.close();
    }
  });

  it('accountingEnabled false: no accounting port, Accounting-Requests on the auth port dropped', async () => {
    const s = await startTestServer({ COUNTERSIGN_RADIUS_ACCOUNTING_ENABLED: 'false' }, {}, (config) => {
      config.radius.clients = [nasConfig(SECRET, { name: 'vpn-gw', address: '127.0.0.1/32' })];
    });
    const nas = await nasSocket();
    try {
      assert.equal(s.radiusAccountingPort, undefined);
      const pkt = accountingRequest([attr(40, 1), attr(1, 'gina'), attr(44, 'off-1')]);
      assert.equal(await nas.send(pkt, s.radiusPort!, 500), null);
      assert.equal(await dropped(s, 'unsupported_code'), 1);
    } finally {
      nas.close();
      await s.close();
    }
  });
});

describe('SessionStore (the open sessions in kv)', async () => {
  const kinds = await storeKinds();
  after(() => Promise.all(kinds.map((k) => k.cleanup())));
  const session = (id: string, over: Partial<RadiusSession> = {}): RadiusSession => ({
    id: SessionStore.id('gw', { address: '127.0.0.1', identifier: 'nas-1' }, id),
    sessionId: id,
    user: 'alice',
    client: 'gw',
    nas: { address: '127.0.0.1', identifier: 'nas-1' },
    startedAt: 1,
    updatedAt: 1,
    ...over,
  });

  for (const kind of kinds) {
    it(`${kind.name}: put, list by user and client, stop (and stays stopped), close a NAS's sessions`, async (t) => {
      if (!requirePeer(t, kind.available, 'redis-server')) return;
      const clock = new ManualClock(Date.now());
      const [store] = kind.shared(1, clock);
      const sessions = new SessionStore(store!.kv, clock);
      await sessions.put(session('a', { startedAt: 10 }));
      await sessions.put(session('b', { startedAt: 20, user: 'bob' }));
      await sessions.put(session('c', { startedAt: 30, nas: { address: '127.0.0.1', identifier: 'nas-2' }, id: SessionStore.id('gw', { address: '127.0.0.1', identifier: 'nas-2' }, 'c') }));
      await sessions.put(session('a', { startedAt: 10, sessionTime: 60 })); // an interim: the same record
      assert.deepEqual((await sessions.list()).map((x) => x.sessionId), ['c', 'b', 'a'], 'newest first, once each');
      assert.deepEqual((await sessions.list({ user: 'bob' })).map((x) => x.sessionId), ['b']);
      assert.equal((await sessions.list({ client: 'other' })).length, 0);
      assert.equal((await sessions.list({ limit: 1 })).length, 1);
      assert.equal((await sessions.get(session('a').id))?.sessionTime, 60);

      await sessions.stop(session('b').id);
      assert.equal(await sessions.stopped(session('b').id), true);
      assert.equal(await sessions.stopped(session('a').id), false);
      assert.deepEqual((await sessions.list()).map((x) => x.sessionId), ['c', 'a']);

      assert.equal(await sessions.closeNas('gw', { address: '127.0.0.1', identifier: 'nas-1' }), 1);
      assert.deepEqual((await sessions.list()).map((x) => x.sessionId), ['c'], "only nas-1's sessions closed");
      await store!.close();
    });
  }

  it('memory: listed across midnight through the day index; gone a day after the last update', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 23, 0));
    const [store] = kinds[0]!.shared(1, clock);
    const sessions = new SessionStore(store!.kv, clock);
    await sessions.put(session('late'));
    clock.advance(2 * 3600_000); // 01:00 the next day
    assert.equal((await sessions.list()).length, 1, "yesterday's index is read too");
    clock.advance(22 * 3600_000 + 1000); // a day and a second after the update
    assert.equal((await sessions.list()).length, 0);
  });
});
