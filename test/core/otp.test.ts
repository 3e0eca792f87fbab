import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import {
  base32Decode,
  base32Encode,
  findOtpMatch,
  hotp,
  newOtpSecret,
  otpauthUri,
  totp,
  totpStep,
  type OtpAlgorithm,
} from '../../src/core/otp.js';

const ascii = (n: number) => Buffer.from('1234567890'.repeat(7).slice(0, n));

describe('hotp', () => {
  it('matches RFC 4226 Appendix D', () => {
    const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
    expected.forEach((code, counter) => assert.equal(hotp(ascii(20), counter, 'SHA1', 6), code));
  });

  it('rejects digits outside 6..8 and bad counters', () => {
    assert.throws(() => hotp(ascii(20), 0, 'SHA1', 5), RangeError);
    assert.throws(() => hotp(ascii(20), 0, 'SHA1', 9), RangeError);
    assert.throws(() => hotp(ascii(20), -1, 'SHA1', 6), RangeError);
    assert.throws(() => hotp(ascii(20), 1.5, 'SHA1', 6), RangeError);
    assert.equal(hotp(ascii(20), 2 ** 53, 'SHA1', 6).length, 6);
  });
});

describe('totp', () => {
  // RFC 6238 Appendix B; seeds per the errata: 20, 32 and 64 ASCII bytes.
  const vectors: [number, Record<OtpAlgorithm, string>][] = [
    [59, { SHA1: '94287082', SHA256: '46119246', SHA512: '90693936' }],
    [1111111109, { SHA1: '07081804', SHA256: '68084774', SHA512: '25091201' }],
    [1111111111, { SHA1: '14050471', SHA256: '67062674', SHA512: '99943326' }],
    [1234567890, { SHA1: '89005924', SHA256: '91819424', SHA512: '93441116' }],
    [2000000000, { SHA1: '69279037', SHA256: '90698825', SHA512: '38618901' }],
    [20000000000, { SHA1: '65353130', SHA256: '77737706', SHA512: '47863826' }],
  ];
  const seeds: Record<OtpAlgorithm, Buffer> = { SHA1: ascii(20), SHA256: ascii(32), SHA512: ascii(64) };

  for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
    it(`matches RFC 6238 Appendix B for ${algorithm}`, () => {
      for (const [seconds, codes] of vectors) {
        assert.equal(totp(seeds[algorithm], seconds * 1000, { algorithm, digits: 8, period: 30 }), codes[algorithm], `T=${seconds}`);
      }
    });
  }

  it('computes steps', () => {
    assert.equal(totpStep(0, 30), 0);
    assert.equal(totpStep(29_999, 30), 0);
    assert.equal(totpStep(30_000, 30), 1);
    assert.equal(totpStep(1111111109_000, 30), 0x23523ec);
    assert.equal(totpStep(20000000000_000, 30), 0x27bc86aa);
    assert.equal(totpStep(119_999, 60), 1);
  });
});

describe('base32', () => {
  it('matches RFC 4648 test vectors', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'MY'],
      ['fo', 'MZXQ'],
      ['foo', 'MZXW6'],
      ['foob', 'MZXW6YQ'],
      ['fooba', 'MZXW6YTB'],
      ['foobar', 'MZXW6YTBOI'],
    ];
    for (const [plain, encoded] of vectors) {
      assert.equal(base32Encode(Buffer.from(plain)), encoded);
      assert.equal(base32Decode(encoded).toString(), plain);
    }
  });

  it('decodes padding, spaces and lower case', () => {
    assert.equal(base32Decode('MZXW6YTBOI======').toString(), 'foobar');
    assert.equal(base32Decode('mzxw 6ytb oi').toString(), 'foobar');
  });

  it('round trips random buffers', () => {
    for (let n = 0; n <= 70; n++) {
      const buf = randomBytes(n);
      const s = base32Encode(buf);
      assert.match(s, /^[A-Z2-7]*$/);
      assert.deepEqual(base32Decode(s), buf);
    }
  });

  it('throws on invalid characters', () => {
    for (const bad of ['MZXW1', 'MZXW0', 'MZXW8', 'MZ-XW', 'MZ!', 'É', 'ß', 'ı', 'ſ']) {
      assert.throws(() => base32Decode(bad), Error, bad);
    }
  });
});

describe('findOtpMatch', () => {
  const secret = ascii(20);

  it('finds the counter within the window', () => {
    assert.equal(findOtpMatch(secret, '969429', 0, 9, 'SHA1', 6), 3);
    assert.equal(findOtpMatch(secret, '969429', 3, 3, 'SHA1', 6), 3);
    assert.equal(findOtpMatch(secret, '520489', 5, 12, 'SHA1', 6), 9);
  });

  it('returns null outside the window', () => {
    assert.equal(findOtpMatch(secret, '969429', 4, 9, 'SHA1', 6), null);
    assert.equal(findOtpMatch(secret, '969429', 0, 2, 'SHA1', 6), null);
    assert.equal(findOtpMatch(secret, '969429', 5, 4, 'SHA1', 6), null);
  });

  it('skips negative candidates', () => {
    assert.equal(findOtpMatch(secret, '755224', -3, 3, 'SHA1', 6), 0);
  });

  it('works for TOTP steps', () => {
    const now = 1234567890_000;
    const p = { algorithm: 'SHA256', digits: 8, period: 30 } as const;
    const step = totpStep(now, 30);
    const code = totp(ascii(32), now - 30_000, p);
    assert.equal(findOtpMatch(ascii(32), code, step - 1, step + 1, 'SHA256', 8), step - 1);
    assert.equal(findOtpMatch(ascii(32), code, step, step + 1, 'SHA256', 8), null);
  });

  it('returns null for wrong length or non-digits', () => {
    for (const code of ['', '96942', '9694290', '96942a', ' 969429', '96942 ', '９６９４２９', '-96942', '969.42']) {
      assert.equal(findOtpMatch(secret, code, 0, 9, 'SHA1', 6), null, JSON.stringify(code));
    }
  });
});

