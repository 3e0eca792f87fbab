/**
 * The Samba AD DC harness itself (test/helpers/samba.ts), checked with the
 * OpenLDAP command-line tools against the real domain controller: binds over
 * LDAPS, StartTLS and plain LDAP, nested groups through the in-chain matching
 * rule, the bind sub-codes of every account state, renames keeping objectGUID,
 * and a directory that goes away and comes back.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it, type TestContext } from 'node:test';
import { requirePeer } from '../helpers/peers.js';
import { parseLdif, sambaAvailable, sambaMissing, startSambaDomain, type SambaDomain } from '../helpers/samba.js';

const up = sambaAvailable();
const ready = (t: TestContext) => requirePeer(t, up, `samba AD DC (root, samba, ip${up ? '' : `; missing: ${sambaMissing().join(', ')}`})`);

interface Out {
  code: number | null;
  out: string;
  stdout: string;
  ms: number;
}

/** An ldap-utils command against the DC (CA from the harness), killed after timeoutMs. */
function ldap(ad: SambaDomain, tool: string, args: string[], timeoutMs = 15_000): Promise<Out> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(tool, ['-o', 'nettimeout=3', ...args], {
      env: { ...process.env, LDAPTLS_CACERT: ad.caFile, LDAPTLS_REQCERT: 'demand' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, stdout, ms: Date.now() - t0 });
    });
  });
}

const userDn = (name: string) => `CN=${name},CN=Users,DC=corp,DC=example,DC=org`;

/** A simple bind then a base search of the root DSE: exit 0 when the bind worked. */
const bindSearch = (ad: SambaDomain, url: string, dn: string, password: string, extra: string[] = [], timeoutMs?: number) =>
  ldap(ad, 'ldapsearch', ['-H', url, ...extra, '-x', '-D', dn, '-w', password, '-b', '', '-s', 'base', '1.1'], timeoutMs);

/** ldapwhoami -x: Samba has no WhoAmI operation, so a good bind ends in exit 1 ("not supported"), a refused one in 49 with the sub-code. */
const whoami = (ad: SambaDomain, dn: string, password: string, url = ad.ldapsUrl) => ldap(ad, 'ldapwhoami', ['-H', url, '-x', '-D', dn, '-w', password]);
const subCode = (o: Out) => /AcceptSecurityContext error, data ([0-9a-f]+),/.exec(o.out)?.[1];

/** Search as the service account. */
async function svcSearch(ad: SambaDomain, filter: string, attrs: string[] = ['1.1']) {
  const r = await ldap(ad, 'ldapsearch', ['-LLL', '-o', 'ldif_wrap=no', '-H', ad.ldapsUrl, '-x', '-D', ad.bindDn, '-w', ad.bindPassword, '-b', ad.baseDn, filter, ...attrs]);
  assert.equal(r.code, 0, r.out);
  return parseLdif(r.stdout);
}

const PW = 'Passw0rd!-harness-7Qx';

