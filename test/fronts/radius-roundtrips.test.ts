/**
 * How many times an OTP login over RADIUS waits for Redis: at most 3 (the dedupe lease with
 * the user's record; the code spent in one script; the login's record, audit events and
 * reply cache in one pipelined write).
 *
 * Counted two ways against a private redis-server that nothing else talks to:
 * - round trips, on the server's own connection: the commands it sends are grouped by the
 *   replies that arrived before them. Commands sent with no reply in between left together
 *   (one pipeline: nothing waited); a new group starts only after Redis answered something.
 *   Logins run one at a time, each left to finish its background writes, so every group
 *   belongs to one login.
 * - commands, from Redis's INFO commandstats before and after the batch, divided by the number
 *   of logins (the client-side count must agree, scripts' inner calls aside).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import radius from 'radius';
import { base32Decode, totp } from '../../src/core/otp.js';
import type { RedisStore } from '../../src/store/redis/index.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { freePort, spawnGroup, type ProcessGroup } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const SECRET = 'roundtrip-secret';
const LOGINS = 20;
const MAX_ROUND_TRIPS = 3;

/** Per command name, the calls Redis has counted so far (INFO commandstats). */
async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const m = new Map<string, number>();
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) m.set(name!, Number(calls));
  return m;
}

const diff = (a: Map<string, number>, b: Map<string, number>) => {
  const d = new Map<string, number>();
  for (const [k, v] of b) if (v - (a.get(k) ?? 0) > 0) d.set(k, v - (a.get(k) ?? 0));
  return d;
};

/**
 * Watches one ioredis connection: the commands it sends, grouped by the replies between them.
 * The RADIUS clients' refresh (every few seconds, on the settings hash) is no login's work:
 * it is set aside, and taken off Redis's count too.
 */
function watch(client: Redis) {
  let replies = 0;
  let lastGroup = -1;
  const sent: string[] = [];
  const background: string[] = [];
  let groups = 0;
  const stream = (client as unknown as { stream: NodeJS.EventEmitter }).stream;
  stream.on('data', () => replies++);
  const original = client.sendCommand.bind(client);
  client.sendCommand = ((command: { name: string; args: unknown[] }, s?: unknown) => {
    if (String(command.args[0] ?? '').includes(':settings:')) {
      background.push(command.name);
      return original(command as never, s as never);
    }
    if (lastGroup !== replies) {
      groups++;
      lastGroup = replies;
    }
    sent.push(command.name);
    return original(command as never, s as never);
  }) as typeof client.sendCommand;
  return {
    take() {
      const out = { groups, sent: [...sent], background: [...background] };
      groups = 0;
      sent.length = 0;
      background.length = 0;
      lastGroup = -1;
      return out;
    },
  };
}

