/**
 * The first factor's rules in core, on the memory store and a real local directory: the
 * throttle's verdicts, one budget per account whatever realm or case was typed, readings
 * counted once, the bounded check gate. Runs in well under a second.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import createLocalDirectory from '../../plugins/directory-local/index.js';
import { CheckGate } from '../../src/core/check-gate.js';
import { systemClock } from '../../src/core/clock.js';
import { Directories } from '../../src/core/directories.js';
import type { Directory } from '../../src/core/directory.js';
import { CountersignError } from '../../src/core/errors.js';
import { FirstFactor, type FirstFactorSource } from '../../src/core/first-factor.js';
import { hashPassword } from '../../src/core/password.js';
import { DEFAULT_THROTTLE, FirstFactorThrottle, type ThrottleState } from '../../src/core/throttle.js';
import { MemoryStore } from '../../src/store/memory/index.js';

const log = pino({ level: 'silent' });
const cheap = { N: 1024, r: 8, p: 1 };

async function setUp(extra: Directory[] = [], rules = DEFAULT_THROTTLE, gate = new CheckGate()) {
  const store = new MemoryStore();
  const directories = new Directories([createLocalDirectory({ store, scrypt: cheap, realms: ['corp.example.org', 'CORP'] }), ...extra], store, systemClock, log);
  await store.users.create({ name: 'bob', createdAt: 0, otpEnabled: false, pushEnabled: false, passwordHash: await hashPassword('right', cheap) });
  const throttle = new FirstFactorThrottle(store, rules);
  return { store, directories, throttle, ff: new FirstFactor(directories, throttle, gate, log) };
}

const at = (address: string, shared = false): FirstFactorSource => ({ front: 'test', address, ...(shared ? { shared } : {}) });
const state = (s: Partial<ThrottleState>): ThrottleState => ({ pairFailures: 0, accountFailures: 0, addressFailures: 0, known: false, ...s });
const refusal = async (p: Promise<unknown>) => {
  try {
    await p;
    return null;
  } catch (err) {
    if (err instanceof CountersignError) return err.status;
    throw err;
  }
};

describe('first factor: the throttle’s verdicts', () => {
  const t = new FirstFactorThrottle(new MemoryStore());
  const home = { address: '192.0.2.1' };

  it('an unknown source waits once it or the account has used its failures', () => {
    assert.equal(t.verdict(state({ pairFailures: 9 }), home).go, true);
    assert.equal(t.verdict(state({ pairFailures: 10 }), home).go, false);
    assert.equal(t.verdict(state({ accountFailures: 100 }), home).go, false);
    assert.equal(t.verdict(state({ addressFailures: 10 }), home).go, false);
  });

  it('a usual place is never held, only slowed, and the delay is bounded', () => {
    const v = (n: number) => t.verdict(state({ known: true, pairFailures: n, accountFailures: 10_000, addressFailures: 10_000 }), home);
    assert.deepEqual(v(9), { go: true, known: true, delayMs: 0 });
    assert.deepEqual(v(10), { go: true, known: true, delayMs: 1000 });
    assert.deepEqual(v(12), { go: true, known: true, delayMs: 4000 });
    assert.deepEqual(v(10_000), { go: true, known: true, delayMs: DEFAULT_THROTTLE.maxDelayMs });
  });

  it('a source that speaks for many users has the larger per-address budget', () => {
    assert.equal(t.verdict(state({ addressFailures: 50 }), { address: 'nas:vpn', shared: true }).go, true);
    assert.equal(t.verdict(state({ addressFailures: 300 }), { address: 'nas:vpn', shared: true }).go, false);
  });
});

describe('first factor: one account, one budget', () => {
  it('bob, BOB, CORP\\bob and bob@corp.example.org are one account', async () => {
    const { directories } = await setUp();
    for (const login of ['bob', 'BOB', 'CORP\\bob', 'corp\\Bob', 'bob@corp.example.org', 'Bob@CORP.EXAMPLE.ORG']) {
      assert.equal(await directories.accountKey(login), 'bob', login);
    }
  });

  it('a directory resolves a mail or UPN login to its login name', async () => {
    const ldapLike: Directory = {
      name: 'corp',
      realms: ['mail.example.org'],
      identify: async (login) => (login.toLowerCase() === 'robert.smith@mail.example.org' ? 'bob' : null),
      verify: async () => ({ ok: false, reason: 'invalid' }),
      lookup: async () => null,
      users: async function* () {},
      status: async () => ({ reachable: true }),
      close: async () => {},
    };
    const { directories } = await setUp([ldapLike]);
    assert.equal(await directories.accountKey('Robert.Smith@mail.example.org'), 'bob');
    assert.equal(await directories.accountKey('nobody@mail.example.org'), 'nobody');
  });

  it('failures under every spelling hold the account for that source; the right password elsewhere still works', async () => {
    const { ff } = await setUp();
    const spellings = ['bob', 'BOB', 'CORP\\bob', 'bob@corp.example.org'];
    for (let i = 0; i < 10; i++) {
      const r = await ff.check({ login: spellings[i % spellings.length]!, passwords: [`guess${i}`], source: at('203.0.113.9') });
      assert.equal(r.ok, false);
    }
    assert.equal(await refusal(ff.check({ login: 'bob', passwords: ['right'], source: at('203.0.113.9') })), 429);
    const elsewhere = await ff.check({ login: 'bob', passwords: ['right'], source: at('198.51.100.4') });
    assert.equal(elsewhere.ok, true);
  });

  it('the readings of one typed text count as one failure', async () => {
    const { ff, throttle } = await setUp();
    await ff.check({ login: 'bob', passwords: ['wrong1,123456', 'wrong1', 'wrong1,'], source: at('203.0.113.10') });
    assert.equal((await throttle.read('bob', at('203.0.113.10'))).pairFailures, 1);
    const r = await ff.check({ login: 'bob', passwords: ['right,123456', 'right'], source: at('203.0.113.10') });
    assert.deepEqual(r.ok && r.reading, 1);
  });

  it('a usual place past its failures is slowed, not held: the right password gets in', async () => {
    const { ff } = await setUp([], { ...DEFAULT_THROTTLE, maxDelayMs: 50 });
    const office = at('192.0.2.50');
    assert.equal((await ff.check({ login: 'bob', passwords: ['right'], source: office })).ok, true);
    for (let i = 0; i < 25; i++) await ff.check({ login: 'bob', passwords: [`guess${i}`], source: office });
    // Many more than the per-address budget too: the place is known for bob.
    const started = Date.now();
    assert.equal((await ff.check({ login: 'bob', passwords: ['right'], source: office })).ok, true);
    assert.ok(Date.now() - started >= 40, 'it waited');
  });

  it('an anonymous address past its failures waits the minute, whoever it names', async () => {
    const { ff } = await setUp();
    for (let i = 0; i < 10; i++) await ff.check({ login: `nobody${i}`, passwords: ['x'], source: at('203.0.113.77') });
    assert.equal(await refusal(ff.check({ login: 'bob', passwords: ['right'], source: at('203.0.113.77') })), 429);
  });
});

describe('first factor: the check gate', () => {
  const hold = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => (open = r));
    return { p, open };
  };

  it('a source gets at most its share at once; more is refused at once', async () => {
    const gate = new CheckGate({ concurrent: 4, queued: 10, perSource: 2, sharedPerSource: 3 });
    const h = hold();
    const running = [gate.run('a', { known: false }, () => h.p), gate.run('a', { known: false }, () => h.p)];
    assert.equal(await refusal(gate.run('a', { known: false }, async () => {})), 429);
    // Another source, a shared one and the usual place are not bound by a's share.
    await gate.run('b', { known: false }, async () => {});
    await gate.run('a', { known: true }, async () => {});
    h.open();
    await Promise.all(running);
    await gate.run('a', { known: false }, async () => {});
  });

  it('a full line is refused at once; the usual place goes to the front of the line', async () => {
    const gate = new CheckGate({ concurrent: 1, queued: 2, perSource: 5, sharedPerSource: 5 });
    const h = hold();
    const order: string[] = [];
    const first = gate.run('x', { known: false }, () => h.p);
    const waiting = [gate.run('y', { known: false }, async () => void order.push('y')), gate.run('z', { known: false }, async () => void order.push('z'))];
    assert.equal(await refusal(gate.run('w', { known: false }, async () => {})), 503);
    const known = gate.run('k', { known: true }, async () => void order.push('k'));
    h.open();
    await Promise.all([first, ...waiting, known]);
    assert.deepEqual(order, ['k', 'y', 'z']);
    assert.deepEqual(gate.load, { running: 0, waiting: 0 });
  });

  it('a check that throws frees its slot', async () => {
    const gate = new CheckGate({ concurrent: 1, queued: 0, perSource: 1, sharedPerSource: 1 });
    await assert.rejects(gate.run('a', { known: false }, async () => Promise.reject(new Error('directory down'))));
    await gate.run('a', { known: false }, async () => {});
    assert.deepEqual(gate.load, { running: 0, waiting: 0 });
  });
});
