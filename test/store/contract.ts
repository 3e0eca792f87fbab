import assert from 'node:assert/strict';
import { describe, it, after } from 'node:test';
import type { Challenge, Resolution } from '../../src/core/challenge.js';
import type { AuditEvent, PasskeyRecord, Store, UserRecord } from '../../src/core/store.js';

const T0 = Date.UTC(2026, 0, 1);

export const challengeAt = (id: string, over: Partial<Challenge> = {}): Challenge => ({
  id,
  displayCode: '4821',
  user: 'alice',
  factors: ['otp', 'push'],
  origin: { front: 'radius', client: 'vpn-1', ip: '192.0.2.7', userAgent: 'test' },
  state: 'pending',
  createdAt: T0,
  deadline: T0 + 150_000,
  ...over,
});

const user = (name: string, over: Partial<UserRecord> = {}): UserRecord => ({
  name,
  createdAt: T0,
  otpEnabled: false,
  pushEnabled: false,
  ...over,
});

let n = 0;
const uid = (p: string) => `${p}-${process.pid}-${++n}-${Math.random().toString(36).slice(2, 10)}`;

/** The two audit streams' lengths a store is made with: security (`audit.limit`) and activity. */
export interface AuditLimits {
  auditLimit: number;
  auditActivityLimit: number;
}

/**
 * One contract, every Store: memory and Redis must be indistinguishable here. `make` without
 * limits makes the suite's shared store; with them, a fresh one (the audit tests that fill streams).
 */
