/**
 * The device API the web app (/app/) adds: the event stream, the login history, and a
 * device renaming or forgetting itself. Plain HTTP on a development server, signed the way
 * every authenticator signs (src/cli/authenticator.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/cli/authenticator.js';
import { eventStream } from '../../src/fronts/device/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WebPushReceiver } from '../helpers/webpush-receiver.js';

interface SseEvent {
  event?: string;
  data?: string;
  comment?: string;
}

/** An EventSource in a few lines: the parsed events as they come, and how the stream ended. */
async function openEvents(url: string) {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal });
  const events: SseEvent[] = [];
  let ended = false;
  let waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters) w();
    waiters = [];
  };
  const reading = (async () => {
    if (!res.body || !res.headers.get('content-type')?.startsWith('text/event-stream')) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: SseEvent = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) e.comment = line.slice(1).trim();
            else if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('data: ')) e.data = (e.data === undefined ? '' : `${e.data}\n`) + line.slice(6);
          }
          events.push(e);
          wake();
        }
      }
    } catch {
      // aborted
    }
    ended = true;
    wake();
  })();
  return {
    res,
    events,
    get ended() {
      return ended;
    },
    /** The pending lists received so far. */
    pendings: () => events.filter((e) => e.event === 'pending').map((e) => JSON.parse(e.data!).pending as { challengeId: string; displayCode: string }[]),
    /** Waits (at most ms) for a condition on what arrived. */
    async until<T>(probe: () => T | undefined | false, ms = 1000): Promise<T> {
      const end = Date.now() + ms;
      for (;;) {
        const v = probe();
        if (v) return v;
        if (ended || Date.now() > end) throw new Error(`not within ${ms} ms; events: ${JSON.stringify(events)}${ended ? ' (stream ended)' : ''}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 25);
        });
      }
    },
    async close() {
      abort.abort();
      await reading;
    },
  };
}

describe('device API for the web app', () => {
  let s: TestServer;
  let receiver: WebPushReceiver;
  let users = 0;
  const saved = { ...eventStream };

  before(async () => {
    receiver = await WebPushReceiver.start();
    // Many logins per user in a few tests: no push rate limit here (test/fronts/push-throttle.test.ts has it).
    // The local push service is on loopback: allowPrivateAddresses.
    s = await startTestServer({ COUNTERSIGN_PUSH_WEBPUSH_ALLOW_PRIVATE_ADDRESSES: 'true' }, {}, (config) => void (config.push.rateLimit.count = 1000));
  });
  after(async () => {
    Object.assign(eventStream, saved);
    await s?.close();
    await receiver?.close();
  });

  const userWithApp = async (withPush = false) => {
    const name = `app${++users}`;
    await s.api('POST', '/api/v1/users', { name });
    await s.api('POST', '/api/v1/users/factors', { users: [name], factor: 'push', enabled: true });
    const link = (await s.api('POST', `/api/v1/users/${name}/enrolments`)).body;
    const pushToken = withPush ? JSON.stringify(receiver.subscribe()) : undefined;
    const device = await Authenticator.enrol(link.uri, { platform: 'webpush', pushToken, name: 'Laptop browser' });
    return { name, device };
  };
  const login = async (name: string, client = 'vpn-gw') => {
    const r = await s.api('POST', '/api/v1/challenges', { user: name, origin: { client, ip: '198.51.100.4' } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as { id: string; displayCode: string; deadline: number };
  };
  const eventsUrl = async (device: Authenticator, type: 'poll' | 'answer' = 'poll') =>
    `${s.url}/device/v1/events?request=${encodeURIComponent(await device.sign(type))}`;
  const signed = async (device: Authenticator, path: string, type: 'poll' | 'update', claims: Record<string, unknown> = {}) =>
    s.api('POST', `/device/v1/${path}`, { request: await device.sign(type, claims) }, '');

  it('streams the pending logins: a new one within a second, gone within a second once decided', async () => {
    const { name, device } = await userWithApp();
    const stream = await openEvents(await eventsUrl(device));
    try {
      assert.equal(stream.res.status, 200);
      assert.match(stream.res.headers.get('content-type')!, /^text\/event-stream/);
      await stream.until(() => stream.pendings().length === 1);
      assert.deepEqual(stream.pendings()[0], [], 'the current list at once, even when empty');

      const c = await login(name);
      const t0 = Date.now();
      const shown = await stream.until(() => stream.pendings().find((p) => p[0]?.challengeId === c.id));
      assert.ok(Date.now() - t0 < 1000);
      assert.equal(shown[0]!.displayCode, c.displayCode);
      // The same view POST /pending gives.
      assert.deepEqual((await signed(device, 'pending', 'poll')).body.pending, shown);

      // A newer login replaces it; an approval empties the list.
      const c2 = await login(name);
      await stream.until(() => stream.pendings().at(-1)?.[0]?.challengeId === c2.id);
      const t1 = Date.now();
      assert.equal((await device.answer(c2.id, 'approve')).state, 'approved');
      await stream.until(() => stream.pendings().at(-1)?.length === 0);
      assert.ok(Date.now() - t1 < 1000);
      // Only changes are sent.
      const lists = stream.pendings().map((p) => JSON.stringify(p));
      assert.ok(lists.every((l, i) => i === 0 || l !== lists[i - 1]), JSON.stringify(lists));
    } finally {
      await stream.close();
    }
  });

  it('an administrator’s decision and another user’s login: the list follows its own user only', async () => {
    const a = await userWithApp();
    const b = await userWithApp();
    const stream = await openEvents(await eventsUrl(a.device));
    try {
      await stream.until(() => stream.pendings().length === 1);
      await login(b.name);
      const c = await login(a.name);
      await stream.until(() => stream.pendings().at(-1)?.[0]?.challengeId === c.id);
      assert.ok(stream.pendings().every((p) => p.every((x) => x.challengeId === c.id)), 'never b’s login');
      await s.api('POST', `/api/v1/challenges/${c.id}/reject`, {});
      await stream.until(() => stream.pendings().at(-1)?.length === 0);
    } finally {
      await stream.close();
    }
  });

  it('authenticates the stream once: a replayed or wrongly typed request is refused before streaming', async () => {
    const { device } = await userWithApp();
    const url = await eventsUrl(device);
    const first = await openEvents(url);
    await first.close();
    const replay = await fetch(url);
    assert.equal(replay.status, 409);
    assert.equal(((await replay.json()) as { error: string }).error, 'replayed');
    const wrongType = await fetch(await eventsUrl(device, 'answer'));
    assert.equal(wrongType.status, 401);
    assert.equal((await fetch(`${s.url}/device/v1/events`)).status, 400);
  });

  it('sends keep-alive comments and ends after its lifetime; forgetting the device ends it', async () => {
    Object.assign(eventStream, { keepAliveMs: 50, lifetimeMs: 400 });
    try {
      const { device } = await userWithApp();
      const stream = await openEvents(await eventsUrl(device));
      await stream.until(() => stream.events.some((e) => e.comment === 'keep-alive'));
      await stream.until(() => stream.ended, 2000).catch(() => assert.fail('the stream did not end'));

      Object.assign(eventStream, { lifetimeMs: 60_000 });
      const other = await userWithApp();
      const live = await openEvents(await eventsUrl(other.device));
      await live.until(() => live.pendings().length === 1);
      assert.equal((await signed(other.device, 'token', 'update', { forget: true })).status, 200);
      await live.until(() => live.ended, 2000).catch(() => assert.fail('the stream outlived its device'));
    } finally {
      Object.assign(eventStream, saved);
    }
  });

  it('a server that stops ends its streams at once', async () => {
    const other = await startTestServer();
    try {
      await other.api('POST', '/api/v1/users', { name: 'stopper' });
      const link = (await other.api('POST', '/api/v1/users/stopper/enrolments')).body;
      const device = await Authenticator.enrol(link.uri, { platform: 'webpush' });
      const stream = await openEvents(`${other.url}/device/v1/events?request=${encodeURIComponent(await device.sign('poll'))}`);
      await stream.until(() => stream.pendings().length === 1);
      const t0 = Date.now();
      await other.close();
      assert.ok(Date.now() - t0 < 1500, `close took ${Date.now() - t0} ms`);
      await stream.until(() => stream.ended, 500);
    } finally {
      await other.close();
    }
  });

  it('lists the user’s last logins, newest first, without challenge ids', async () => {
    const { name, device } = await userWithApp();
    const other = await userWithApp();
    const approved = await login(name, 'wiki');
    await device.answer(approved.id, 'approve');
    const rejected = await login(name, 'vpn-gw');
    await device.answer(rejected.id, 'reject');
    const theirs = await login(other.name);
    await other.device.answer(theirs.id, 'approve');
    const pending = await login(name, 'mail');

    let logins: any[] = [];
    for (let i = 0; i < 50 && logins.length < 2; i++) {
      logins = (await signed(device, 'history', 'poll')).body.logins;
      if (logins.length < 2) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(logins.length, 2, JSON.stringify(logins));
    assert.deepEqual(
      logins.map((l) => ({ client: l.client, ip: l.ip, outcome: l.outcome, method: l.method, displayCode: l.displayCode })),
      [
        { client: 'vpn-gw', ip: '198.51.100.4', outcome: 'rejected', method: 'push', displayCode: rejected.displayCode },
        { client: 'wiki', ip: '198.51.100.4', outcome: 'approved', method: 'push', displayCode: approved.displayCode },
      ],
    );
    assert.ok(logins[0].time >= logins[1].time && logins[0].time <= Date.now());
    const text = JSON.stringify(logins);
    for (const id of [approved.id, rejected.id, pending.id]) assert.ok(!text.includes(id), 'no challenge ids');

    // At most 20.
    for (let i = 0; i < 22; i++) await s.api('POST', `/api/v1/challenges/${(await login(name)).id}/approve`, {});
    for (let i = 0; i < 50 && logins.length < 20; i++) logins = (await signed(device, 'history', 'poll')).body.logins;
    assert.equal(logins.length, 20);
    assert.equal((await s.api('POST', '/device/v1/history', { request: await device.sign('answer') }, '')).status, 401);
  });

  it('renames itself, keeping its push subscription; clears it with pushToken null', async () => {
    const { name, device } = await userWithApp(true);
    const r = await signed(device, 'token', 'update', { name: '  Work laptop  ' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    let [d] = (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices;
    assert.equal(d.name, 'Work laptop');
    assert.equal(d.push, true, 'a rename keeps the subscription');
    for (const bad of [{ name: '' }, { name: 'x'.repeat(101) }, { name: 42 }, { forget: 'yes' }, { pushToken: 7 }]) {
      assert.equal((await signed(device, 'token', 'update', bad)).status, 400, JSON.stringify(bad));
    }
    assert.equal((await signed(device, 'token', 'update', { pushToken: null })).status, 200);
    [d] = (await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices;
    assert.equal(d.push, false);
    const audit = (await s.api('GET', `/api/v1/audit?user=${name}`)).body.events;
    assert.ok(audit.some((e: any) => e.detail?.action === 'device.rename' && e.detail.name === 'Work laptop'));
  });

  it('forgets itself: removed, audited, and its signatures are nobody’s', async () => {
    const { name, device } = await userWithApp(true);
    const r = await signed(device, 'token', 'update', { forget: true });
    assert.equal(r.status, 200);
    assert.equal(r.body.forgotten, true);
    assert.deepEqual((await s.api('GET', `/api/v1/users/${name}/devices`)).body.devices, []);
    const after = await signed(device, 'pending', 'poll');
    assert.equal(after.status, 401);
    let audit: any[] = [];
    for (let i = 0; i < 50 && !audit.some((e) => e.detail?.action === 'device.forget'); i++) {
      audit = (await s.api('GET', `/api/v1/audit?user=${name}`)).body.events;
    }
    const e = audit.find((x) => x.detail?.action === 'device.forget');
    assert.equal(e.detail.device, device.file.deviceId);
    assert.equal(e.type, 'device');
  });

  it('the admin API gives the web app’s enrolment link', async () => {
    await s.api('POST', '/api/v1/users', { name: 'linked' });
    const link = (await s.api('POST', '/api/v1/users/linked/enrolments')).body;
    assert.equal(link.appUrl, `${s.url}/app/#enrol=${link.uri.slice('countersign://enrol?'.length)}`);
    const q = new URLSearchParams(link.appUrl.split('#enrol=')[1]);
    assert.deepEqual([q.get('server'), q.get('user')], [s.url, 'linked']);
  });
});
