import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { OtpChecker } from '../../src/core/otp-check.js';
import { base32Decode, hotp, totp } from '../../src/core/otp.js';
import { SecretBox } from '../../src/core/secretbox.js';
import { UserService } from '../../src/core/users.js';
import { MemoryStore } from '../../src/store/memory/index.js';

const setup = (rules: Partial<ConstructorParameters<typeof OtpChecker>[3]> = {}) => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12, 0, 0));
  const store = new MemoryStore({ clock });
  const box = new SecretBox(randomBytes(32));
  const users = new UserService(store, box, clock, {
    issuer: 'Test',
    otpDefaults: { type: 'totp', algorithm: 'SHA1', digits: 6, period: 30 },
    scrypt: { N: 1024, r: 8, p: 1 },
  });
  const otp = new OtpChecker(store, box, clock, { totpWindow: 1, hotpLookahead: 10, maxFailures: 5, lockMs: 60_000, maxLockMs: 3600_000, ...rules });
  return { clock, store, users, otp };
};

const code = (p: Promise<void>) => p.then(() => 'ok', (e) => e.code as string);

describe('OTP checking', () => {
  it('accepts the current TOTP code once, and codes one step either side', async () => {
    const { clock, users, otp } = setup();
    await users.create({ name: 'alice' });
    const e = await users.enrolOtp('alice', { algorithm: 'SHA256', digits: 8 });
    const secret = base32Decode(e.secret);
    const at = (ms: number) => totp(secret, ms, { algorithm: 'SHA256', digits: 8, period: 30 });
    assert.equal(await code(otp.check('alice', at(clock.now()))), 'ok');
    assert.equal(await code(otp.check('alice', at(clock.now()))), 'otp_replayed');
    assert.equal(await code(otp.check('alice', at(clock.now() - 30_000))), 'otp_replayed', 'an older step after a newer one');
    assert.equal(await code(otp.check('alice', at(clock.now() + 30_000))), 'ok', 'next step: clock drift');
    assert.equal(await code(otp.check('alice', at(clock.now() + 90_000))), 'otp_invalid', 'outside the window');
    clock.advance(60_000);
    assert.equal(await code(otp.check('alice', at(clock.now()))), 'ok');
  });

  it('accepts HOTP codes ahead within the look-ahead window, never behind', async () => {
    const { users, otp } = setup();
    await users.create({ name: 'bob' });
    const e = await users.enrolOtp('bob', { type: 'hotp' });
    const secret = base32Decode(e.secret);
    const at = (c: number) => hotp(secret, c, 'SHA1', 6);
    assert.equal(await code(otp.check('bob', at(0))), 'ok');
    assert.equal(await code(otp.check('bob', at(5))), 'ok', 'presses in between are skipped');
    assert.equal(await code(otp.check('bob', at(3))), 'otp_replayed');
    assert.equal(await code(otp.check('bob', at(16))), 'otp_invalid', 'beyond the look-ahead');
    const resynced = await users.resyncHotp('bob', at(40), at(41));
    assert.equal(resynced.otp.failures, 0);
    assert.equal(await code(otp.check('bob', at(41))), 'otp_replayed');
    assert.equal(await code(otp.check('bob', at(42))), 'ok');
    await assert.rejects(users.resyncHotp('bob', at(60), at(62)), { code: 'resync_failed' });
  });

  it('locks after consecutive failures, until the lock time passes', async () => {
    const { clock, users, otp } = setup();
    await users.create({ name: 'carol' });
    const e = await users.enrolOtp('carol');
    const good = () => totp(base32Decode(e.secret), clock.now(), { algorithm: 'SHA1', digits: 6, period: 30 });
    for (let i = 0; i < 4; i++) assert.equal(await code(otp.check('carol', 'abc')), 'otp_invalid');
    assert.equal(await code(otp.check('carol', '000000')), 'otp_locked');
    assert.equal(await code(otp.check('carol', good())), 'otp_locked', 'even a right code while locked');
    clock.advance(60_000);
    assert.equal(await code(otp.check('carol', good())), 'ok');
    assert.equal((await users.get('carol')).otp.failures, 0);
  });

  it('after a lock runs out, one wrong code does not lock again; repeated locks grow', async () => {
    const { clock, users, otp } = setup();
    await users.create({ name: 'cleo' });
    const e = await users.enrolOtp('cleo');
    const good = () => totp(base32Decode(e.secret), clock.now(), { algorithm: 'SHA1', digits: 6, period: 30 });
    for (let i = 0; i < 4; i++) await code(otp.check('cleo', '000000'));
    assert.equal(await code(otp.check('cleo', '000000')), 'otp_locked');
    clock.advance(60_000);
    assert.equal(await code(otp.check('cleo', '000000')), 'otp_invalid', 'a fresh count after the lock');
    assert.equal(await code(otp.check('cleo', good())), 'ok', 'the right code gets in');
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < 4; i++) await code(otp.check('cleo', '000000'));
      await assert.rejects(otp.check('cleo', '000000'), (err: any) => {
        assert.equal(err.code, 'otp_locked');
        assert.equal(err.details.lockedUntil, clock.now() + 60_000 * 2 ** (round - 1), `lock ${round} lasts ${2 ** (round - 1)} minutes`);
        return true;
      });
      clock.advance(60_000 * 2 ** (round - 1));
    }
    clock.advance(30_000);
    assert.equal(await code(otp.check('cleo', good())), 'ok');
    for (let i = 0; i < 5; i++) await code(otp.check('cleo', '000000'));
    assert.equal((await users.get('cleo')).otp.lockedUntil, clock.now() + 60_000, 'a good code resets the back-off');
  });

  it('refuses users without OTP, and unknown users', async () => {
    const { users, otp } = setup();
    await users.create({ name: 'dave' });
    assert.equal(await code(otp.check('dave', '123456')), 'otp_not_enabled');
    assert.equal(await code(otp.check('nobody', '123456')), 'user_not_found');
    const e = await users.enrolOtp('dave');
    await users.setFactor(['dave'], 'otp', false);
    assert.equal(await code(otp.check('dave', '123456')), 'otp_not_enabled');
    await users.setFactor(['dave'], 'otp', true);
    assert.ok(e.uri.startsWith('otpauth://totp/Test:dave?'));
  });

  it('stores the seed only encrypted', async () => {
    const { store, users } = setup();
    await users.create({ name: 'erin' });
    const e = await users.enrolOtp('erin');
    const raw = JSON.stringify(await store.users.get('erin'));
    assert.ok(!raw.includes(e.secret));
    assert.ok(!raw.includes(base32Decode(e.secret).toString('hex')));
    assert.match((await store.users.get('erin'))!.otpSecret!, /^v1\./);
  });
});
