import {
  AndFilter,
  EqualityFilter,
  ExtensibleFilter,
  FilterParser,
  OrFilter,
  ResultCodeError,
  type Entry,
  type Filter,
} from 'ldapts';
import type { Logger } from 'pino';
import type { LdapDirectoryConfig } from '../../src/config/schema.js';
import type { Directory, DirectoryStatus, DirectoryUser, VerifyFailure, VerifyResult } from '../../src/core/directory.js';
import {
  PRINCIPAL_ATTRIBUTES,
  PasswordPolicyControl,
  accountExpired,
  adBindSubcode,
  adFailure,
  encodeSid,
  formatGuid,
  loginForms,
  parseSid,
  ppolicyFailure,
  siblingSid,
  sidString,
  type Sid,
} from './codec.js';
import { DirectoryUnavailableError, Servers, ServicePool, boundPages, boundSearch, errorText, isServerFailure } from './servers.js';

/**
 * Active Directory or OpenLDAP as the user source and first factor (see src/core/directory.ts).
 *
 * verify(): the service account (a pooled connection) finds the user by the login attributes;
 * exactly one entry or the answer is 'invalid'; then a connection of its own binds as that
 * entry's DN with the password. AD's bind sub-codes (data 52e/530/531/532/533/701/773/775) and
 * OpenLDAP's password policy control tell why a bind was refused. A login that finds nobody
 * costs a bind all the same (the service account's, on a connection of its own), so an unknown
 * name takes about as long as a wrong password. A password is never empty on the wire (an empty
 * simple bind is an anonymous one, which "succeeds"), and no server answering is 'unavailable',
 * never 'invalid'.
 *
 * Groups: AD asks for nested groups with the in-chain matching rule (one search per check, the
 * user's primary group and the groups that hold it included; the primary group's DN is cached
 * for 10 minutes). OpenLDAP takes the user's direct groups from memberOf (memberof overlay, read
 * live with the user) and their nesting from a group graph (every group's cn and memberOf, one
 * paged search, reused for groupCacheMs and read again at once when a user is in a group it
 * lacks): no search per check. Without the overlay it walks groupOfNames `member` upwards, one
 * search per level. users() reads the group graph afresh once per call and works out every
 * user's nested groups from it in memory: two paged searches in all, none per user.
 *
 * Every value put in a filter goes as a filter object (the value is an octet string on the
 * wire, never parsed), so no login can change a filter's meaning.
 */

export interface LdapDirectoryDeps {
  log?: Logger;
  /** Page size of users() (default 500). */
  pageSize?: number;
  /** How long a failing server is skipped while another answers (default 30 s). */
  retryAfterMs?: number;
  /** OpenLDAP: how long the group graph (nesting of groups) is reused by verify() and lookup() (default 60 s). */
  groupCacheMs?: number;
}

/** LDAP_MATCHING_RULE_IN_CHAIN: AD's transitive (nested) membership. */
const IN_CHAIN = '1.2.840.113556.1.4.1941';

const UF_ACCOUNTDISABLE = 0x2;
const UF_LOCKOUT = 0x10;
const UF_PASSWORD_EXPIRED = 0x80_0000;

/** Longest login looked up; longer ones are 'invalid' without asking. */
const MAX_LOGIN = 256;

interface Flavor {
  loginAttributes: string[];
  userFilter: string;
  groupFilter: string;
  userAttributes: string[];
  groupAttributes: string[];
  buffers: string[];
}

const FLAVORS: Record<'ad' | 'openldap', Flavor> = {
  ad: {
    loginAttributes: ['sAMAccountName', 'userPrincipalName', 'mail'],
    userFilter: '(&(objectCategory=person)(objectClass=user))',
    groupFilter: '(objectClass=group)',
    userAttributes: [
      'sAMAccountName',
      'userPrincipalName',
      'objectGUID',
      'objectSid',
      'primaryGroupID',
      'cn',
      'displayName',
      'mail',
      'userAccountControl',
      'msDS-User-Account-Control-Computed',
      'accountExpires',
      'pwdLastSet',
      'lockoutTime',
      'memberOf',
      'department',
      'title',
    ],
    groupAttributes: ['cn', 'sAMAccountName', 'memberOf', 'objectSid'],
    buffers: ['objectGUID', 'objectSid'],
  },
  openldap: {
    loginAttributes: ['uid', 'mail'],
    userFilter: '(|(objectClass=inetOrgPerson)(objectClass=posixAccount))',
    groupFilter: '(objectClass=groupOfNames)',
    userAttributes: ['uid', 'entryUUID', 'cn', 'displayName', 'mail', 'memberOf', 'title', 'departmentNumber', 'pwdAccountLockedTime', 'pwdReset'],
    groupAttributes: ['cn', 'memberOf'],
    buffers: [],
  },
};

