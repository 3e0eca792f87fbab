/**
 * Where users and their first factor come from. The local directory (plugins/directory-local)
 * uses Countersign's own users; an LDAP directory (plugins/directory-ldap: Active Directory,
 * OpenLDAP) binds as the user against the organisation's directory. Several may be configured
 * (realms); src/core/directories.ts picks one for a login and keeps the Countersign record
 * that factors, devices and lockouts attach to.
 */

/** A user as a directory reports them. */
export interface DirectoryUser {
  /** The login name as the directory knows it now (sAMAccountName, uid, or the local name). */
  login: string;
  /** Stable across renames (objectGUID on AD, entryUUID on OpenLDAP; the name for local users). */
  id: string;
  displayName?: string;
  email?: string;
  /** Group names (cn), nested membership resolved, the primary group included. */
  groups: string[];
  /** Attributes worth showing an administrator (dn, userPrincipalName, department…). */
  attributes?: Record<string, string | string[]>;
  /** What the directory says of the account without a password check. */
  state: 'active' | 'disabled' | 'expired' | 'locked' | 'must_change_password';
}

/**
 * Why a first factor was refused. Only 'invalid' may be said to someone who has not proved
 * the password: the others are told to the user only when the directory reports them after a
 * correct password (Active Directory's bind sub-codes 532, 533, 701, 773 do; 775 does not).
 */
export type VerifyFailure =
  | 'invalid'
  | 'password_expired'
  | 'must_change_password'
  | 'account_disabled'
  | 'account_expired'
  | 'account_locked'
  | 'not_allowed'
  | 'unavailable';

export type VerifyResult = { ok: true; user: DirectoryUser } | { ok: false; reason: VerifyFailure; detail?: string };

export interface DirectoryStatus {
  reachable: boolean;
  /** Which server answered, or why none did. */
  detail?: string;
}

export interface Directory {
  /** The name it goes by in configuration, audit events and the console. */
  readonly name: string;
  /** Realms it answers for: DNS suffixes (user@corp.example.org) and NetBIOS names (CORP\user). */
  readonly realms: string[];
  /** Its users are Countersign's own records (the local directory): nothing to link or refresh. */
  readonly ownsRecords?: boolean;
  /**
   * Checks a password. Never binds with an empty one (an LDAP anonymous bind "succeeds"); an
   * unknown login costs about what a wrong password does.
   */
  verify(login: string, password: string): Promise<VerifyResult>;
  /**
   * The login name (sAMAccountName, uid) of the account a login such as a UPN or an e-mail
   * address means, or null when nobody has it: one search, no groups. For the throttle, which
   * must count `robert.smith@corp.example.org` and `bob` as the one account they are.
   */
  identify?(login: string): Promise<string | null>;
  /** Finds a user without a password (sync, enablement by group, account state at login). */
  lookup(login: string): Promise<DirectoryUser | null>;
  /** Every user, or a group's members (nested), page by page. */
  users(opts?: { group?: string }): AsyncIterable<DirectoryUser>;
  status(): Promise<DirectoryStatus>;
  close(): Promise<void>;
}

/** Words for a refusal the user may hear (after a correct password, or 'invalid'). */
export const FAILURE_WORDS: Record<VerifyFailure, string> = {
  invalid: 'Wrong user name or password',
  password_expired: 'Your password has expired; change it (for example at a Windows sign-in or the password portal) and try again',
  must_change_password: 'You must change your password before you can sign in here',
  account_disabled: 'This account is disabled; contact your help desk',
  account_expired: 'This account has expired; contact your help desk',
  account_locked: 'This account is locked in the directory; wait or contact your help desk',
  not_allowed: 'This account may not sign in here',
  unavailable: 'The directory cannot be reached; nobody can sign in until it returns. Try again in a moment',
};
