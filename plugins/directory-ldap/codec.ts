/**
 * The small encodings of the LDAP directory plugin: Active Directory's binary GUIDs and SIDs,
 * Windows FILETIMEs, AD's bind sub-codes, OpenLDAP's password policy response control, and
 * how a login name is split into what each login attribute is compared with.
 */
import { Control, type BerReader } from 'ldapts';
import type { VerifyFailure } from '../../src/core/directory.js';

/** objectGUID (16 bytes, the first three fields little-endian) as the canonical lower-case string. */
export function formatGuid(b: Buffer): string {
  if (b.length !== 16) throw new Error(`an objectGUID has 16 bytes, not ${b.length}`);
  const h = (from: number, to: number, reverse: boolean) => {
    const part = Buffer.from(b.subarray(from, to));
    return (reverse ? part.reverse() : part).toString('hex');
  };
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`;
}

export interface Sid {
  revision: number;
  authority: bigint;
  subAuthorities: number[];
}

/** A binary SID (objectSid). */
export function parseSid(b: Buffer): Sid {
  if (b.length < 8) throw new Error('a SID has at least 8 bytes');
  const count = b[1]!;
  if (b.length !== 8 + 4 * count) throw new Error(`a SID with ${count} sub-authorities has ${8 + 4 * count} bytes, not ${b.length}`);
  let authority = 0n;
  for (let i = 2; i < 8; i++) authority = (authority << 8n) | BigInt(b[i]!);
  const subAuthorities: number[] = [];
  for (let i = 0; i < count; i++) subAuthorities.push(b.readUInt32LE(8 + 4 * i));
  return { revision: b[0]!, authority, subAuthorities };
}

export function encodeSid(sid: Sid): Buffer {
  const b = Buffer.alloc(8 + 4 * sid.subAuthorities.length);
  b[0] = sid.revision;
  b[1] = sid.subAuthorities.length;
  let a = sid.authority;
  for (let i = 7; i >= 2; i--) {
    b[i] = Number(a & 0xffn);
    a >>= 8n;
  }
  sid.subAuthorities.forEach((s, i) => b.writeUInt32LE(s >>> 0, 8 + 4 * i));
  return b;
}

export const sidString = (sid: Sid): string => `S-${sid.revision}-${sid.authority}-${sid.subAuthorities.join('-')}`;

/** The SID of the group with relative id `rid` in the domain of `userSid`. */
export function siblingSid(userSid: Sid, rid: number): Sid {
  return { ...userSid, subAuthorities: [...userSid.subAuthorities.slice(0, -1), rid] };
}

/** 100-ns intervals between 1601-01-01 and 1970-01-01. */
const FILETIME_EPOCH = 116_444_736_000_000_000n;
const NEVER = 0x7fff_ffff_ffff_ffffn;

export const filetimeNow = (now = Date.now()): bigint => BigInt(now) * 10_000n + FILETIME_EPOCH;

/** accountExpires: 0 and 0x7FFFFFFFFFFFFFFF mean never; otherwise a FILETIME. */
export function accountExpired(value: string | undefined, now = Date.now()): boolean {
  if (!value || !/^-?\d+$/.test(value)) return false;
  const v = BigInt(value);
  if (v <= 0n || v >= NEVER) return false;
  return v <= filetimeNow(now);
}

/** AD's extended error in a failed bind's diagnostic message: "… AcceptSecurityContext error, data 775, v4563". */
export function adBindSubcode(message: string): string | undefined {
  return /\bdata ([0-9a-f]{3,8})\b/i.exec(message)?.[1]?.toLowerCase();
}

/** What an AD bind sub-code means for the first factor (undefined: plain invalid credentials). */
export function adFailure(subcode: string | undefined): VerifyFailure {
  switch (subcode) {
    case '530': // not permitted to log on at this time
    case '531': // not permitted to log on at this workstation
      return 'not_allowed';
    case '532':
      return 'password_expired';
    case '533':
      return 'account_disabled';
    case '701':
      return 'account_expired';
    case '773':
      return 'must_change_password';
    case '775':
      return 'account_locked';
    default: // 52e wrong password, 525 no such user, anything else
      return 'invalid';
  }
}

/**
 * The password policy request control (draft-behera-ldap-password-policy), sent with a user's
 * bind to OpenLDAP. ldapts hands the response control's value to the request control of the
 * same type, so after the bind `error` holds what the server said: 0 passwordExpired,
 * 1 accountLocked, 2 changeAfterReset, …
 */
export class PasswordPolicyControl extends Control {
  static readonly OID = '1.3.6.1.4.1.42.2.27.8.5.1';
  error?: number;
  constructor() {
    super(PasswordPolicyControl.OID, { critical: false });
  }
  protected override parseControl(reader: BerReader): void {
    try {
      this.error = ppolicyError(reader.buffer);
    } catch {
      // A value we cannot read says nothing.
    }
  }
}

/** The error field of a PasswordPolicyResponseValue (SEQUENCE { [0] warning OPTIONAL, [1] ENUMERATED OPTIONAL }). */
export function ppolicyError(b: Buffer): number | undefined {
  const tlv = (at: number): { tag: number; start: number; end: number } => {
    const tag = b[at]!;
    let len = b[at + 1]!;
    let start = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = (len << 8) | b[start + i]!;
      start += n;
    }
    if (start + len > b.length) throw new Error('truncated');
    return { tag, start, end: start + len };
  };
  if (!b.length) return undefined;
  const seq = tlv(0);
  if (seq.tag !== 0x30) return undefined;
  for (let at = seq.start; at < seq.end; ) {
    const t = tlv(at);
    if (t.tag === 0x81) {
      let v = 0;
      for (let i = t.start; i < t.end; i++) v = (v << 8) | b[i]!;
      return v;
    }
    at = t.end;
  }
  return undefined;
}

export function ppolicyFailure(error: number | undefined): VerifyFailure | undefined {
  switch (error) {
    case 0:
      return 'password_expired';
    case 1:
      return 'account_locked';
    case 2:
      return 'must_change_password';
    default:
      return undefined;
  }
}

export interface LoginForms {
  /** The bare name (realm or NetBIOS prefix of this directory taken off): for sAMAccountName, uid … */
  name: string;
  /** The name as typed when it is user@suffix: for userPrincipalName and mail. */
  principal?: string;
}

/**
 * Splits a login: `CORP\alice` (CORP one of the realms) → alice; `alice@corp.example.org`
 * (a realm) → alice for the name attributes and the whole for userPrincipalName/mail;
 * `alice@elsewhere.org` → the whole for every attribute (a mail or UPN with another suffix);
 * a NetBIOS prefix that is not one of the realms is kept (and so matches nobody).
 */
export function loginForms(login: string, realms: string[]): LoginForms {
  const isRealm = (r: string) => realms.some((x) => x.toLowerCase() === r.toLowerCase());
  const bs = login.indexOf('\\');
  if (bs > 0) {
    const prefix = login.slice(0, bs);
    return isRealm(prefix) ? { name: login.slice(bs + 1) } : { name: login };
  }
  const at = login.lastIndexOf('@');
  if (at > 0 && at < login.length - 1) {
    const suffix = login.slice(at + 1);
    return { name: isRealm(suffix) ? login.slice(0, at) : login, principal: login };
  }
  return { name: login };
}

/** Attributes compared with the whole user@suffix form rather than the bare name. */
export const PRINCIPAL_ATTRIBUTES = new Set(['userprincipalname', 'mail']);