/** An entry's attributes by lower-case name. */
class Attrs {
  private readonly m = new Map<string, Array<string | Buffer>>();
  constructor(readonly entry: Entry) {
    for (const [k, v] of Object.entries(entry)) {
      if (k === 'dn') continue;
      const list = (Array.isArray(v) ? v : [v]) as Array<string | Buffer>;
      this.m.set(k.toLowerCase(), [...(this.m.get(k.toLowerCase()) ?? []), ...list]);
    }
  }
  get dn(): string {
    return this.entry.dn;
  }
  strs(name: string): string[] {
    return (this.m.get(name.toLowerCase()) ?? []).map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v));
  }
  str(name: string): string | undefined {
    return this.strs(name)[0];
  }
  buf(name: string): Buffer | undefined {
    const v = this.m.get(name.toLowerCase())?.[0];
    return v === undefined ? undefined : Buffer.isBuffer(v) ? v : undefined;
  }
  int(name: string): number {
    const v = Number(this.str(name));
    return Number.isFinite(v) ? v : 0;
  }
}

const lower = (dn: string) => dn.toLowerCase();

/** cn of a DN's first RDN when it is cn=…, for a memberOf value not found by search. */
function cnOfDn(dn: string): string | undefined {
  const m = /^cn=((?:[^,\\]|\\.)*)/i.exec(dn);
  return m ? m[1]!.replace(/\\([0-9a-fA-F]{2}|.)/g, (_, x: string) => (x.length === 2 ? String.fromCharCode(parseInt(x, 16)) : x)) : undefined;
}

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

const or = (filters: Filter[]): Filter => (filters.length === 1 ? filters[0]! : new OrFilter({ filters }));
const and = (filters: Array<Filter | undefined>): Filter => new AndFilter({ filters: filters.filter((f): f is Filter => !!f) });
const eq = (attribute: string, value: string | Buffer) => new EqualityFilter({ attribute, value });
const inChain = (attribute: string, dn: string) => new ExtensibleFilter({ matchType: attribute, rule: IN_CHAIN, value: dn });

interface GroupNode {
  dn: string;
  cn: string;
  names: string[];
  parents: string[];
  sid?: string;
}

