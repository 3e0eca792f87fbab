import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { hashPassword, verifyPassword } from '../../src/core/password.js';
import { SecretBox } from '../../src/core/secretbox.js';
import { newChallengeId } from '../../src/core/ids.js';
import { systemClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import createLocalDirectory from '../../plugins/directory-local/index.js';

it('seals secrets with AES-256-GCM bound to their context', () => {
  const box = new SecretBox(randomBytes(32));
  const secret = randomBytes(20);
  const sealed = box.seal(secret, 'otp:alice');
  assert.match(sealed, /^v1\.[\w-]+\.[\w-]+$/);
  assert.ok(!sealed.includes(secret.toString('base64url')));
  assert.deepEqual(box.open(sealed, 'otp:alice'), secret);
  assert.notEqual(box.seal(secret, 'otp:alice'), sealed, 'a fresh IV every time');
  assert.throws(() => box.open(sealed, 'otp:mallory'), { code: 'secret_unreadable' });
  assert.throws(() => new SecretBox(randomBytes(32)).open(sealed, 'otp:alice'), { code: 'secret_unreadable' });
  const [v, iv, body] = sealed.split('.');
  const flipped = Buffer.from(body!, 'base64url');
  flipped[0]! ^= 1;
  assert.throws(() => box.open(`${v}.${iv}.${flipped.toString('base64url')}`, 'otp:alice'), { code: 'secret_unreadable' });
  assert.throws(() => box.open('garbage', 'otp:alice'), { code: 'secret_unreadable' });
  assert.throws(() => new SecretBox(randomBytes(16)), /32 bytes/);
});

it('hashes passwords with scrypt and verifies them', async () => {
  const cost = { N: 1024, r: 8, p: 1 };
  const h = await hashPassword('correct horse', cost);
  assert.match(h, /^scrypt\$1024\$8\$1\$[\w-]+\$[\w-]+$/);
  assert.notEqual(await hashPassword('correct horse', cost), h, 'salted');
  assert.equal(await verifyPassword('correct horse', h), true);
  assert.equal(await verifyPassword('correct horsE', h), false);
  assert.equal(await verifyPassword('', h), false);
  assert.equal(await verifyPassword('anything', undefined), false);
  assert.equal(await verifyPassword('anything', 'scrypt$broken'), false);
  // NFC and NFD spellings of the same text are the same password.
  const nfc = await hashPassword('caf\u00e9', cost);
  assert.equal(await verifyPassword('cafe\u0301', nfc), true);
});

it('uses an OWASP scrypt setting by default, and rehashes an older hash at the next good login', async () => {
  assert.match(await hashPassword('x'), /^scrypt\$32768\$8\$3\$/, 'N=2^15, r=8, p=3');
  const store = new MemoryStore({ clock: systemClock });
  const old = await hashPassword('correct horse', { N: 1024, r: 8, p: 1 });
  await store.users.create({ name: 'ann', passwordHash: old, createdAt: 0, otpEnabled: false, pushEnabled: false });
  const dir = createLocalDirectory({ store, scrypt: { N: 1024, r: 8, p: 3 } });
  assert.deepEqual(await dir.verify('ann', 'wrong'), { ok: false, reason: 'invalid' });
  assert.equal((await store.users.get('ann'))!.passwordHash, old, 'a wrong password changes nothing');
  assert.equal((await dir.verify('ann', 'correct horse')).ok, true);
  const rehashed = (await store.users.get('ann'))!.passwordHash!;
  assert.match(rehashed, /^scrypt\$1024\$8\$3\$/);
  assert.equal(await verifyPassword('correct horse', rehashed), true);
  assert.equal((await dir.verify('ann', 'correct horse')).ok, true);
  assert.equal((await store.users.get('ann'))!.passwordHash, rehashed, 'no rehash when the cost is current');
  assert.equal(await store.users.replacePasswordHash('ann', old, 'scrypt$stale'), false, 'a hash changed meanwhile stays changed');
});

it('challenge ids are 144-bit URL-safe strings that never start with "-" (a command line would read an option)', () => {
  const ids = Array.from({ length: 5000 }, () => newChallengeId());
  assert.ok(ids.every((id) => /^[A-Za-z0-9_][A-Za-z0-9_-]{23}$/.test(id)));
  assert.equal(new Set(ids).size, ids.length);
});