describe('Samba AD DC harness', () => {
  let ad: SambaDomain;

  before(
    async () => {
      if (!up) return;
      ad = await startSambaDomain();
    },
    { timeout: 120_000 },
  );
  after(() => ad?.stop());

  it('starts a DC on its own namespace address, with the promised names', (t) => {
    if (!ready(t)) return;
    t.diagnostic(`start took ${ad.startMs} ms (${JSON.stringify(ad.startSteps)}), address ${ad.address}`);
    assert.match(ad.address, /^10\.231\.\d+\.\d+$/);
    assert.equal(ad.ldapsUrl, `ldaps://${ad.address}:636`);
    assert.equal(ad.ldapUrl, `ldap://${ad.address}:389`);
    assert.equal(ad.realm, 'CORP.EXAMPLE.ORG');
    assert.equal(ad.netbios, 'CORP');
    assert.equal(ad.baseDn, 'DC=corp,DC=example,DC=org');
    assert.equal(ad.bindDn, 'CN=svc-countersign,CN=Users,DC=corp,DC=example,DC=org');
  });

  it('a created user binds with its password over LDAPS, StartTLS and plain LDAP, and not with a wrong one', async (t) => {
    if (!ready(t)) return;
    await ad.createUser('alice', PW, { givenName: 'Alice', surname: 'Liddell', mail: 'alice@example.org' });
    for (const [url, extra] of [[ad.ldapsUrl, []], [ad.ldapUrl, ['-ZZ']], [ad.ldapUrl, []]] as const) {
      for (const who of [userDn('alice'), 'alice@corp.example.org', 'CORP\\alice']) {
        const ok = await bindSearch(ad, url, who, PW, [...extra]);
        assert.equal(ok.code, 0, `${url} ${extra.join(' ')} as ${who}: ${ok.out}`);
      }
      const bad = await bindSearch(ad, url, userDn('alice'), `${PW}x`, [...extra]);
      assert.equal(bad.code, 49, bad.out);
    }
    const who = await whoami(ad, userDn('alice'), PW);
    assert.equal(who.code, 1, who.out); // bound; WhoAmI itself is not supported by Samba
    assert.match(who.out, /Extended Operation\(1\.3\.6\.1\.4\.1\.4203\.1\.11\.3\) not supported/);
    const wrong = await whoami(ad, userDn('alice'), 'Wrong-password-1');
    assert.equal(wrong.code, 49, wrong.out);
    assert.equal(subCode(wrong), '52e', wrong.out);

    // The service account finds her, with her attributes and a GUID.
    const [e] = await svcSearch(ad, '(sAMAccountName=alice)', ['givenName', 'sn', 'mail', 'userPrincipalName', 'objectGUID']);
    assert.equal(e?.dn, userDn('alice'));
    assert.equal(e?.attrs.get('mail')?.[0]?.toString(), 'alice@example.org');
    assert.equal(e?.attrs.get('userprincipalname')?.[0]?.toString(), 'alice@corp.example.org');
    assert.equal(e?.attrs.get('objectguid')?.[0]?.length, 16);
  });

  it('the server certificate is for the address and dc1.corp.example.org, and only with the harness CA', async (t) => {
    if (!ready(t)) return;
    const untrusted = await new Promise<Out>((resolve) => {
      const child = spawn('ldapsearch', ['-o', 'nettimeout=3', '-H', ad.ldapsUrl, '-x', '-b', '', '-s', 'base', '1.1'], {
        env: { ...process.env, LDAPTLS_CACERT: '/dev/null', LDAPTLS_REQCERT: 'demand' },
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('close', (code) => resolve({ code, out, stdout: '', ms: 0 }));
    });
    assert.notEqual(untrusted.code, 0, 'a client without the harness CA must not connect');
    const ok = await bindSearch(ad, ad.ldapsUrl, ad.bindDn, ad.bindPassword);
    assert.equal(ok.code, 0, ok.out);
  });

  it('nested group membership is visible through the in-chain matching rule; primaryGroupID is set', async (t) => {
    if (!ready(t)) return;
    await ad.createUser('bob', PW);
    await ad.createGroup('g-inner');
    await ad.createGroup('g-outer');
    await ad.createGroup('g-primary');
    await ad.addMembers('g-inner', ['bob']);
    await ad.addMembers('g-outer', ['g-inner']);
    await ad.addMembers('g-outer', ['g-inner']); // again: fine
    const outer = userDn('g-outer');
    const chain = await svcSearch(ad, `(&(sAMAccountName=bob)(memberOf:1.2.840.113556.1.4.1941:=${outer}))`);
    assert.deepEqual(chain.map((e) => e.dn), [userDn('bob')]);
    const direct = await svcSearch(ad, `(&(sAMAccountName=bob)(memberOf=${outer}))`);
    assert.deepEqual(direct, [], 'bob is only an indirect member of g-outer');
    const groups = await svcSearch(ad, `(member:1.2.840.113556.1.4.1941:=${userDn('bob')})`);
    assert.deepEqual(groups.map((e) => e.dn).sort(), [userDn('g-inner'), outer].sort());

    await ad.setPrimaryGroup('bob', 'g-primary');
    const [g] = await svcSearch(ad, '(sAMAccountName=g-primary)', ['objectSid']);
    const sid = g!.attrs.get('objectsid')![0]!;
    const [b] = await svcSearch(ad, '(sAMAccountName=bob)', ['primaryGroupID', 'memberOf']);
    assert.equal(Number(b!.attrs.get('primarygroupid')?.[0]?.toString()), sid.readUInt32LE(sid.length - 4));
    const bound = await bindSearch(ad, ad.ldapsUrl, userDn('bob'), PW);
    assert.equal(bound.code, 0, bound.out);
  });

  it('each account state gives its bind sub-code with the right password', async (t) => {
    if (!ready(t)) return;
    const states = [
      ['disabled', 'disable', '533'],
      ['mustchange', 'mustChangePassword', '773'],
      ['pwexpired', 'expirePassword', '532'],
      ['acctexpired', 'expireAccount', '701'],
      ['locked', 'lock', '775'],
    ] as const;
    for (const [name, op, code] of states) {
      await ad.createUser(name, PW);
      const before = await bindSearch(ad, ad.ldapsUrl, userDn(name), PW);
      assert.equal(before.code, 0, `${name} binds before ${op}: ${before.out}`);
      await ad[op](name);
      for (const url of [ad.ldapsUrl, ad.ldapUrl]) {
        const r = await whoami(ad, userDn(name), PW, url);
        assert.equal(r.code, 49, `${op} over ${url}: ${r.out}`);
        assert.equal(subCode(r), code, `${op} over ${url}: ${r.out}`);
      }
    }
    // The lockout policy is the locked user's alone: another user's wrong binds do not lock it.
    await ad.createUser('carefree', PW);
    for (let i = 0; i < 3; i++) assert.equal((await whoami(ad, userDn('carefree'), 'Wrong-password-1')).code, 49);
    assert.equal((await bindSearch(ad, ad.ldapsUrl, userDn('carefree'), PW)).code, 0);
  });

  it('rename changes sAMAccountName and CN and keeps objectGUID; remove deletes', async (t) => {
    if (!ready(t)) return;
    await ad.createUser('carol', PW);
    const [before] = await svcSearch(ad, '(sAMAccountName=carol)', ['objectGUID']);
    await ad.rename('carol', 'caroline');
    assert.deepEqual(await svcSearch(ad, '(sAMAccountName=carol)'), []);
    const [renamed] = await svcSearch(ad, '(sAMAccountName=caroline)', ['objectGUID', 'userPrincipalName']);
    assert.equal(renamed?.dn, userDn('caroline'));
    assert.deepEqual(renamed?.attrs.get('objectguid'), before?.attrs.get('objectguid'));
    assert.equal(renamed?.attrs.get('userprincipalname')?.[0]?.toString(), 'caroline@corp.example.org');
    assert.equal((await bindSearch(ad, ad.ldapsUrl, userDn('caroline'), PW)).code, 0);
    assert.equal((await bindSearch(ad, ad.ldapsUrl, 'CORP\\caroline', PW)).code, 0);

    await ad.remove('caroline');
    assert.deepEqual(await svcSearch(ad, '(sAMAccountName=caroline)'), []);
    const gone = await whoami(ad, userDn('caroline'), PW);
    assert.equal(gone.code, 49, gone.out);
  });

  it('pause makes binds fail and resume brings them back (stop, freeze, unplug)', async (t) => {
    if (!ready(t)) return;
    await ad.createUser('dave', PW);
    const bind = (timeoutMs?: number) => bindSearch(ad, ad.ldapsUrl, userDn('dave'), PW, [], timeoutMs);
    assert.equal((await bind()).code, 0);

    // Default: samba stopped, connections refused at once.
    await ad.pause();
    const refused = await bind();
    assert.notEqual(refused.code, 0, refused.out);
    assert.match(refused.out, /Can't contact LDAP server/);
    assert.ok(refused.ms < 2000, `refused in ${refused.ms} ms`);
    await ad.resume();
    assert.equal((await bind()).code, 0, 'back after stop');
    await ad.createUser('erin', PW); // the database survived the restart
    assert.equal((await bind()).code, 0);

    // Frozen: the kernel accepts, nothing answers.
    await ad.pause('freeze');
    const frozen = await bind(1000);
    assert.notEqual(frozen.code, 0, frozen.out);
    await ad.resume();
    assert.equal((await bind()).code, 0, 'back after freeze');

    // Unplugged: packets vanish.
    await ad.pause('unplug');
    const unplugged = await bind(1000);
    assert.notEqual(unplugged.code, 0, unplugged.out);
    await ad.resume();
    assert.equal((await bind()).code, 0, 'back after unplug');
  });
});