describe('RADIUS OTP login: Redis round trips', { timeout: 60_000 }, () => {
  let redisProc: ProcessGroup | undefined;
  let redis: Redis | undefined;
  let cs: TestServer | undefined;
  let nas: dgram.Socket | undefined;
  let available = true;

  before(async () => {
    available = hasCommand('redis-server');
    if (!available) return;
    const port = await freePort();
    redisProc = spawnGroup(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], 120);
    redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    redis.on('error', () => {});
    for (let i = 0; ; i++) {
      try {
        await redis.connect();
        await redis.ping();
        break;
      } catch {
        if (i > 50) throw new Error(`redis-server did not start:\n${redisProc.output()}`);
        redis.disconnect();
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    cs = await startTestServer({ COUNTERSIGN_REDIS_URL: `redis://127.0.0.1:${port}`, COUNTERSIGN_REDIS_PREFIX: 'rt' }, {}, (c) => {
      // No sweeps during the count: their commands are not a login's.
      c.challenge.sweepIntervalMs = 3_600_000;
      c.radius.clients = [
        { name: 'otp-only', address: '127.0.0.1/32', secret: SECRET, mode: 'append', secondFactorOnly: true, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
        { name: 'append', address: '127.0.0.2/32', secret: SECRET, mode: 'append', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] },
      ];
    });
  });

  after(async () => {
    nas?.close();
    await cs?.close();
    redis?.disconnect();
    await redisProc?.stop();
  });

  /** `count` users with a password and TOTP; the code each will type. */
  async function users(tag: string, count: number) {
    const out: { name: string; password: string; code: string }[] = [];
    for (let i = 0; i < count; i++) {
      const name = `${tag}-${i}`;
      const password = `pw-${name}`;
      await cs!.ctx.users.create({ name, password });
      const e = await cs!.ctx.users.enrolOtp(name);
      out.push({ name, password, code: totp(base32Decode(e.secret), Date.now(), e.params) });
    }
    return out;
  }

  /** One Access-Request from `from`, its answer, then a pause for the login's last writes to land. */
  async function login(from: string, attributes: [string, string][], id: number): Promise<string> {
    if (!nas || nas.address().address !== from) {
      nas?.close();
      nas = dgram.createSocket('udp4');
      await new Promise<void>((r) => nas!.bind(0, from, r));
    }
    const packet = radius.encode({ code: 'Access-Request', secret: SECRET, identifier: id % 256, attributes, add_message_authenticator: true });
    const reply = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer')), 5000);
      nas!.once('message', (msg) => {
        clearTimeout(timer);
        resolve(radius.decode({ packet: msg, secret: SECRET }).code);
      });
    });
    nas.send(packet, cs!.radiusPort!, '127.0.0.1');
    const code = await reply;
    await new Promise((r) => setTimeout(r, 40));
    return code;
  }

  async function measure(t: import('node:test').TestContext, from: string, people: Awaited<ReturnType<typeof users>>, attrs: (u: (typeof people)[number]) => [string, string][]) {
    const store = cs!.ctx.store as RedisStore;
    const w = watch(store.raw as Redis);
    const perLogin: number[] = [];
    let clientCommands = 0;
    const background: string[] = [];
    const before = await commandStats(redis!);
    for (const [i, u] of people.entries()) {
      w.take();
      assert.equal(await login(from, attrs(u), i), 'Access-Accept', `login of ${u.name}`);
      const { groups, sent, background: aside } = w.take();
      background.push(...aside);
      perLogin.push(groups);
      clientCommands += sent.length;
      if (i === 0) t.diagnostic(`first login: ${groups} round trips: ${sent.join(' ')}`);
    }
    const afterStats = await commandStats(redis!);
    const server = diff(before, afterStats);
    server.set('info', (server.get('info') ?? 0) - 1); // our own INFO
    for (const name of background) server.set(name, (server.get(name) ?? 0) - 1);
    const perCommand = [...server].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${(n / people.length).toFixed(2)}`);
    t.diagnostic(`round trips per login: max ${Math.max(...perLogin)}, mean ${(perLogin.reduce((a, b) => a + b, 0) / perLogin.length).toFixed(2)}`);
    t.diagnostic(`commands per login sent by the server: ${(clientCommands / people.length).toFixed(2)}; Redis commandstats per login: ${perCommand.join(', ')}`);
    return { perLogin, clientCommands, server };
  }

  it('second-factor-only (the code alone): at most 3 round trips', async (t) => {
    if (!requirePeer(t, available, 'redis-server')) return;
    const people = await users('sfo', LOGINS);
    const { perLogin, clientCommands, server } = await measure(t, '127.0.0.1', people, (u) => [
      ['User-Name', u.name],
      ['User-Password', u.code],
    ]);
    assert.ok(Math.max(...perLogin) <= MAX_ROUND_TRIPS, `round trips per login: ${perLogin.join(' ')}`);
    // The server-side count agrees with what the client sent: nothing went unseen. Scripts'
    // own calls (HGET, HSET… inside EVALSHA) are counted by Redis too, so Redis counts more.
    const redisTotal = [...server.values()].reduce((a, b) => a + b, 0);
    assert.ok(redisTotal >= clientCommands, `Redis counted ${redisTotal}, the client sent ${clientCommands}`);
    // EVAL the first time (ioredis loads the script), EVALSHA after.
    assert.equal((server.get('evalsha') ?? 0) + (server.get('eval') ?? 0), LOGINS, 'one script per login: the code spent');
    assert.equal(server.get('hgetall') ?? 0, LOGINS, 'the user read once per login');
  });

  it('append (password,code): at most 3 round trips', async (t) => {
    if (!requirePeer(t, available, 'redis-server')) return;
    const people = await users('app', LOGINS);
    const { perLogin } = await measure(t, '127.0.0.2', people, (u) => [
      ['User-Name', u.name],
      ['User-Password', `${u.password},${u.code}`],
    ]);
    assert.ok(Math.max(...perLogin) <= MAX_ROUND_TRIPS, `round trips per login: ${perLogin.join(' ')}`);
  });

  it('a retransmit after the answer is answered from the reply cache, with no further login', async (t) => {
    if (!requirePeer(t, available, 'redis-server')) return;
    const [u] = await users('re', 1);
    const attrs: [string, string][] = [
      ['User-Name', u!.name],
      ['User-Password', u!.code],
    ];
    await login('127.0.0.1', [['User-Name', 'nobody'], ['User-Password', '000000']], 199); // the NAS socket on 127.0.0.1
    const before = await commandStats(redis!);
    // One packet twice (same identifier and authenticator): a NAS that missed the answer.
    const packet = radius.encode({ code: 'Access-Request', secret: SECRET, identifier: 201, attributes: attrs, add_message_authenticator: true });
    const answers: string[] = [];
    nas!.on('message', (msg) => answers.push(radius.decode({ packet: msg, secret: SECRET }).code));
    nas!.send(packet, cs!.radiusPort!, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 150));
    nas!.send(packet, cs!.radiusPort!, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 150));
    nas!.removeAllListeners('message');
    assert.deepEqual(answers, ['Access-Accept', 'Access-Accept'], 'the login, then its cached answer (the code, used once, is not checked again)');
    const d = diff(before, await commandStats(redis!));
    assert.equal((d.get('evalsha') ?? 0) + (d.get('eval') ?? 0), 1, 'the code was checked once, for the first packet only');
  });
});
