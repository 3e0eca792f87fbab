import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Client } from 'ldapts';
import createLdapDirectory, { DirectoryUnavailableError } from '../../plugins/directory-ldap/index.js';
import { ldapDirectorySchema } from '../../src/config/schema.js';
import type { Directory, DirectoryUser } from '../../src/core/directory.js';
import { requirePeer } from '../helpers/peers.js';
import { freePort } from '../helpers/processes.js';
import { BULK_PASSWORD, ODD_UID, setAttribute, slapdAvailable, startSlapd, type Slapd } from '../helpers/slapd.js';

const BULK = 1200;

/** A TCP server that accepts and never answers: a hung directory. */
async function blackHole(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  return {
    url: `ldap://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

describe('directory-ldap against OpenLDAP (slapd)', { concurrency: false }, () => {
  let slapd: Slapd | undefined;
  const dirs: Directory[] = [];
  const user = (uid: string) => slapd!.users.find((u) => u.uid === uid)!;

  const directory = (over: Record<string, unknown> = {}, deps: Parameters<typeof createLdapDirectory>[1] = {}) => {
    const d = createLdapDirectory(
      ldapDirectorySchema.parse({
        name: 'openldap',
        kind: 'ldap',
        flavor: 'openldap',
        realms: ['example.org', 'EXAMPLE'],
        urls: [slapd!.url],
        bindDn: slapd!.bindDn,
        bindPassword: slapd!.bindPassword,
        baseDn: slapd!.baseDn,
        timeoutMs: 2000,
        poolSize: 2,
        ...over,
      }),
      deps,
    );
    dirs.push(d);
    return d;
  };

  const ready = (t: TestContext) => requirePeer(t, slapdAvailable(), 'slapd (Debian package slapd) and openssl') && !!slapd;

  before(async () => {
    if (!slapdAvailable()) return;
    slapd = await startSlapd({ tls: true, bulkUsers: BULK });
  });

  after(async () => {
    await Promise.all(dirs.map((d) => d.close().catch(() => {})));
    await slapd?.destroy();
  });

  /** entryUUID as slapd has it, read as the service account. */
  const entryUUID = async (dn: string): Promise<string> => {
    const c = new Client({ url: slapd!.url });
    try {
      await c.bind(slapd!.bindDn, slapd!.bindPassword);
      const r = await c.search(dn, { scope: 'base', attributes: ['entryUUID'] });
      return String(r.searchEntries[0]!.entryUUID);
    } finally {
      await c.unbind();
    }
  };

  test('a good password gives the user: uid, entryUUID as id, nested groups, mail', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const alice = user('alice');
    const r = await d.verify('alice', alice.password);
    assert.ok(r.ok, JSON.stringify(r));
    const u = r.user;
    assert.equal(u.login, 'alice');
    assert.equal(u.id, await entryUUID(alice.dn));
    assert.match(u.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(u.email, 'alice@example.org');
    assert.equal(u.displayName, 'Alice Liddell');
    // staff directly, engineering through staff, admins through engineering.
    assert.deepEqual(u.groups, ['admins', 'engineering', 'staff']);
    assert.equal(u.state, 'active');
    assert.equal(u.attributes?.dn, alice.dn);
    assert.equal(u.attributes?.title, 'Tester');

    const carol = await d.verify('carol', user('carol').password);
    assert.ok(carol.ok);
    assert.deepEqual(carol.user.groups, ['admins', 'engineering']);

    // The same user by mail, by user@realm and by REALM\user.
    for (const login of ['alice@example.org', 'EXAMPLE\\alice', 'example\\alice', 'ALICE']) {
      const again = await d.verify(login, alice.password);
      assert.ok(again.ok, `${login}: ${JSON.stringify(again)}`);
      assert.equal(again.user.id, u.id, login);
      assert.equal(again.user.login, 'alice', login);
    }
    // A NetBIOS prefix that is not one of the realms matches nobody.
    assert.deepEqual(await d.verify('OTHER\\alice', alice.password), { ok: false, reason: 'invalid' });

    const looked = await d.lookup('alice');
    assert.deepEqual(looked, u);
    assert.equal(await d.lookup('nobody'), null);
  });

  test('a group made a moment ago shows at once, with its nesting', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const alice = user('alice');
    assert.ok((await d.verify('alice', alice.password)).ok); // the group graph is read now
    const admin = await slapd!.admin();
    const fresh = `cn=fresh,ou=groups,${slapd!.baseDn}`;
    const outer = `cn=outer,ou=groups,${slapd!.baseDn}`;
    try {
      await admin.add(fresh, { objectClass: 'groupOfNames', cn: 'fresh', member: [alice.dn] });
      await admin.add(outer, { objectClass: 'groupOfNames', cn: 'outer', member: [fresh] });
      const r = await d.verify('alice', alice.password);
      assert.ok(r.ok, JSON.stringify(r));
      assert.deepEqual(r.user.groups, ['admins', 'engineering', 'fresh', 'outer', 'staff']);
    } finally {
      await admin.del(outer).catch(() => {});
      await admin.del(fresh).catch(() => {});
      await admin.unbind();
    }
    const after = await d.lookup('alice');
    assert.deepEqual(after?.groups, ['admins', 'engineering', 'staff']);
  });

  test('wrong password, unknown user and empty password are all "invalid"; an empty password is never sent', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const alice = user('alice');
    assert.deepEqual(await d.verify('alice', 'wrong-password'), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('nobody', 'whatever'), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('', alice.password), { ok: false, reason: 'invalid' });

    // slapd logs every BIND (loglevel stats): none as alice for an empty password.
    await d.verify('alice', alice.password); // warm: the pool is bound
    const aliceBinds = slapd!.binds(alice.dn);
    const serviceBinds = slapd!.binds(slapd!.bindDn);
    assert.deepEqual(await d.verify('alice', ''), { ok: false, reason: 'invalid' });
    await new Promise((r) => setTimeout(r, 200)); // slapd's log reaches us through a pipe
    assert.equal(slapd!.binds(alice.dn), aliceBinds, 'no bind as alice for an empty password');
    assert.equal(slapd!.binds(slapd!.bindDn), serviceBinds, 'not even a search for an empty password');

    // An unknown login costs a bind like a wrong password does (the service account's, on a new connection).
    const before = slapd!.binds(slapd!.bindDn);
    assert.deepEqual(await d.verify('nobody-at-all', 'whatever'), { ok: false, reason: 'invalid' });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(slapd!.binds(slapd!.bindDn), before + 1, 'one decoy bind for an unknown login');
  });

  test('filter metacharacters and NUL in a login never match another user', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const alice = user('alice');
    await d.verify('alice', alice.password);
    const aliceBinds = slapd!.binds(alice.dn);
    const logins = ['*', 'alic*', 'al*ce', '*lice', '(', ')', '\\', '\\2a', 'alice\0', 'alice\0*', '*)(uid=*', '*)(|(uid=*', 'alice)(uid=alice', 'alice)(|(uid=*)', '*)(objectClass=*', 'alice*)(mail=*'];
    for (const login of logins) {
      assert.deepEqual(await d.verify(login, alice.password), { ok: false, reason: 'invalid' }, JSON.stringify(login));
      assert.equal(await d.lookup(login), null, JSON.stringify(login));
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(slapd!.binds(alice.dn), aliceBinds, 'no login above ever reached a bind as alice');

    // Escaped, not refused: a uid made of metacharacters is found by exactly itself.
    const odd = user(ODD_UID);
    const r = await d.verify(ODD_UID, odd.password);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.user.login, ODD_UID);
    assert.deepEqual(r.user.groups, ['ops']);
    assert.equal((await d.lookup(ODD_UID))?.login, ODD_UID);
    assert.equal(await d.lookup('o(b*'), null);
  });

  test('password policy: locked, must change after reset, expired (each with the right password)', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    await setAttribute(slapd!, user('locked').dn, 'pwdAccountLockedTime', ['000001010000Z']);
    await setAttribute(slapd!, user('reset').dn, 'pwdReset', ['TRUE']);
    assert.deepEqual(await d.verify('locked', user('locked').password), { ok: false, reason: 'account_locked' });
    assert.deepEqual(await d.verify('reset', user('reset').password), { ok: false, reason: 'must_change_password' });
    assert.deepEqual(await d.verify('expired', user('expired').password), { ok: false, reason: 'password_expired' });
    assert.equal((await d.lookup('locked'))?.state, 'locked');
    assert.equal((await d.lookup('reset'))?.state, 'must_change_password');
    await setAttribute(slapd!, user('locked').dn, 'pwdAccountLockedTime', null);
    const back = await d.verify('locked', user('locked').password);
    assert.ok(back.ok, JSON.stringify(back));
  });

  test('failover: a dead first URL, the real server second', async (t) => {
    if (!ready(t)) return;
    const dead = `ldap://127.0.0.1:${await freePort()}`;
    const d = directory({ urls: [dead, slapd!.url] });
    const r = await d.verify('alice', user('alice').password);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(await d.verify('bob', 'wrong'), { ok: false, reason: 'invalid' });
    const s = await d.status();
    assert.equal(s.reachable, true);
    assert.match(s.detail ?? '', new RegExp(`${slapd!.url.replace(/[.]/g, '\\.')}`));
    assert.match(s.detail ?? '', /ECONNREFUSED/);
    // Sixteen at once through a pool of two connections.
    const many = await Promise.all(Array.from({ length: 16 }, (_, i) => d.verify(i % 2 ? 'alice' : 'bob', user(i % 2 ? 'alice' : 'bob').password)));
    assert.ok(many.every((x) => x.ok));
  });

  test('every URL dead or hung: "unavailable" (never "invalid") within about timeoutMs', async (t) => {
    if (!ready(t)) return;
    const hole = await blackHole();
    try {
      const dead = `ldap://127.0.0.1:${await freePort()}`;
      const timeoutMs = 1000;
      const d = directory({ urls: [dead, hole.url], timeoutMs });
      const t0 = Date.now();
      const r = await d.verify('alice', user('alice').password);
      const took = Date.now() - t0;
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, 'unavailable');
      assert.ok(took < timeoutMs + 2500, `took ${took} ms`);
      // Both are now being skipped: the next check tries one of them, not both.
      const t1 = Date.now();
      const again = await d.verify('alice', 'wrong');
      assert.equal(!again.ok && again.reason, 'unavailable');
      assert.ok(Date.now() - t1 < timeoutMs + 2500, `second took ${Date.now() - t1} ms`);
      await assert.rejects(d.lookup('alice'), DirectoryUnavailableError);
      const s = await d.status();
      assert.equal(s.reachable, false);
      assert.match(s.detail ?? '', /ECONNREFUSED/);
      assert.match(s.detail ?? '', /timed out/i);

      const refused = directory({ urls: [dead, `ldap://127.0.0.1:${await freePort()}`] });
      assert.equal(((await refused.verify('alice', user('alice').password)) as { reason: string }).reason, 'unavailable');
    } finally {
      await hole.close();
    }
  });

  test('LDAPS and StartTLS with the CA; an untrusted certificate is "unavailable"', async (t) => {
    if (!ready(t)) return;
    const ldaps = directory({ urls: [slapd!.ldapsUrl], caFile: slapd!.caFile });
    const r = await ldaps.verify('alice', user('alice').password);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(await ldaps.verify('alice', 'wrong'), { ok: false, reason: 'invalid' });

    const startTls = directory({ urls: [slapd!.url], startTls: true, caFile: slapd!.caFile });
    const s = await startTls.verify('bob', user('bob').password);
    assert.ok(s.ok, JSON.stringify(s));
    assert.deepEqual(s.user.groups, ['admins', 'engineering', 'staff']);

    const untrusted = directory({ urls: [slapd!.ldapsUrl] });
    const u = await untrusted.verify('alice', user('alice').password);
    assert.equal(!u.ok && u.reason, 'unavailable');
    const untrustedStartTls = directory({ urls: [slapd!.url], startTls: true });
    const v = await untrustedStartTls.verify('alice', user('alice').password);
    assert.equal(!v.ok && v.reason, 'unavailable');
  });

  test('users(): paged past the server size limit; by group with nesting', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    // The service account may not read more than 500 entries without paging.
    const c = new Client({ url: slapd!.url });
    await c.bind(slapd!.bindDn, slapd!.bindPassword);
    await assert.rejects(c.search(slapd!.baseDn, { filter: '(objectClass=inetOrgPerson)', attributes: ['uid'] }), /SizeLimit/);
    await c.unbind();

    const all: DirectoryUser[] = [];
    for await (const u of d.users()) all.push(u);
    assert.equal(all.length, slapd!.users.length + BULK);
    assert.equal(new Set(all.map((u) => u.id)).size, all.length);
    const alice = all.find((u) => u.login === 'alice')!;
    assert.deepEqual(alice.groups, ['admins', 'engineering', 'staff']);
    assert.ok(all.find((u) => u.login === 'user0777')?.email === 'user0777@example.org');

    const names = async (group: string) => {
      const out: string[] = [];
      for await (const u of d.users({ group })) out.push(u.login);
      return out.sort();
    };
    assert.deepEqual(await names('engineering'), ['alice', 'bob', 'carol']);
    assert.deepEqual(await names('ADMINS'), ['alice', 'bob', 'carol']);
    assert.deepEqual(await names('staff'), ['alice', 'bob']);
    assert.deepEqual(await names('ops'), [ODD_UID]);
    assert.deepEqual(await names('no-such-group'), []);

    // A bulk user's password works too (same hash scheme as the fixture).
    assert.ok((await d.verify('user1200', BULK_PASSWORD)).ok);
  });

  test('server stopped mid-way: "unavailable", then works again without a new plugin', async (t) => {
    if (!ready(t)) return;
    const d = directory({ timeoutMs: 1000 });
    const alice = user('alice');
    assert.ok((await d.verify('alice', alice.password)).ok);
    await slapd!.stop();
    try {
      const down = await d.verify('alice', alice.password);
      assert.equal(!down.ok && down.reason, 'unavailable');
      assert.equal((await d.status()).reachable, false);
      await assert.rejects(d.lookup('alice'), DirectoryUnavailableError);
      await assert.rejects(async () => {
        for await (const u of d.users()) void u;
      }, DirectoryUnavailableError);
    } finally {
      await slapd!.start();
    }
    const back = await d.verify('alice', alice.password);
    assert.ok(back.ok, JSON.stringify(back));
    assert.equal((await d.status()).reachable, true);
  });

  test('close() ends every connection; later checks are "unavailable"', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    assert.ok((await d.verify('alice', user('alice').password)).ok);
    await d.close();
    const r = await d.verify('alice', user('alice').password);
    assert.equal(!r.ok && r.reason, 'unavailable');
  });
});
