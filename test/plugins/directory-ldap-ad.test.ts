import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Client } from 'ldapts';
import createLdapDirectory, { formatGuid } from '../../plugins/directory-ldap/index.js';
import { ldapDirectorySchema } from '../../src/config/schema.js';
import type { Directory, DirectoryUser } from '../../src/core/directory.js';
import { requirePeer } from '../helpers/peers.js';
import { sambaAvailable, startSambaDomain, type SambaDomain } from '../helpers/samba.js';

const PW = {
  alice: 'Alice-Passw0rd!',
  bob: 'Bob-Passw0rd!',
  carol: 'Carol-Passw0rd!',
  dave: 'Dave-Passw0rd!',
  erin: 'Erin-Passw0rd!',
  frank: 'Frank-Passw0rd!',
  gina: 'Gina-Passw0rd!',
  hank: 'Hank-Passw0rd!',
  ivan: 'Ivan-Passw0rd!',
};

describe('directory-ldap against Active Directory (Samba AD DC)', { concurrency: false }, () => {
  let ad: SambaDomain | undefined;
  const dirs: Directory[] = [];

  const directory = (over: Record<string, unknown> = {}) => {
    const d = createLdapDirectory(
      ldapDirectorySchema.parse({
        name: 'corp',
        kind: 'ldap',
        flavor: 'ad',
        realms: ['corp.example.org', 'CORP'],
        urls: [ad!.ldapsUrl],
        caFile: ad!.caFile,
        bindDn: ad!.bindDn,
        bindPassword: ad!.bindPassword,
        baseDn: ad!.baseDn,
        timeoutMs: 5000,
        poolSize: 2,
        ...over,
      }),
    );
    dirs.push(d);
    return d;
  };

  const ready = (t: TestContext) => requirePeer(t, sambaAvailable(), 'a Samba AD DC (samba, samba-dsdb-modules, samba-vfs-modules, ldap-utils, root)') && !!ad;

  before(async () => {
    if (!sambaAvailable()) return;
    ad = await startSambaDomain({ timeoutMs: 90_000 });
    await ad.createUser('alice', PW.alice, { givenName: 'Alice', surname: 'Liddell', mail: 'alice@example.org' });
    for (const name of ['bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivan'] as const) await ad.createUser(name, PW[name]);
    for (const g of ['staff', 'engineering', 'admins', 'vpn-users', 'remote', 'ops']) await ad.createGroup(g);
    await ad.addMembers('staff', ['alice', 'bob']);
    await ad.addMembers('engineering', ['staff', 'carol']);
    await ad.addMembers('admins', ['engineering']);
    await ad.addMembers('remote', ['vpn-users']);
    await ad.addMembers('ops', ['ivan']);
    await ad.setPrimaryGroup('carol', 'vpn-users');
    await ad.disable('dave');
    await ad.mustChangePassword('erin');
    await ad.expirePassword('frank');
    await ad.expireAccount('gina');
    await ad.lock('hank');
  });

  after(async () => {
    await Promise.all(dirs.map((d) => d.close().catch(() => {})));
    await ad?.stop();
  });

  const objectGuid = async (name: string): Promise<string> => {
    const c = new Client({ url: ad!.ldapsUrl, tlsOptions: { ca: (await import('node:fs')).readFileSync(ad!.caFile) } });
    try {
      await c.bind(ad!.bindDn, ad!.bindPassword);
      const r = await c.search(ad!.baseDn, { filter: `(sAMAccountName=${name})`, attributes: ['objectGUID'], explicitBufferAttributes: ['objectGUID'] });
      return formatGuid(r.searchEntries[0]!.objectGUID as Buffer);
    } finally {
      await c.unbind();
    }
  };

  test('sAMAccountName, userPrincipalName and CORP\\user logins give one user: objectGUID as id', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const r = await d.verify('alice', PW.alice);
    assert.ok(r.ok, JSON.stringify(r));
    const u = r.user;
    assert.equal(u.login, 'alice');
    assert.equal(u.id, await objectGuid('alice'));
    assert.match(u.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(u.email, 'alice@example.org');
    assert.equal(u.state, 'active');
    assert.equal(u.attributes?.userPrincipalName, 'alice@corp.example.org');
    assert.match(String(u.attributes?.dn), /^CN=alice,CN=Users,DC=corp,DC=example,DC=org$/i);
    for (const login of ['alice@corp.example.org', 'CORP\\alice', 'corp\\ALICE', 'alice@example.org']) {
      const again = await d.verify(login, PW.alice);
      assert.ok(again.ok, `${login}: ${JSON.stringify(again)}`);
      assert.equal(again.user.id, u.id, login);
      assert.equal(again.user.login, 'alice', login);
    }
    assert.deepEqual(await d.verify('alice', 'Wrong-Passw0rd!'), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('nobody', 'Wrong-Passw0rd!'), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('alice', ''), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('alic*', PW.alice), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.verify('*)(sAMAccountName=alice', PW.alice), { ok: false, reason: 'invalid' });
    assert.deepEqual(await d.lookup('alice'), u);
  });

  test('nested groups and the primary group', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const alice = await d.lookup('alice');
    // staff directly, engineering and admins nested; Domain Users is the primary group.
    for (const g of ['staff', 'engineering', 'admins', 'Domain Users']) assert.ok(alice!.groups.includes(g), `alice in ${g}: ${alice!.groups}`);
    for (const g of ['vpn-users', 'remote', 'ops']) assert.ok(!alice!.groups.includes(g), `alice not in ${g}`);

    // carol's primary group is vpn-users (no member link), which is itself in remote.
    const carol = await d.verify('carol', PW.carol);
    assert.ok(carol.ok, JSON.stringify(carol));
    for (const g of ['vpn-users', 'remote', 'engineering', 'admins']) assert.ok(carol.user.groups.includes(g), `carol in ${g}: ${carol.user.groups}`);
    assert.ok(!carol.user.groups.includes('staff'));
  });

  test('account states, each with the right password; a wrong one stays "invalid"', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const cases: Array<[keyof typeof PW, string, DirectoryUser['state']]> = [
      ['dave', 'account_disabled', 'disabled'],
      ['erin', 'must_change_password', 'must_change_password'],
      ['frank', 'password_expired', 'must_change_password'],
      ['gina', 'account_expired', 'expired'],
      ['hank', 'account_locked', 'locked'],
    ];
    for (const [name, reason, state] of cases) {
      const r = await d.verify(name, PW[name]);
      assert.deepEqual(r, { ok: false, reason }, name);
      assert.equal((await d.lookup(name))?.state, state, `${name}'s state`);
    }
    // A wrong password for the disabled, must-change and expired accounts says nothing more.
    for (const name of ['dave', 'erin', 'frank', 'gina'] as const) {
      assert.deepEqual(await d.verify(name, 'Wrong-Passw0rd!'), { ok: false, reason: 'invalid' }, name);
    }
  });

  test('objectGUID stays the id across a rename', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const before = await d.verify('ivan', PW.ivan);
    assert.ok(before.ok, JSON.stringify(before));
    await ad!.rename('ivan', 'ivan2');
    const after = await d.verify('ivan2', PW.ivan);
    assert.ok(after.ok, JSON.stringify(after));
    assert.equal(after.user.id, before.user.id);
    assert.equal(after.user.login, 'ivan2');
    assert.deepEqual(after.user.groups.filter((g) => g === 'ops'), ['ops']);
    assert.deepEqual(await d.verify('ivan', PW.ivan), { ok: false, reason: 'invalid' });
  });

  test('LDAPS with the CA, StartTLS with the CA, and no CA: "unavailable"', async (t) => {
    if (!ready(t)) return;
    assert.ok((await directory().verify('bob', PW.bob)).ok);
    const startTls = directory({ urls: [ad!.ldapUrl], startTls: true });
    const r = await startTls.verify('bob', PW.bob);
    assert.ok(r.ok, JSON.stringify(r));
    const noCa = directory({ caFile: undefined });
    const u = await noCa.verify('bob', PW.bob);
    assert.equal(!u.ok && u.reason, 'unavailable');
    assert.equal((await startTls.status()).reachable, true);
  });

  test('users(): a group\'s nested members, primary-group members included', async (t) => {
    if (!ready(t)) return;
    const d = directory();
    const names = async (group?: string) => {
      const out: string[] = [];
      for await (const u of d.users(group === undefined ? {} : { group })) out.push(u.login);
      return out.sort();
    };
    assert.deepEqual(await names('engineering'), ['alice', 'bob', 'carol']);
    assert.deepEqual(await names('admins'), ['alice', 'bob', 'carol']);
    assert.deepEqual(await names('remote'), ['carol']);
    assert.deepEqual(await names('vpn-users'), ['carol']);
    assert.deepEqual(await names('no-such-group'), []);
    const all: DirectoryUser[] = [];
    for await (const u of d.users()) all.push(u);
    const alice = all.find((u) => u.login === 'alice');
    assert.ok(alice, all.map((u) => u.login).join());
    assert.deepEqual(alice, await d.lookup('alice'));
    assert.ok(all.some((u) => u.login === 'svc-countersign'));
  });

  test('a hung DC is "unavailable" within about timeoutMs; it works again after', async (t) => {
    if (!ready(t)) return;
    const timeoutMs = 1500;
    const d = directory({ timeoutMs });
    assert.ok((await d.verify('bob', PW.bob)).ok);
    await ad!.pause('freeze');
    try {
      const t0 = Date.now();
      const r = await d.verify('bob', PW.bob);
      assert.equal(!r.ok && r.reason, 'unavailable');
      // The pooled connection's search times out once; the same hung server is not waited on again.
      assert.ok(Date.now() - t0 < timeoutMs + 2500, `took ${Date.now() - t0} ms`);
    } finally {
      await ad!.resume();
    }
    const back = await d.verify('bob', PW.bob);
    assert.ok(back.ok, JSON.stringify(back));
  });
});
