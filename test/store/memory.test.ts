import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { challengeAt, storeContract } from './contract.js';

storeContract('memory', async (limits) => new MemoryStore({ ...limits }));

it('memory store forgets resolved challenges after keepAfter', async () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const store = new MemoryStore({ clock });
  const c = challengeAt('keep-test');
  await store.challenges.create(c, 1000);
  await store.challenges.transition(c.id, 'approved', clock.now(), { method: 'otp' }, 1000);
  clock.advance(999);
  assert.equal((await store.challenges.get(c.id))!.state, 'approved');
  clock.advance(1);
  assert.equal(await store.challenges.get(c.id), null);
  await store.close();
});
