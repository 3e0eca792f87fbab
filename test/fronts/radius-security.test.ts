import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { nasConfig, q, radclient } from '../helpers/radclient.js';
import { oathTotp, startTestServer, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const haveOathtool = hasCommand('oathtool');
const SECRET = 'radius-security-secret';
type ClientConfig = Config['radius']['clients'][number];
const nas = (name: string, address: string, over: Partial<ClientConfig>): ClientConfig => nasConfig(SECRET, { name, address, ...over });

/** Findings of the security review on the RADIUS front, each sent as a NAS would (Debian's radclient). */
describe('RADIUS front under attack', () => {
  /** One server per NAS kind (radclient always sends from 127.0.0.1). */
  const servers: Record<'append' | 'sfo' | 'challenge', TestServer> = {} as never;
  const secrets: Record<string, string> = {};
  let phone: Authenticator;

  before(async () => {
    const kinds = { append: { mode: 'append' }, sfo: { mode: 'push-wait', secondFactorOnly: true }, challenge: { mode: 'challenge' } } as const;
    for (const [kind, over] of Object.entries(kinds) as [keyof typeof kinds, Partial<ClientConfig>][]) {
      const s = await startTestServer({}, {}, (c) => {
        c.radius.clients = [nas(`${kind}-nas`, '127.0.0.1/32', over)];
        c.push.rejectLockout.count = 100;
      });
      servers[kind] = s;
      for (const name of ['constructor', 'toString', 'valueOf', 'alice', 'nofactor', 'pushonly', 'bob']) {
        assert.equal((await s.api('POST', '/api/v1/users', { name, password: `${name}-pw` })).status, 201);
        if (name !== 'nofactor' && name !== 'pushonly') secrets[`${kind}:${name}`] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
      }
      await s.api('POST', '/api/v1/users/factors', { users: ['pushonly', 'bob'], factor: 'push', enabled: true });
    }
    phone = await Authenticator.enrol((await servers.challenge.api('POST', '/api/v1/users/bob/enrolments')).body.uri, {});
  });
  after(() => Promise.all(Object.values(servers).map((s) => s.close())));

  const send = (kind: keyof typeof servers, attrs: Record<string, string>) => radclient(servers[kind].radiusPort!, SECRET, attrs);
  const pendingOf = async (kind: keyof typeof servers, user: string) =>
    ((await servers[kind].api('GET', '/api/v1/challenges?limit=500')).body.challenges as any[]).filter((c) => c.user === user);

  it('users named after Object.prototype members log in like anyone else', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    for (const name of ['constructor', 'toString', 'valueOf']) {
      const r = await send('append', { 'User-Name': q(name), 'User-Password': q(`${name}-pw,${oathTotp(secrets[`append:${name}`]!)}`) });
      assert.equal(r.code, 'Access-Accept', `${name}: ${r.output}`);
    }
  });

  it('append: a wrong or reused code ends the login at once', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const wrong = await send('append', { 'User-Name': 'alice', 'User-Password': q('alice-pw,000000') });
    assert.equal(wrong.code, 'Access-Reject');
    assert.deepEqual(await pendingOf('append', 'alice'), [], 'nothing left pending for 150 s');
    const code = oathTotp(secrets['append:alice']!);
    assert.equal((await send('append', { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) })).code, 'Access-Accept');
    const reused = await send('append', { 'User-Name': 'alice', 'User-Password': q(`alice-pw,${code}`) });
    assert.equal(reused.code, 'Access-Reject');
    assert.deepEqual(await pendingOf('append', 'alice'), []);
    const audit = (await servers.append.api('GET', '/api/v1/audit?user=alice&front=radius')).body.events as any[];
    assert.ok(audit.filter((e) => e.type === 'login' && e.outcome === 'rejected').length >= 2, 'each ended login is audited as rejected');
  });

  it('second-factor-only: unknown users, users without the factor and wrong codes get the same answer', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const codes = await Promise.all(
      ['nobody', 'nofactor', 'pushonly', 'alice'].map((u) => send('sfo', { 'User-Name': u, 'User-Password': q('123456') })),
    );
    for (const r of codes) assert.equal(r.code, 'Access-Reject', r.output);
    assert.equal(new Set(codes.map((r) => r.attributes['Reply-Message'])).size, 1, codes.map((r) => r.attributes['Reply-Message']).join(' | '));
    const pushes = await Promise.all(['nobody', 'nofactor'].map((u) => send('sfo', { 'User-Name': u, 'User-Password': q('push') })));
    for (const r of pushes) assert.equal(r.code, 'Access-Reject', r.output);
    assert.equal(pushes[0]!.attributes['Reply-Message'], pushes[1]!.attributes['Reply-Message']);
  });

  it('challenge mode: follow-ups to one State are capped, then the login ends', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const first = await send('challenge', { 'User-Name': 'bob', 'User-Password': q('bob-pw') });
    assert.equal(first.code, 'Access-Challenge', first.output);
    const state = first.attributes.State!;
    const answers: string[] = [];
    for (let i = 0; i < 22; i++) answers.push((await send('challenge', { 'User-Name': 'bob', 'User-Password': q(''), State: state })).code);
    assert.deepEqual(answers.slice(0, 20), Array(20).fill('Access-Challenge'));
    assert.deepEqual(answers.slice(20), ['Access-Reject', 'Access-Reject']);
    assert.deepEqual(await pendingOf('challenge', 'bob'), [], 'the login was ended');
    assert.deepEqual(await phone.pending(), [], 'and the push withdrawn');
  });
});