describe('otpauthUri', () => {
  it('builds a TOTP URI that parses back', () => {
    const secret = ascii(20);
    const uri = otpauthUri({
      issuer: 'ACME Co',
      account: 'alice@example.com',
      secret,
      params: { type: 'totp', algorithm: 'SHA256', digits: 8, period: 60 },
    });
    assert.equal(
      uri,
      'otpauth://totp/ACME%20Co:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60',
    );
    const u = new URL(uri);
    assert.equal(u.protocol, 'otpauth:');
    assert.equal(u.host, 'totp');
    assert.equal(decodeURIComponent(u.pathname), '/ACME Co:alice@example.com');
    assert.deepEqual(base32Decode(u.searchParams.get('secret')!), secret);
    assert.equal(u.searchParams.get('issuer'), 'ACME Co');
    assert.equal(u.searchParams.get('algorithm'), 'SHA256');
    assert.equal(u.searchParams.get('digits'), '8');
    assert.equal(u.searchParams.get('period'), '60');
    assert.equal(u.searchParams.get('counter'), null);
  });

  it('builds a HOTP URI with the counter', () => {
    const params = { type: 'hotp', algorithm: 'SHA1', digits: 6, period: 30 } as const;
    const u = new URL(otpauthUri({ issuer: 'X', account: 'bob', secret: ascii(20), params, counter: 42 }));
    assert.equal(u.host, 'hotp');
    assert.equal(u.searchParams.get('counter'), '42');
    assert.equal(u.searchParams.get('period'), null);
    assert.equal(new URL(otpauthUri({ issuer: 'X', account: 'bob', secret: ascii(20), params })).searchParams.get('counter'), '0');
  });

  it('percent-encodes special characters', () => {
    const issuer = 'Ü & Co/+?#%:';
    const account = 'a b+c&d=e#f/g?h%i:j';
    const uri = otpauthUri({ issuer, account, secret: ascii(20), params: { type: 'totp', algorithm: 'SHA1', digits: 6, period: 30 } });
    const u = new URL(uri);
    const label = u.pathname.slice(1);
    // Exactly one literal colon: the issuer/account separator.
    assert.equal(label.split(':').length, 2);
    const [i, a] = label.split(':') as [string, string];
    assert.equal(decodeURIComponent(i), issuer);
    assert.equal(decodeURIComponent(a), account);
    assert.equal(u.searchParams.get('issuer'), issuer);
    assert.equal([...u.searchParams.keys()].join(','), 'secret,issuer,algorithm,digits,period');
    assert.doesNotMatch(uri, /[ +#]/);
  });
});

describe('newOtpSecret', () => {
  it('sizes the seed to the hash', () => {
    assert.equal(newOtpSecret('SHA1').length, 20);
    assert.equal(newOtpSecret('SHA256').length, 32);
    assert.equal(newOtpSecret('SHA512').length, 64);
    assert.notDeepEqual(newOtpSecret('SHA1'), newOtpSecret('SHA1'));
  });
});

describe('cross-check with oathtool', () => {
  const haveOathtool = (() => {
    try {
      execFileSync('oathtool', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  const oathtool = (...args: string[]) => execFileSync('oathtool', args, { encoding: 'utf8' }).trim();
  const requireOathtool = (t: TestContext) => {
    if (haveOathtool) return true;
    const msg = 'oathtool is not on PATH (Debian/Ubuntu: apt-get install oathtool)';
    if (process.env.CI === 'true') assert.fail(`${msg}; it is required in CI`);
    t.skip(msg);
    return false;
  };

  it('HOTP agrees', (t) => {
    if (!requireOathtool(t)) return;
    for (let i = 0; i < 5; i++) {
      const secret = randomBytes(randomInt(10, 65));
      for (const counter of [0, 1, randomInt(2, 1000), randomInt(2 ** 32, 2 ** 40)]) {
        assert.equal(
          hotp(secret, counter, 'SHA1', 6),
          oathtool('--hotp', '-d', '6', '-c', String(counter), secret.toString('hex')),
          `secret=${secret.toString('hex')} counter=${counter}`,
        );
      }
    }
  });

  it('TOTP agrees for SHA1/SHA256/SHA512 and 6/7/8 digits', (t) => {
    if (!requireOathtool(t)) return;
    for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
      for (const digits of [6, 7, 8]) {
        for (const period of [30, 60]) {
          const secret = newOtpSecret(algorithm);
          const seconds = randomInt(0, 2 ** 32);
          assert.equal(
            totp(secret, seconds * 1000, { algorithm, digits, period }),
            oathtool(`--totp=${algorithm.toLowerCase()}`, '-d', String(digits), '-s', `${period}s`, '-N', `@${seconds}`, secret.toString('hex')),
            `${algorithm} digits=${digits} period=${period} secret=${secret.toString('hex')} t=${seconds}`,
          );
        }
      }
    }
  });
});
