import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Challenge } from '../../src/core/challenge.js';
import { ManualClock } from '../../src/core/clock.js';
import { ChallengeEngine, EngineStoppedError } from '../../src/core/engine.js';
import type { Store } from '../../src/core/store.js';
import { requirePeer } from '../helpers/peers.js';
import { storeKinds } from '../helpers/stores.js';

const DEADLINE = 150_000;
const origin = { front: 'radius', client: 'vpn-1', ip: '192.0.2.10' };

const settle = () => new Promise((r) => setTimeout(r, 30));
const until = async (cond: () => boolean, ms = 2000) => {
  for (const start = Date.now(); !cond(); ) {
    if (Date.now() - start > ms) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

for (const kind of await storeKinds()) {
  describe(`ChallengeEngine on ${kind.name}`, () => {
    const engines: ChallengeEngine[] = [];
    const stores = new Set<Store>();
    after(async () => {
      for (const e of engines) await e.stop();
      for (const s of stores) await s.close();
      await kind.cleanup();
    });

    /** `n` instances sharing one store, one clock. */
    const cluster = async (t: { skip(msg?: string): void }, n = 2) => {
      if (!requirePeer(t as never, kind.available, `${kind.name} store`)) return null;
      const clock = new ManualClock(Date.now());
      const resolved: Challenge[] = [];
      const list = kind.shared(n, clock).map((store) => {
        stores.add(store);
        const e = new ChallengeEngine({ store, clock, deadlineMs: DEADLINE, keepAfterMs: 60_000, displayCodeDigits: 4, sweepIntervalMs: 1000 });
        e.on('resolved', (c) => resolved.push(c));
        engines.push(e);
        return e;
      });
      await Promise.all(list.map((e) => e.start()));
      return { clock, engines: list, resolved };
    };

    it('opens a challenge with an unguessable id, a display code and a deadline', async (t) => {
      const c = await cluster(t, 1);
      if (!c) return;
      const ch = await c.engines[0]!.open('alice', ['otp', 'push'], origin);
      assert.match(ch.id, /^[A-Za-z0-9_-]{24}$/, '144 random bits');
      assert.match(ch.displayCode, /^\d{4}$/);
      assert.equal(ch.state, 'pending');
      assert.equal(ch.deadline - ch.createdAt, DEADLINE);
      assert.deepEqual(await c.engines[0]!.get(ch.id), ch);
      const ids = new Set(await Promise.all(Array.from({ length: 50 }, async () => (await c.engines[0]!.open('a', ['otp'], origin)).id)));
      assert.equal(ids.size, 50);
    });

    it('wakes a waiter on one instance when another approves', async (t) => {
      const c = await cluster(t);
      if (!c) return;
      const [a, b] = c.engines as [ChallengeEngine, ChallengeEngine];
      const ch = await a.open('alice', ['push'], origin);
      const waiting = a.wait(ch.id);
      await settle();
      const started = Date.now();
      const r = await b.approve(ch.id, 'push');
      assert.equal(r.changed, true);
      const done = await waiting;
      assert.equal(done.state, 'approved');
      assert.equal(done.method, 'push');
      assert.equal(done.displayCode, ch.displayCode);
      assert.ok(Date.now() - started < 500, 'woken at once, not by polling');
      assert.equal(c.resolved.filter((x) => x.id === ch.id).length, 1, 'one resolved event');
    });

    it('resolves exactly once when instances race', async (t) => {
      const c = await cluster(t, 3);
      if (!c) return;
      const ch = await c.engines[0]!.open('alice', ['push', 'otp'], origin);
      const waits = c.engines.map((e) => e.wait(ch.id));
      await settle();
      const results = await Promise.all(
        c.engines.flatMap((e, i) => [e.approve(ch.id, `push-${i}`), e.reject(ch.id, `push-${i}`, 'not-me'), e.cancel(ch.id, 'new login')]),
      );
      assert.equal(results.filter((r) => r.changed).length, 1);
      const finals = await Promise.all(waits);
      assert.equal(new Set(finals.map((f) => `${f.state}/${f.method}`)).size, 1, 'every instance sees the same outcome');
      await settle();
      assert.equal(c.resolved.filter((x) => x.id === ch.id).length, 1);
    });

    it('expires at the deadline when nobody answers, and never approves after it', async (t) => {
      const c = await cluster(t);
      if (!c) return;
      const [a, b] = c.engines as [ChallengeEngine, ChallengeEngine];
      const ch = await a.open('alice', ['push'], origin);
      const waiting = a.wait(ch.id);
      await settle();
      c.clock.advance(DEADLINE - 1);
      await settle();
      assert.equal((await b.get(ch.id))!.state, 'pending');
      c.clock.advance(1);
      const done = await waiting;
      assert.equal(done.state, 'expired');
      assert.equal(done.method, 'deadline');
      const late = await b.approve(ch.id, 'push');
      assert.equal(late.changed, false);
      assert.equal(late.challenge!.state, 'expired');
    });

    it('expires at the deadline even when the opener died', async (t) => {
      const c = await cluster(t);
      if (!c) return;
      const [a, b] = c.engines as [ChallengeEngine, ChallengeEngine];
      const ch = await a.open('alice', ['push'], origin);
      const held = a.wait(ch.id).catch((e) => e);
      await a.stop(); // the instance holding the request goes away
      assert.ok((await held) instanceof EngineStoppedError, 'its waiter is told, not left hanging');
      const waitingOnB = b.wait(ch.id);
      await settle();
      c.clock.advance(DEADLINE);
      assert.equal((await waitingOnB).state, 'expired');
    });

    it('sweeps challenges nobody waits on, with one resolved event', async (t) => {
      const c = await cluster(t);
      if (!c) return;
      const ch = await c.engines[0]!.open('bob', ['otp'], origin);
      c.clock.advance(DEADLINE + 1000); // both sweepers run
      await until(() => c.resolved.some((x) => x.id === ch.id));
      await settle();
      assert.equal(c.resolved.filter((x) => x.id === ch.id).length, 1);
      assert.equal((await c.engines[1]!.get(ch.id))!.state, 'expired');
    });

    it('answers a wait on a decided challenge at once, and refuses unknown ids', async (t) => {
      const c = await cluster(t, 1);
      if (!c) return;
      const e = c.engines[0]!;
      const ch = await e.open('carol', ['otp'], origin);
      await e.reject(ch.id, 'push', 'not-me');
      const done = await e.wait(ch.id);
      assert.equal(done.state, 'rejected');
      assert.equal(done.reason, 'not-me');
      await assert.rejects(e.wait('AAAAAAAAAAAAAAAAAAAAAAAA'), { code: 'challenge_not_found' });
    });

    it('lets a waiter give up without resolving the challenge', async (t) => {
      const c = await cluster(t, 1);
      if (!c) return;
      const e = c.engines[0]!;
      const ch = await e.open('dave', ['push'], origin);
      const ac = new AbortController();
      const waiting = e.wait(ch.id, ac.signal);
      ac.abort(new Error('client gone'));
      await assert.rejects(waiting, /client gone/);
      assert.equal(e.waiting, 0);
      assert.equal((await e.get(ch.id))!.state, 'pending');
    });
  });
}