export function storeContract(name: string, make: (limits?: AuditLimits) => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    const ready = (async () => (store = await make()))();
    after(async () => (await ready).close());

    describe('challenges', () => {
      it('keeps what was created', async () => {
        await ready;
        const c = challengeAt(uid('c'));
        await store.challenges.create(c, 60_000);
        assert.deepEqual(await store.challenges.get(c.id), c);
        assert.equal(await store.challenges.get(uid('missing')), null);
      });

      it('resolves exactly once, even when many race', async () => {
        await ready;
        const c = challengeAt(uid('race'));
        await store.challenges.create(c, 60_000);
        const results = await Promise.all(
          Array.from({ length: 25 }, (_, i) =>
            store.challenges.transition(c.id, i % 2 ? 'approved' : 'rejected', T0 + 1000, { method: `m${i}` }, 60_000),
          ),
        );
        const winners = results.filter((r) => r.changed);
        assert.equal(winners.length, 1);
        const final = winners[0]!.challenge!;
        for (const r of results) assert.equal(r.challenge!.state, final.state);
        const stored = await store.challenges.get(c.id);
        assert.equal(stored!.state, final.state);
        assert.equal(stored!.method, final.method);
        assert.equal(stored!.resolvedAt, T0 + 1000);
      });

      it('records reason and method', async () => {
        await ready;
        const c = challengeAt(uid('reason'));
        await store.challenges.create(c, 60_000);
        const r = await store.challenges.transition(c.id, 'rejected', T0 + 5, { method: 'push', reason: 'not-me' }, 60_000);
        assert.equal(r.changed, true);
        assert.equal(r.challenge!.reason, 'not-me');
        assert.equal(r.challenge!.method, 'push');
      });

      it('never approves at or after the deadline', async () => {
        await ready;
        const c = challengeAt(uid('late'));
        await store.challenges.create(c, 60_000);
        const r = await store.challenges.transition(c.id, 'approved', c.deadline, { method: 'otp' }, 60_000);
        assert.equal(r.changed, true);
        assert.equal(r.challenge!.state, 'expired');
        assert.equal(r.challenge!.method, 'deadline');
      });

      it('does not expire before the deadline', async () => {
        await ready;
        const c = challengeAt(uid('early'));
        await store.challenges.create(c, 60_000);
        const r = await store.challenges.transition(c.id, 'expired', c.deadline - 1, {}, 60_000);
        assert.equal(r.changed, false);
        assert.equal(r.challenge!.state, 'pending');
      });

      it('answers null for an unknown challenge', async () => {
        await ready;
        const r = await store.challenges.transition(uid('none'), 'approved', T0, {}, 60_000);
        assert.deepEqual(r, { changed: false, challenge: null });
      });

      it('publishes each resolution to subscribers', async () => {
        await ready;
        const seen: Resolution[] = [];
        await store.challenges.subscribe((r) => seen.push(r), () => {});
        const c = challengeAt(uid('pub'));
        await store.challenges.create(c, 60_000);
        await store.challenges.transition(c.id, 'approved', T0 + 10, { method: 'push' }, 60_000);
        await store.challenges.transition(c.id, 'rejected', T0 + 11, { method: 'push' }, 60_000);
        for (let i = 0; i < 100 && !seen.some((r) => r.id === c.id); i++) await new Promise((r) => setTimeout(r, 10));
        const mine = seen.filter((r) => r.id === c.id);
        assert.equal(mine.length, 1, 'published once');
        assert.deepEqual(mine[0], { id: c.id, state: 'approved', resolvedAt: T0 + 10, method: 'push' });
      });

      it('lists due challenges until they are resolved or forgotten', async () => {
        await ready;
        const base = T0 - 10_000_000 - Math.floor(Math.random() * 1e6); // older than anything else in the index
        const a = challengeAt(uid('due-a'), { createdAt: base - 5000, deadline: base });
        const b = challengeAt(uid('due-b'), { createdAt: base - 5000, deadline: base + 1 });
        await store.challenges.create(a, 60_000);
        await store.challenges.create(b, 60_000);
        const due = await store.challenges.due(base + 1, 1000);
        assert.ok(due.indexOf(a.id) >= 0 && due.indexOf(a.id) < due.indexOf(b.id), 'oldest first');
        assert.ok(!(await store.challenges.due(base, 1000)).includes(b.id));
        await store.challenges.transition(a.id, 'expired', base + 1, {}, 60_000);
        await store.challenges.forgetDue([b.id]);
        await new Promise((r) => setTimeout(r, 20));
        const after = await store.challenges.due(base + 1, 1000);
        assert.ok(!after.includes(a.id) && !after.includes(b.id));
      });

      it('keeps a login recorded already decided: readable, never due, never published, final', async () => {
        await ready;
        const seen: Resolution[] = [];
        await store.challenges.subscribe((r) => seen.push(r), () => {});
        const base = T0 - 20_000_000 - Math.floor(Math.random() * 1e6);
        const c = challengeAt(uid('decided'), { factors: ['otp'], state: 'approved', createdAt: base, deadline: base + 150_000, resolvedAt: base, method: 'otp' });
        await store.challenges.record(c, 60_000);
        assert.deepEqual(await store.challenges.get(c.id), c);
        assert.ok(!(await store.challenges.due(base + 1_000_000, 1000)).includes(c.id), 'not in the deadline index');
        const again = await store.challenges.transition(c.id, 'rejected', base + 1, { method: 'push' }, 60_000);
        assert.equal(again.changed, false, 'a decided login stays decided');
        assert.equal(again.challenge!.state, 'approved');
        const r = challengeAt(uid('decided-r'), { factors: ['otp'], state: 'rejected', resolvedAt: T0, method: 'otp', reason: 'otp_invalid' });
        await store.challenges.record(r, 60_000);
        assert.equal((await store.challenges.get(r.id))!.reason, 'otp_invalid');
        await new Promise((res) => setTimeout(res, 50));
        assert.ok(!seen.some((x) => x.id === c.id || x.id === r.id), 'nothing published');
      });
    });

    describe('users', () => {
      it('creates once, reads, updates, unsets and deletes', async () => {
        await ready;
        const name = uid('u');
        assert.equal(await store.users.create(user(name, { displayName: 'Alice', otpEnabled: true, otpDigits: 6 })), true);
        assert.equal(await store.users.create(user(name)), false);
        const got = await store.users.get(name);
        assert.deepEqual(got, user(name, { displayName: 'Alice', otpEnabled: true, otpDigits: 6 }));
        assert.equal(await store.users.update(name, { pushEnabled: true, email: 'a@example.org', unset: ['displayName'] }), true);
        const updated = await store.users.get(name);
        assert.equal(updated!.pushEnabled, true);
        assert.equal(updated!.email, 'a@example.org');
        assert.equal(updated!.displayName, undefined);
        assert.equal(await store.users.update(uid('nobody'), { pushEnabled: true }), false);
        assert.equal(await store.users.get(uid('nobody')), null);
        assert.equal(await store.users.delete(name), true);
        assert.equal(await store.users.delete(name), false);
        assert.equal(await store.users.get(name), null);
      });

      it('lists by prefix in byte order, a page at a time', async () => {
        await ready;
        const p = uid('list') + '-';
        const names = ['b', 'a', 'c', 'aa', 'B', 'd', 'é'].map((s) => p + s);
        for (const nm of names) await store.users.create(user(nm));
        const sorted = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.users.list({ prefix: p, after, limit: 3 });
          assert.equal(page.total, names.length);
          seen.push(...page.users.map((u) => u.name));
          if (!page.next) break;
          after = page.next;
        }
        assert.deepEqual(seen, sorted);
        const none = await store.users.list({ prefix: p + 'zz', limit: 10 });
        assert.deepEqual(none, { users: [], next: undefined, total: 0 });
      });

      it('accepts each OTP step once and in order', async () => {
        await ready;
        const name = uid('otp');
        await store.users.create(user(name, { otpLast: -1, otpFailures: 3 }));
        assert.equal(await store.users.advanceOtp(name, 5), true);
        assert.equal((await store.users.get(name))!.otpFailures, 0, 'success clears failures');
        assert.equal(await store.users.advanceOtp(name, 5), false, 'same step again');
        assert.equal(await store.users.advanceOtp(name, 4), false, 'older step');
        const racers = await Promise.all(Array.from({ length: 10 }, () => store.users.advanceOtp(name, 9)));
        assert.equal(racers.filter(Boolean).length, 1);
        assert.equal(await store.users.advanceOtp(uid('ghost'), 1), false);
      });

      it('locks OTP after the allowed failures', async () => {
        await ready;
        const name = uid('lock');
        await store.users.create(user(name));
        for (let i = 1; i < 3; i++) assert.deepEqual(await store.users.recordOtpFailure(name, T0, 3, 60_000, 200_000), { failures: i, lockedUntil: 0 });
        assert.deepEqual(await store.users.recordOtpFailure(name, T0, 3, 60_000, 200_000), { failures: 3, lockedUntil: T0 + 60_000 });
        assert.equal((await store.users.get(name))!.otpLockedUntil, T0 + 60_000);
        assert.equal((await store.users.get(name))!.otpFailures, 0, 'the count starts over at a lock');
      });

      it('spends a typed OTP in one step: accepted once, else a failure counted, refused while locked', async () => {
        await ready;
        const name = uid('spend');
        const limits = { maxFailures: 3, lockMs: 60_000, maxLockMs: 200_000 };
        await store.users.create(user(name, { otpLast: 4, otpFailures: 1 }));
        assert.deepEqual(await store.users.spendOtp(name, 5, T0, limits), { ok: true });
        const u = (await store.users.get(name))!;
        assert.equal(u.otpLast, 5);
        assert.equal(u.otpFailures, 0, 'success clears failures');
        assert.deepEqual(await store.users.spendOtp(name, 5, T0, limits), { ok: false, failures: 1, lockedUntil: 0, replay: true }, 'the same step again is a replay, and counts');
        assert.deepEqual(await store.users.spendOtp(name, null, T0, limits), { ok: false, failures: 2, lockedUntil: 0 }, 'no match counts');
        assert.deepEqual(await store.users.spendOtp(name, null, T0, limits), { ok: false, failures: 3, lockedUntil: T0 + 60_000 }, 'the third locks');
        assert.deepEqual(await store.users.spendOtp(name, 9, T0 + 1, limits), { ok: false, failures: 0, lockedUntil: T0 + 60_000, locked: true }, 'a right code while locked is refused');
        assert.equal((await store.users.get(name))!.otpLast, 5, 'and not used up');
        assert.deepEqual(await store.users.spendOtp(name, 9, T0 + 60_000, limits), { ok: true }, 'accepted once the lock ran out');
        const racers = await Promise.all(Array.from({ length: 10 }, () => store.users.spendOtp(name, 11, T0 + 60_001, limits)));
        assert.equal(racers.filter((r) => r.ok).length, 1, 'one of many racing with the same code');
        assert.deepEqual(await store.users.spendOtp(uid('ghost'), 1, T0, limits), { ok: false, failures: 0, lockedUntil: 0, missing: true });
      });

      it('reads a user after a write through the same store as written, also in one turn of the event loop', async () => {
        await ready;
        const name = uid('rw');
        await store.users.create(user(name, { otpLast: 1 }));
        // Issued together, without awaiting in between: the read after the write sees it.
        const first = store.users.get(name);
        const write = store.users.spendOtp(name, 2, T0, { maxFailures: 3, lockMs: 1000, maxLockMs: 1000 });
        const second = store.users.get(name);
        assert.equal((await first)!.otpLast, 1);
        assert.deepEqual(await write, { ok: true });
        assert.equal((await second)!.otpLast, 2);
        const update = store.users.update(name, { displayName: 'Changed' });
        const third = store.users.get(name);
        await update;
        assert.equal((await third)!.displayName, 'Changed');
        // Two reads together share nothing a caller could change.
        const [a, b] = await Promise.all([store.users.get(name), store.users.get(name)]);
        a!.displayName = 'mutated';
        assert.equal(b!.displayName, 'Changed');
      });

      it('replaces a password hash only while it is the expected one', async () => {
        await ready;
        const name = uid('rehash');
        await store.users.create(user(name, { passwordHash: 'scrypt$old' }));
        assert.equal(await store.users.replacePasswordHash(name, 'scrypt$other', 'scrypt$new'), false);
        assert.equal(await store.users.replacePasswordHash(name, 'scrypt$old', 'scrypt$new'), true);
        assert.equal((await store.users.get(name))!.passwordHash, 'scrypt$new');
        assert.equal(await store.users.replacePasswordHash(uid('ghost'), 'scrypt$old', 'x'), false);
      });

      it('starts a fresh count after a lock ran out, with a doubled lock next time', async () => {
        await ready;
        const name = uid('relock');
        await store.users.create(user(name));
        for (let i = 0; i < 3; i++) await store.users.recordOtpFailure(name, T0, 3, 60_000, 200_000);
        const after = T0 + 60_000;
        assert.deepEqual(await store.users.recordOtpFailure(name, after, 3, 60_000, 200_000), { failures: 1, lockedUntil: 0 }, 'one wrong code after the lock does not lock again');
        assert.equal((await store.users.get(name))!.otpLockedUntil, undefined);
        await store.users.recordOtpFailure(name, after, 3, 60_000, 200_000);
        assert.deepEqual(await store.users.recordOtpFailure(name, after, 3, 60_000, 200_000), { failures: 3, lockedUntil: after + 120_000 }, 'second lock doubles');
        for (let i = 0; i < 3; i++) await store.users.recordOtpFailure(name, after + 120_000, 3, 60_000, 200_000);
        assert.equal((await store.users.get(name))!.otpLockedUntil, after + 120_000 + 200_000, 'capped at maxLockMs');
        assert.equal(await store.users.advanceOtp(name, 1), true);
        for (let i = 0; i < 3; i++) await store.users.recordOtpFailure(name, T0 + 10_000_000, 3, 60_000, 200_000);
        assert.equal((await store.users.get(name))!.otpLockedUntil, T0 + 10_000_000 + 60_000, 'a good code resets the back-off');
      });
    });

    describe('devices and tokens', () => {
      it('keeps a user\'s devices, updates and deletes them', async () => {
        await ready;
        const u = uid('dev');
        const d = {
          id: 'd1', user: u, name: 'Pixel', platform: 'android' as const, pushToken: 'tok', publicKey: 'sealed',
          protected: true, createdAt: T0,
        };
        await store.devices.put(d);
        await store.devices.put({ ...d, id: 'd2', name: 'iPhone', platform: 'ios', createdAt: T0 + 1 });
        assert.deepEqual(await store.devices.get(u, 'd1'), d);
        assert.equal(await store.devices.get(uid('other'), 'd1'), null, 'devices belong to their user');
        assert.deepEqual((await store.devices.list(u)).map((x) => x.id), ['d1', 'd2']);
        assert.equal(await store.devices.update(u, 'd1', { name: 'Work phone', stale: true, lastSeenAt: T0 + 5 }), true);
        assert.deepEqual(await store.devices.get(u, 'd1'), { ...d, name: 'Work phone', stale: true, lastSeenAt: T0 + 5 });
        assert.equal(await store.devices.update(u, 'nope', { name: 'x' }), false);
        assert.equal(await store.devices.delete(u, 'd1'), true);
        assert.equal(await store.devices.delete(u, 'd1'), false);
        await store.devices.deleteAll(u);
        assert.deepEqual(await store.devices.list(u), []);
      });

      it('adds a device only while its user has fewer than the most allowed, also when adds race', async () => {
        await ready;
        const u = uid('cap');
        const d = (id: string) => ({ id, user: u, name: id, platform: 'webpush' as const, publicKey: 'sealed', protected: false, createdAt: T0 });
        const added = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => store.devices.add(d(id), 3)));
        assert.equal(added.filter(Boolean).length, 3, `added: ${added}`);
        assert.equal((await store.devices.list(u)).length, 3);
        assert.equal(await store.devices.add(d('f'), 3), false);
        assert.equal(await store.devices.add(d('f'), 4), true, 'the limit is the caller’s');
        assert.equal(await store.devices.add({ ...d('x'), user: uid('cap-other') }, 1), true, 'counted per user');
        const [gone] = added.flatMap((ok, i) => (ok ? [['a', 'b', 'c', 'd', 'e'][i]!] : []));
        await store.devices.delete(u, gone!);
        assert.equal(await store.devices.add(d('g'), 4), true, 'a removed device makes room');
        await store.devices.deleteAll(u);
      });

      it('sets a shared value once and reads it back', async () => {
        await ready;
        const k = uid('kv');
        const results = await Promise.all(['a', 'b', 'c'].map((v) => store.kv.setIfAbsent(k, v, 60_000)));
        assert.equal(results.filter((r) => r === null).length, 1, 'one caller set it');
        const winner = await store.kv.get(k);
        assert.ok(winner && results.every((r) => r === null || r === winner));
        await store.kv.set(k, 'z', 60_000);
        assert.equal(await store.kv.get(k), 'z');
        assert.equal(await store.kv.get(uid('none')), null);
        await store.kv.delete(k);
        assert.equal(await store.kv.get(k), null);
        const set = uid('set');
        await store.kv.addMember(set, 'a', 60_000);
        await store.kv.addMember(set, 'b', 60_000);
        await store.kv.addMember(set, 'a', 60_000);
        assert.deepEqual((await store.kv.members(set)).sort(), ['a', 'b']);
        await store.kv.delete(set);
        assert.deepEqual(await store.kv.members(set), []);
      });

      it('keeps administered records by kind', async () => {
        await ready;
        const kind = uid('kind');
        await store.settings.put(kind, 'vpn-1', '{"a":1}');
        await store.settings.put(kind, 'vpn-2', '{"a":2}');
        assert.equal(await store.settings.get(kind, 'vpn-1'), '{"a":1}');
        assert.deepEqual([...(await store.settings.list(kind)).keys()].sort(), ['vpn-1', 'vpn-2']);
        assert.equal(await store.settings.delete(kind, 'vpn-1'), true);
        assert.equal(await store.settings.delete(kind, 'vpn-1'), false);
        assert.equal(await store.settings.get(kind, 'vpn-1'), null);
        assert.equal((await store.settings.list(uid('empty'))).size, 0);
      });

      it('hands out a token once', async () => {
        await ready;
        const t = uid('tok');
        await store.tokens.put('enrol', t, 'alice', 60_000);
        const takers = await Promise.all(Array.from({ length: 5 }, () => store.tokens.take('enrol', t)));
        assert.deepEqual(takers.filter(Boolean), ['alice']);
        assert.equal(await store.tokens.take('enrol', uid('never')), null);
      });

      it('swaps the pending challenge of a user atomically', async () => {
        await ready;
        const name = uid('swap');
        assert.equal(await store.users.swapPending(name, 'c0'), undefined, 'no such user');
        await store.users.create(user(name));
        assert.equal(await store.users.swapPending(name, 'c1'), undefined);
        const olds = await Promise.all(['c2', 'c3', 'c4'].map((c) => store.users.swapPending(name, c)));
        assert.deepEqual(olds.filter((o) => o === 'c1').length, 1, 'only one caller replaced c1');
        assert.equal(new Set(olds).size, 3, 'each caller replaced a different one');
      });
    });

    describe('passkeys', () => {
      const passkey = (id: string, u: string, over: Partial<PasskeyRecord> = {}): PasskeyRecord => ({
        id, user: u, name: 'Laptop', publicKey: 'pQECAyYgASFYIA', counter: 5, transports: ['internal', 'hybrid'],
        deviceType: 'singleDevice', backedUp: false, createdAt: T0, ...over,
      });

      it('keeps passkeys by credential id and by user, one owner per credential id', async () => {
        await ready;
        const [u, other] = [uid('pk-user'), uid('pk-other')];
        const [a, b] = [uid('cred'), uid('cred')];
        assert.equal(await store.passkeys.create(passkey(a, u)), true);
        const { transports: _none, ...synced } = passkey(b, u, { name: 'Phone', deviceType: 'multiDevice', backedUp: true, createdAt: T0 + 1 });
        assert.equal(await store.passkeys.create(synced), true);
        assert.equal(await store.passkeys.create(passkey(a, other)), false, 'a credential id belongs to one user');
        assert.deepEqual(await store.passkeys.get(a), passkey(a, u));
        assert.deepEqual(await store.passkeys.get(b), synced);
        assert.deepEqual((await store.passkeys.list(u)).map((p) => p.id), [a, b]);
        assert.deepEqual(await store.passkeys.list(other), []);
        assert.equal(await store.passkeys.get(uid('none')), null);
        assert.equal(await store.passkeys.delete(other, a), false, 'only its owner removes it');
        assert.equal(await store.passkeys.delete(u, a), true);
        assert.equal(await store.passkeys.delete(u, a), false);
        assert.deepEqual((await store.passkeys.list(u)).map((p) => p.id), [b]);
        await store.passkeys.deleteAll(u);
        assert.deepEqual(await store.passkeys.list(u), []);
        assert.equal(await store.passkeys.get(b), null);
      });

      it('moves a counter once when uses race (compare-and-set)', async () => {
        await ready;
        const u = uid('pk-race');
        const id = uid('cred');
        await store.passkeys.create(passkey(id, u));
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.passkeys.recordUse(id, 5, 6, T0 + i, true)));
        assert.equal(results.filter(Boolean).length, 1, 'one use with counter 6 passed');
        const after = (await store.passkeys.get(id))!;
        assert.equal(after.counter, 6);
        assert.equal(after.backedUp, true);
        assert.ok(after.lastUsedAt! >= T0);
        assert.equal(await store.passkeys.recordUse(id, 5, 7, T0, false), false, 'a stale expected counter is refused');
        assert.equal(await store.passkeys.recordUse(uid('gone'), 0, 1, T0, false), false);
      });
    });

    describe('audit', () => {
      it('returns events newest first, filtered', async () => {
        await ready;
        const u = uid('aud');
        for (let i = 0; i < 5; i++) {
          await store.audit.append({ at: T0 + i, type: 'login', user: u, front: i % 2 ? 'radius' : 'oidc', outcome: 'approved' });
        }
        const all = await store.audit.query({ user: u, limit: 10 });
        assert.deepEqual(all.map((e) => e.at), [4, 3, 2, 1, 0].map((i) => T0 + i));
        const radius = await store.audit.query({ user: u, front: 'radius', limit: 10 });
        assert.deepEqual(radius.map((e) => e.at), [T0 + 3, T0 + 1]);
        assert.equal((await store.audit.query({ user: u, limit: 2 })).length, 2);
      });

      /** A store of its own with small streams; closed after `fn`. */
      const withLimits = async (limits: AuditLimits, fn: (s: Store) => Promise<void>) => {
        const s = await make(limits);
        try {
          await fn(s);
        } finally {
          await s.close();
        }
      };
      /** Appends in the order given; concurrently, as a busy server does (Redis pipelines them). */
      const appendAll = (s: Store, events: AuditEvent[]) => Promise.all(events.map((e) => s.audit.append(e)));

      it('high-volume events never push a security event out', async () => {
        await withLimits({ auditLimit: 1000, auditActivityLimit: 100 }, async (s) => {
          const u = uid('flush');
          await s.audit.append({ at: T0, type: 'login', user: u, front: 'oidc', outcome: 'approved' });
          await s.audit.append({ at: T0 + 1, type: 'admin', actor: 'admin-token', user: u, detail: { action: 'otp.enable' } });
          // What a portal user, a NAS or an enrolled device can send without limit: far more than
          // the whole security stream holds, never mind the activity stream.
          const flood: AuditEvent[] = [];
          for (let i = 0; i < 1500; i++) {
            const at = T0 + 2 + i;
            flood.push(
              i % 3 === 0
                ? { at, type: 'radius', user: u, front: 'radius', client: 'vpn-1', outcome: 'reject' }
                : i % 3 === 1
                  ? { at, type: 'account', actor: u, user: u, detail: { action: 'account.device-enrolment' } }
                  : { at, type: 'accounting', user: u, front: 'radius', client: 'vpn-1', outcome: 'interim-update' },
            );
          }
          await appendAll(s, flood);
          const security = await s.audit.query({ user: u, stream: 'security', limit: 1000 });
          assert.deepEqual(
            security.map((e) => e.type),
            ['admin', 'login'],
            'the login and the administrator\'s change are still there',
          );
          const all = await s.audit.query({ user: u, limit: 5000 });
          assert.ok(all.some((e) => e.type === 'login') && all.some((e) => e.type === 'admin'), 'and found without a stream filter');
          assert.ok(all.length < 1502, `the activity stream was trimmed (${all.length} events kept)`);
        });
      });

      it('merges both streams newest first and filters by user, front, outcome, type, stream and since', async () => {
        await ready;
        const u = uid('merge');
        const other = uid('merge-other');
        await appendAll(store, [
          { at: T0 + 0, type: 'login', user: u, front: 'radius', outcome: 'approved' },
          { at: T0 + 1, type: 'radius', user: u, front: 'radius', outcome: 'accept' },
          { at: T0 + 2, type: 'otp', user: u, front: 'radius', outcome: 'otp_invalid' },
          { at: T0 + 3, type: 'accounting', user: u, front: 'radius', outcome: 'start' },
          { at: T0 + 4, type: 'account', user: u, detail: { action: 'account.device-enrolment' } },
          { at: T0 + 5, type: 'account', user: u, detail: { action: 'account.recovery-codes' } },
          { at: T0 + 6, type: 'login', user: other, front: 'oidc', outcome: 'approved' },
          { at: T0 + 7, type: 'radius', user: other, front: 'radius', outcome: 'reject' },
        ]);
        const ats = (es: AuditEvent[]) => es.map((e) => e.at - T0);
        assert.deepEqual(ats(await store.audit.query({ user: u, limit: 100 })), [5, 4, 3, 2, 1, 0]);
        assert.deepEqual(ats(await store.audit.query({ user: u, limit: 3 })), [5, 4, 3], 'the limit counts both streams');
        assert.deepEqual(ats(await store.audit.query({ user: u, stream: 'security', limit: 100 })), [5, 2, 0]);
        assert.deepEqual(ats(await store.audit.query({ user: u, stream: 'activity', limit: 100 })), [4, 3, 1]);
        assert.deepEqual(ats(await store.audit.query({ user: u, front: 'radius', limit: 100 })), [3, 2, 1, 0]);
        assert.deepEqual(ats(await store.audit.query({ user: u, outcome: 'otp_invalid', limit: 100 })), [2]);
        assert.deepEqual(ats(await store.audit.query({ user: u, type: 'account', limit: 100 })), [5, 4]);
        assert.deepEqual(ats(await store.audit.query({ user: u, since: T0 + 2, limit: 100 })), [5, 4, 3, 2]);
        assert.deepEqual(ats(await store.audit.query({ user: other, limit: 100 })), [7, 6]);
        // A RADIUS packet's event is written after the login it answered, often in the same ms.
        const tie = uid('merge-tie');
        await store.audit.append({ at: T0 + 9, type: 'login', user: tie, front: 'radius', outcome: 'approved' });
        await store.audit.append({ at: T0 + 9, type: 'radius', user: tie, front: 'radius', outcome: 'accept' });
        assert.deepEqual((await store.audit.query({ user: tie, limit: 1 })).map((e) => e.type), ['radius'], 'the answer first, as written');
      });

      it('keeps each stream to its own limit', async () => {
        await withLimits({ auditLimit: 100, auditActivityLimit: 100 }, async (s) => {
          const u = uid('limits');
          await s.audit.append({ at: T0, type: 'radius', user: u, front: 'radius', outcome: 'accept' });
          const logins: AuditEvent[] = [];
          for (let i = 1; i <= 1000; i++) logins.push({ at: T0 + i, type: 'login', user: u, outcome: 'approved' });
          await appendAll(s, logins);
          const security = await s.audit.query({ user: u, stream: 'security', limit: 1000 });
          // Redis trims whole stream nodes (MAXLEN ~): a little over the limit may stay.
          assert.ok(security.length >= 100 && security.length < 1000, `security trimmed to about its limit (${security.length})`);
          assert.equal(security[0]!.at, T0 + 1000, 'the newest kept');
          const activity = await s.audit.query({ user: u, stream: 'activity', limit: 1000 });
          assert.deepEqual(activity.map((e) => e.at), [T0], 'security events never push an activity event out either');
        });
      });
    });

    describe('guards', () => {
      it('claims a key once within its lifetime', async () => {
        await ready;
        const k = uid('nonce');
        assert.equal(await store.guards.claimOnce(k, 60_000), true);
        assert.equal(await store.guards.claimOnce(k, 60_000), false);
        const racers = await Promise.all(Array.from({ length: 10 }, () => store.guards.claimOnce(`${k}-r`, 60_000)));
        assert.equal(racers.filter(Boolean).length, 1);
      });

      it('counts hits in a window', async () => {
        await ready;
        const k = uid('rate');
        const counts = await Promise.all(Array.from({ length: 5 }, () => store.guards.hit(k, 60_000)));
        assert.deepEqual(counts.sort(), [1, 2, 3, 4, 5]);
      });

      it('reads a counter without counting, and resets it to a fresh window', async () => {
        await ready;
        const k = uid('peek');
        assert.deepEqual(await store.guards.peek(k), { count: 0, remainingMs: 0 }, 'nothing counted yet');
        for (let i = 0; i < 3; i++) await store.guards.hit(k, 60_000);
        const first = await store.guards.peek(k);
        const second = await store.guards.peek(k);
        assert.equal(first.count, 3);
        assert.equal(second.count, 3, 'peeking does not count');
        assert.ok(first.remainingMs > 0 && first.remainingMs <= 60_000, `time left in the window (${first.remainingMs})`);
        await store.guards.reset(k);
        assert.deepEqual(await store.guards.peek(k), { count: 0, remainingMs: 0 });
        assert.equal(await store.guards.hit(k, 60_000), 1, 'a hit after a reset starts over');
        await store.guards.reset(uid('never-counted'));
      });
    });
  });
}