export default function createLdapDirectory(config: LdapDirectoryConfig, deps: LdapDirectoryDeps = {}): Directory {
  const log = deps.log;
  const flavor = FLAVORS[config.flavor];
  const isAd = config.flavor === 'ad';
  const loginAttributes = config.loginAttributes ?? flavor.loginAttributes;
  const pageSize = deps.pageSize ?? 500;
  const userClass = FilterParser.parseString(flavor.userFilter);
  const groupClass = FilterParser.parseString(flavor.groupFilter);
  // The configured extra filter is the administrator's, parsed once (a bad one fails here).
  const extraFilter = config.userFilter ? FilterParser.parseString(config.userFilter.trim().startsWith('(') ? config.userFilter : `(${config.userFilter})`) : undefined;
  const userBase = and([userClass, extraFilter]);

  const servers = new Servers({
    urls: config.urls,
    startTls: config.startTls,
    caFile: config.caFile,
    timeoutMs: config.timeoutMs,
    retryAfterMs: deps.retryAfterMs ?? 30_000,
    log,
    name: config.name,
  });
  const pool = new ServicePool(servers, config.bindDn, config.bindPassword, config.poolSize);

  const searchOpts = { scope: 'sub' as const, attributes: flavor.userAttributes, explicitBufferAttributes: flavor.buffers };

  /* ------------------------------------------------------------------ finding users */

  function loginFilter(login: string): Filter | undefined {
    const forms = loginForms(login, config.realms);
    const seen = new Set<string>();
    const filters: Filter[] = [];
    for (const attr of loginAttributes) {
      const value = PRINCIPAL_ATTRIBUTES.has(attr.toLowerCase()) ? forms.principal : forms.name;
      if (value === undefined || value === '') continue;
      const key = `${attr.toLowerCase()}\0${value}`;
      if (seen.has(key)) continue;
      seen.add(key);
      filters.push(eq(attr, value));
    }
    return filters.length ? and([userBase, or(filters)]) : undefined;
  }

  /** The entries a login matches (at most 2 asked for: more than one is as good as none). */
  async function findEntries(login: string): Promise<{ entries: Attrs[]; url?: string }> {
    // Control characters are in no login name; such a login is not sent anywhere.
    if (!login || login.length > MAX_LOGIN || /[\x00-\x1f\x7f]/.test(login)) return { entries: [] };
    const filter = loginFilter(login);
    if (!filter) return { entries: [] };
    return pool.run(async (conn) => {
      const r = await boundSearch(conn.client, config.baseDn, { ...searchOpts, filter, sizeLimit: 2 });
      return { entries: r.searchEntries.map((e) => new Attrs(e)), url: conn.url };
    });
  }

  /* ------------------------------------------------------------------- user records */

  function identity(a: Attrs): { login: string; id: string } | undefined {
    if (isAd) {
      const login = a.str('sAMAccountName');
      const guid = a.buf('objectGUID');
      if (!login || !guid || guid.length !== 16) return undefined;
      return { login, id: formatGuid(guid) };
    }
    const login = a.str('uid');
    const id = a.str('entryUUID');
    if (!login || !id) return undefined;
    return { login, id };
  }

  function state(a: Attrs): DirectoryUser['state'] {
    if (isAd) {
      const computed = a.strs('msDS-User-Account-Control-Computed').length ? a.int('msDS-User-Account-Control-Computed') : undefined;
      const uac = a.int('userAccountControl') | (computed ?? 0);
      if (uac & UF_ACCOUNTDISABLE) return 'disabled';
      if (accountExpired(a.str('accountExpires'))) return 'expired';
      // The lockout bit is kept in the computed attribute (with the lockout duration applied);
      // without it, lockoutTime > 0 is all there is.
      if (uac & UF_LOCKOUT || (computed === undefined && a.int('lockoutTime') > 0)) return 'locked';
      // Must change: pwdLastSet 0; an expired password is the same thing to the user.
      if (a.str('pwdLastSet') === '0' || uac & UF_PASSWORD_EXPIRED) return 'must_change_password';
      return 'active';
    }
    if (a.strs('pwdAccountLockedTime').length) return 'locked';
    if (a.str('pwdReset')?.toUpperCase() === 'TRUE') return 'must_change_password';
    return 'active';
  }

  function toUser(a: Attrs, groups: string[]): DirectoryUser | undefined {
    const who = identity(a);
    if (!who) return undefined;
    const attributes: Record<string, string | string[]> = { dn: a.dn };
    for (const name of isAd ? ['userPrincipalName', 'department', 'title'] : ['departmentNumber', 'title']) {
      const v = a.strs(name);
      if (v.length) attributes[name] = v.length === 1 ? v[0]! : v;
    }
    const displayName = a.str('displayName') ?? a.str('cn');
    const email = a.str('mail');
    return {
      login: who.login,
      id: who.id,
      ...(displayName ? { displayName } : {}),
      ...(email ? { email } : {}),
      groups: [...new Set(groups)].sort((x, y) => x.localeCompare(y)),
      attributes,
      state: state(a),
    };
  }

  /* ------------------------------------------------------------------------- groups */

  /** Primary groups by SID (found or not), for PRIMARY_TTL_MS: they are few and rarely change. */
  const primaryGroups = new Map<string, { group?: { dn: string; cn: string }; at: number }>();
  const PRIMARY_TTL_MS = 10 * 60_000;

  async function groupBySid(sid: Sid): Promise<{ dn: string; cn: string } | undefined> {
    const key = sidString(sid);
    const hit = primaryGroups.get(key);
    if (hit && Date.now() - hit.at < PRIMARY_TTL_MS) return hit.group;
    const r = await pool.run((conn) =>
      boundSearch(conn.client, config.baseDn, { scope: 'sub', filter: and([groupClass, eq('objectSid', encodeSid(sid))]), attributes: ['cn'], sizeLimit: 2 }),
    );
    const e = r.searchEntries.length === 1 ? new Attrs(r.searchEntries[0]!) : undefined;
    const cn = e?.str('cn');
    const group = e && cn ? { dn: e.dn, cn } : undefined;
    primaryGroups.set(key, { ...(group ? { group } : {}), at: Date.now() });
    return group;
  }

  async function adGroups(a: Attrs): Promise<string[]> {
    const sidBuf = a.buf('objectSid');
    const rid = a.int('primaryGroupID');
    let primary: { dn: string; cn: string } | undefined;
    if (sidBuf && rid) {
      try {
        primary = await groupBySid(siblingSid(parseSid(sidBuf), rid));
      } catch (err) {
        if (err instanceof DirectoryUnavailableError || isServerFailure(err)) throw err;
        log?.warn({ directory: config.name, dn: a.dn, err: errorText(err) }, 'ldap directory: primary group not resolved');
      }
    }
    const targets = [inChain('member', a.dn), ...(primary?.dn ? [inChain('member', primary.dn)] : [])];
    const r = await pool.run((conn) =>
      boundSearch(conn.client, config.baseDn, { scope: 'sub', filter: and([groupClass, or(targets)]), attributes: ['cn'] }),
    );
    const names = r.searchEntries.map((e) => new Attrs(e).str('cn')).filter((x): x is string => !!x);
    if (primary?.cn) names.push(primary.cn);
    return names;
  }

  /**
   * OpenLDAP: the user's memberOf (kept by the memberof overlay, read live with the user) and
   * the nesting above those groups from the group graph (cached, see graphFor). A user without
   * memberOf (no overlay, or in no group) gets the groupOfNames walk instead.
   */
  async function openldapGroups(a: Attrs): Promise<string[]> {
    const direct = a.strs('memberOf').map(lower);
    if (direct.length) memberOfSeen = true;
    // No memberOf: in no group where the overlay runs (seen it once), else walk the groups.
    else return memberOfSeen ? [] : memberWalk(a.dn);
    const graph = await graphFor(direct);
    const names = closure(graph, direct);
    // A group too new for the graph even after a reload: its name from its DN, no nesting.
    for (const dn of direct) if (!graph.has(dn)) names.push(cnOfDn(dn) ?? dn);
    return names;
  }

  /** Whether any entry read so far had memberOf (the memberof overlay runs). */
  let memberOfSeen = false;

  /** groupOfNames upwards from `dn`, one search per level (≤ 32 levels, loops ignored). */
  async function memberWalk(userDn: string): Promise<string[]> {
    const seen = new Map<string, string>();
    let frontier = [userDn];
    for (let depth = 0; depth < 32 && frontier.length; depth++) {
      const next: string[] = [];
      for (const part of chunks(frontier, 100)) {
        const r = await pool.run((conn) =>
          boundSearch(conn.client, config.baseDn, { scope: 'sub', filter: and([groupClass, or(part.map((dn) => eq('member', dn)))]), attributes: ['cn'] }),
        );
        for (const e of r.searchEntries) {
          const g = new Attrs(e);
          if (seen.has(lower(g.dn))) continue;
          seen.set(lower(g.dn), g.str('cn') ?? cnOfDn(g.dn) ?? g.dn);
          next.push(g.dn);
        }
      }
      frontier = next;
    }
    return [...seen.values()];
  }

  /**
   * The group graph (every group's cn and parents), shared by verify() and lookup() for
   * groupCacheMs (60 s): it is read again in the background when older, and at once when a
   * user is in a group it does not have yet. Direct memberships are always live (the user's
   * memberOf); only changes to group-in-group nesting may take up to groupCacheMs to show.
   */
  const GRAPH_TTL_MS = deps.groupCacheMs ?? 60_000;
  interface GraphEntry {
    at: number;
    value: Promise<Map<string, GroupNode>>;
    settled?: Map<string, GroupNode>;
    /** Group DNs that a fresh read did not have either (another group class): no more reloads for them. */
    unknown: Set<string>;
  }
  let graph: GraphEntry | undefined;

  function loadGraph(): GraphEntry {
    const entry: GraphEntry = { at: Date.now(), value: pool.run((conn) => groupGraph(conn.client)), unknown: new Set() };
    const previous = graph;
    graph = entry;
    entry.value.then(
      (g) => (entry.settled = g),
      () => {
        // A failed read is not kept: the previous graph (if any) stays in use.
        if (graph === entry) graph = previous?.settled ? previous : undefined;
      },
    );
    return entry;
  }

  async function graphFor(direct: string[]): Promise<Map<string, GroupNode>> {
    let entry = graph ?? loadGraph();
    let current = entry.settled ?? (await entry.value);
    const missing = direct.filter((dn) => !current.has(dn) && !entry.unknown.has(dn));
    if (missing.length) {
      // A group newer than the graph: read it again now (once per such group).
      if (graph === entry) loadGraph();
      entry = graph!;
      current = await entry.value;
      for (const dn of missing) if (!current.has(dn)) entry.unknown.add(dn);
    } else if (Date.now() - entry.at >= GRAPH_TTL_MS && graph === entry) {
      // Stale: read it again in the background, answer from the one we have.
      loadGraph().value.catch(() => {});
    }
    return current;
  }

  const groupsOf = (a: Attrs) => (isAd ? adGroups(a) : openldapGroups(a));

  /** Every group (paged), with parents from memberOf: users() works nesting out from it. */
  async function groupGraph(client: import('ldapts').Client): Promise<Map<string, GroupNode>> {
    const graph = new Map<string, GroupNode>();
    for await (const page of boundPages(client, config.baseDn, {
      scope: 'sub',
      filter: groupClass,
      attributes: flavor.groupAttributes,
      explicitBufferAttributes: flavor.buffers,
      paged: { pageSize },
    })) {
      for (const e of page.searchEntries) {
        const g = new Attrs(e);
        const cn = g.str('cn') ?? cnOfDn(g.dn) ?? g.dn;
        const sid = g.buf('objectSid');
        let sidText: string | undefined;
        try {
          sidText = sid ? sidString(parseSid(sid)) : undefined;
        } catch {
          sidText = undefined;
        }
        const parents = g.strs('memberOf').map(lower);
        if (parents.length) memberOfSeen = true;
        graph.set(lower(g.dn), {
          dn: g.dn,
          cn,
          names: [cn, ...g.strs('sAMAccountName')].map((n) => n.toLowerCase()),
          parents,
          ...(sidText ? { sid: sidText } : {}),
        });
      }
    }
    return graph;
  }

  /** cn of every group reachable upwards from `start` (DNs, lower case). */
  function closure(graph: Map<string, GroupNode>, start: string[]): string[] {
    const seen = new Set<string>();
    const stack = [...start];
    const names: string[] = [];
    while (stack.length) {
      const dn = stack.pop()!;
      if (seen.has(dn)) continue;
      seen.add(dn);
      const g = graph.get(dn);
      if (!g) continue;
      names.push(g.cn);
      stack.push(...g.parents);
    }
    return names;
  }

  /* ------------------------------------------------------------------------ the API */

  const unavailable = (err: unknown): VerifyResult => {
    const detail = errorText(err);
    if (!(err instanceof DirectoryUnavailableError)) log?.warn({ directory: config.name, err: detail }, 'ldap directory: request failed');
    return { ok: false, reason: 'unavailable', detail };
  };

  /** A bind that costs what a user's does, for logins that match nobody (its outcome is ignored). */
  async function decoyBind(prefer?: string): Promise<void> {
    try {
      const conn = await servers.bound(config.bindDn, config.bindPassword, { prefer });
      servers.destroy(conn.client);
    } catch {
      // Only the time it took matters.
    }
  }

  return {
    name: config.name,
    realms: config.realms,

    async verify(login, password): Promise<VerifyResult> {
      // An empty simple bind is an anonymous bind, which succeeds: never send one.
      if (typeof password !== 'string' || password.length === 0) return { ok: false, reason: 'invalid' };
      if (typeof login !== 'string') return { ok: false, reason: 'invalid' };
      let found: { entries: Attrs[]; url?: string };
      try {
        found = await findEntries(login);
      } catch (err) {
        return unavailable(err);
      }
      const entry = found.entries.length === 1 ? found.entries[0]! : undefined;
      if (!entry || !identity(entry)) {
        if (entry) log?.warn({ directory: config.name, dn: entry.dn }, 'ldap directory: entry lacks the login or id attribute');
        await decoyBind(found.url);
        return { ok: false, reason: 'invalid' };
      }

      const ppolicy = isAd ? undefined : new PasswordPolicyControl();
      try {
        const conn = await servers.bound(entry.dn, password, { user: true, prefer: found.url, ...(ppolicy ? { controls: [ppolicy] } : {}) });
        servers.destroy(conn.client);
      } catch (err) {
        if (err instanceof DirectoryUnavailableError) return unavailable(err);
        if (err instanceof ResultCodeError && err.code === 49) {
          const reason: VerifyFailure = isAd ? adFailure(adBindSubcode(err.message)) : (ppolicyFailure(ppolicy?.error) ?? 'invalid');
          return { ok: false, reason };
        }
        log?.warn({ directory: config.name, dn: entry.dn, err: errorText(err) }, 'ldap directory: user bind refused');
        // inappropriateAuthentication (an entry without a password), insufficientAccess: this
        // user cannot sign in with a password. Anything else (unwillingToPerform, other,
        // operationsError…) is the directory not judging the password: never "wrong password".
        if (err instanceof ResultCodeError && [48, 50].includes(err.code)) return { ok: false, reason: 'invalid', detail: errorText(err) };
        return { ok: false, reason: 'unavailable', detail: errorText(err) };
      }
      // OpenLDAP lets a reset password bind, and says it must be changed first.
      const after = ppolicyFailure(ppolicy?.error);
      if (after) return { ok: false, reason: after };

      try {
        const user = toUser(entry, await groupsOf(entry));
        if (!user) return { ok: false, reason: 'invalid' };
        return { ok: true, user };
      } catch (err) {
        return unavailable(err);
      }
    },

    async identify(login) {
      const found = await findEntries(login);
      const entry = found.entries.length === 1 ? found.entries[0]! : undefined;
      return (entry && identity(entry)?.login) || null;
    },
    async lookup(login) {
      const found = await findEntries(login);
      const entry = found.entries.length === 1 ? found.entries[0]! : undefined;
      if (!entry || !identity(entry)) return null;
      return toUser(entry, await groupsOf(entry)) ?? null;
    },

    async *users(opts = {}) {
      const conn = await servers.bound(config.bindDn, config.bindPassword);
      try {
        const graph = await groupGraph(conn.client);
        let filter = userBase;
        if (opts.group !== undefined) {
          const name = opts.group.toLowerCase();
          const targets = [...graph.values()].filter((g) => g.names.includes(name));
          if (!targets.length) return;
          // The groups inside the targets, any depth (for OpenLDAP's memberOf and AD's primary groups).
          const children = new Map<string, string[]>();
          for (const [dn, g] of graph) for (const p of g.parents) children.set(p, [...(children.get(p) ?? []), dn]);
          const inside = new Set<string>();
          const stack = targets.map((t) => lower(t.dn));
          while (stack.length) {
            const dn = stack.pop()!;
            if (inside.has(dn)) continue;
            inside.add(dn);
            stack.push(...(children.get(dn) ?? []));
          }
          const nested = [...inside].map((dn) => graph.get(dn)!).filter(Boolean);
          const members: Filter[] = isAd
            ? [
                ...targets.map((t) => inChain('memberOf', t.dn)),
                ...nested.flatMap((g) => (g.sid ? [eq('primaryGroupID', g.sid.slice(g.sid.lastIndexOf('-') + 1))] : [])),
              ]
            : nested.map((g) => eq('memberOf', g.dn));
          filter = and([userBase, or(members)]);
        }
        const bySid = new Map([...graph.values()].filter((g) => g.sid).map((g) => [g.sid!, lower(g.dn)]));
        for await (const page of boundPages(conn.client, config.baseDn, { ...searchOpts, filter, paged: { pageSize } })) {
          for (const e of page.searchEntries) {
            const a = new Attrs(e);
            const start = a.strs('memberOf').map(lower);
            const sid = a.buf('objectSid');
            const rid = a.int('primaryGroupID');
            if (isAd && sid && rid) {
              try {
                const dn = bySid.get(sidString(siblingSid(parseSid(sid), rid)));
                if (dn) start.push(dn);
              } catch {
                // A SID we cannot read: no primary group.
              }
            }
            const user = toUser(a, closure(graph, start));
            if (user) yield user;
          }
        }
      } catch (err) {
        if (err instanceof DirectoryUnavailableError) throw err;
        throw new DirectoryUnavailableError(`listing users failed on ${conn.url}: ${errorText(err)}`, { cause: err });
      } finally {
        servers.destroy(conn.client);
      }
    },

    async status(): Promise<DirectoryStatus> {
      const errors: string[] = [];
      for (const url of servers.urls) {
        try {
          const client = await servers.connect(url);
          try {
            await client.bind(config.bindDn, config.bindPassword);
          } finally {
            servers.destroy(client);
          }
          servers.markUp(url);
          return { reachable: true, detail: errors.length ? `${url} (${errors.join('; ')})` : url };
        } catch (err) {
          errors.push(`${url}: ${errorText(err)}`);
          if (isServerFailure(err)) servers.markDown(url, err);
        }
      }
      return { reachable: false, detail: errors.join('; ') };
    },

    async close() {
      await pool.close();
      await servers.closeAll();
    },
  };
}

export { DirectoryUnavailableError } from './servers.js';
export { formatGuid, parseSid, sidString } from './codec.js';
