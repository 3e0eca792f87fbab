import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  accountExpired,
  adBindSubcode,
  adFailure,
  encodeSid,
  filetimeNow,
  formatGuid,
  loginForms,
  parseSid,
  ppolicyError,
  ppolicyFailure,
  siblingSid,
  sidString,
} from '../../plugins/directory-ldap/codec.js';

test('objectGUID: the first three fields little-endian, the rest as stored', () => {
  const bytes = Buffer.from('67452301ab89efcd0123456789abcdef', 'hex');
  assert.equal(formatGuid(bytes), '01234567-89ab-cdef-0123-456789abcdef');
  assert.throws(() => formatGuid(Buffer.alloc(15)));
});

test('objectSid: parsed, printed, re-encoded; the primary group is a sibling RID', () => {
  const sid = Buffer.from('010500000000000515000000a065cf7e784b9b5fe77c8770' + '50040000', 'hex');
  const parsed = parseSid(sid);
  assert.equal(sidString(parsed), 'S-1-5-21-2127521184-1604012920-1887927527-1104');
  assert.deepEqual(encodeSid(parsed), sid);
  assert.equal(sidString(siblingSid(parsed, 513)), 'S-1-5-21-2127521184-1604012920-1887927527-513');
  assert.throws(() => parseSid(sid.subarray(0, 10)));
});

test('accountExpires: 0 and 0x7FFFFFFFFFFFFFFF are never; otherwise a FILETIME', () => {
  const now = Date.UTC(2030, 0, 1);
  assert.equal(accountExpired('0', now), false);
  assert.equal(accountExpired('9223372036854775807', now), false);
  assert.equal(accountExpired(undefined, now), false);
  assert.equal(accountExpired(String(filetimeNow(now - 86_400_000)), now), true);
  assert.equal(accountExpired(String(filetimeNow(now + 86_400_000)), now), false);
  // 1970-01-01 as a FILETIME
  assert.equal(filetimeNow(0), 116444736000000000n);
});

test('AD bind sub-codes from the diagnostic message', () => {
  const msg = (code: string) => `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data ${code}, v1db1 Code: 0x31`;
  const table: Record<string, string> = {
    '52e': 'invalid',
    '525': 'invalid',
    '530': 'not_allowed',
    '531': 'not_allowed',
    '532': 'password_expired',
    '533': 'account_disabled',
    '701': 'account_expired',
    '773': 'must_change_password',
    '775': 'account_locked',
  };
  for (const [code, reason] of Object.entries(table)) assert.equal(adFailure(adBindSubcode(msg(code))), reason, code);
  assert.equal(adFailure(adBindSubcode('Invalid Credentials Code: 0x31')), 'invalid');
});

test('password policy response control: the error field', () => {
  assert.equal(ppolicyError(Buffer.from('3003810101', 'hex')), 1);
  assert.equal(ppolicyError(Buffer.from('3008a003800105810102', 'hex')), 2);
  assert.equal(ppolicyError(Buffer.from('3005a003800105', 'hex')), undefined); // a warning only
  assert.equal(ppolicyError(Buffer.alloc(0)), undefined);
  assert.equal(ppolicyFailure(0), 'password_expired');
  assert.equal(ppolicyFailure(1), 'account_locked');
  assert.equal(ppolicyFailure(2), 'must_change_password');
  assert.equal(ppolicyFailure(undefined), undefined);
});

test('login forms: NetBIOS prefix and UPN suffix of this directory', () => {
  const realms = ['corp.example.org', 'CORP'];
  assert.deepEqual(loginForms('alice', realms), { name: 'alice' });
  assert.deepEqual(loginForms('CORP\\alice', realms), { name: 'alice' });
  assert.deepEqual(loginForms('corp\\alice', realms), { name: 'alice' });
  assert.deepEqual(loginForms('OTHER\\alice', realms), { name: 'OTHER\\alice' });
  assert.deepEqual(loginForms('alice@corp.example.org', realms), { name: 'alice', principal: 'alice@corp.example.org' });
  assert.deepEqual(loginForms('alice@Corp.Example.Org', realms), { name: 'alice', principal: 'alice@Corp.Example.Org' });
  assert.deepEqual(loginForms('alice@gmail.com', realms), { name: 'alice@gmail.com', principal: 'alice@gmail.com' });
  assert.deepEqual(loginForms('@corp.example.org', realms), { name: '@corp.example.org' });
});
