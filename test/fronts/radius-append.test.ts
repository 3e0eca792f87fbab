import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Authenticator } from '../../src/cli/authenticator.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { q, radclient } from '../helpers/radclient.js';
import { wrongCode, oathTotp, startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const haveRadclient = hasCommand('radclient');
const haveOathtool = hasCommand('oathtool');
const SECRET = 'radius-append-secret';

const bin = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin/countersign.js');

/**
 * append mode reads "password,123456", "password123456" and the password alone (then a push),
 * checking each distinct password once; and a NAS that sends no Message-Authenticator is
 * dropped visibly (a per-client metric, one warn line a minute naming the setting).
 */
describe('RADIUS append: both forms, each password checked once', () => {
  let s: TestServer;
  let port: number;
  /** Every first-factor check the server makes, in order: [login, password]. */
  let checks: [string, string][] = [];
  /** Makes the next check answer "directory unavailable" instead of asking the directory. */
  let unavailableOnce = false;
  /** Log lines at warn and above, parsed. */
  const logged: { level: number; msg: string; client?: string }[] = [];
  const otp: Record<string, string> = {};

  before(async () => {
    const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    s = await startTestServer({}, { log }, (config) => {
      config.push.rateLimit.count = 100;
    });
    port = s.radiusPort!;
    // Watch the first factor from outside the RADIUS front: what it asks the directories.
    const directory = s.ctx.directory;
    const verify = directory.verify.bind(directory);
    directory.verify = async (login, password) => {
      checks.push([login, password]);
      if (unavailableOnce) {
        unavailableOnce = false;
        return { ok: false, reason: 'unavailable', message: 'The directory cannot be reached; nobody can sign in until it returns. Try again in a moment' };
      }
      return verify(login, password);
    };
    for (const [name, password] of [
      ['alice', 'alice-pw'],
      ['bob', 'bob-pw'],
      ['carol', 'carol-pw'],
      ['erin', 'erin-pw'],
      ['frank', 'frank-pw'],
      ['gina', 'gina-pw'],
      // A password that itself looks like password,code.
      ['dana', 'dana-pw,123456'],
    ] as const) {
      assert.equal((await s.api('POST', '/api/v1/users', { name, password })).status, 201);
      if (name !== 'dana') otp[name] = (await s.api('POST', `/api/v1/users/${name}/otp`, {})).body.secret;
    }
    await nas({});
  });
  after(() => s?.close());

  /** (Re)declares the NAS radclient speaks as (from 127.0.0.1). */
  async function nas(over: Record<string, unknown>) {
    await s.api('DELETE', '/api/v1/radius-clients/vpn');
    const r = await s.api('POST', '/api/v1/radius-clients', { name: 'vpn', address: '127.0.0.1/32', secret: SECRET, mode: 'append', ...over });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }

  /** Sends one Access-Request; returns the answer and the passwords checked for it. */
  async function login(user: string, typed: string, opts: { timeout?: number } = {}) {
    checks = [];
    const r = await radclient(port, SECRET, { 'User-Name': q(user), 'User-Password': q(typed) }, opts);
    return { ...r, checked: checks.map(([, p]) => p) };
  }

  it('with the default delimiter, both password,123456 and password123456 are accepted, checking one password', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const comma = await login('alice', `alice-pw,${oathTotp(otp.alice!)}`);
    assert.equal(comma.code, 'Access-Accept', comma.output);
    assert.deepEqual(comma.checked, ['alice-pw']);
    const glued = await login('bob', `bob-pw${oathTotp(otp.bob!)}`);
    assert.equal(glued.code, 'Access-Accept', glued.output);
    assert.deepEqual(glued.checked, ['bob-pw'], 'the delimiter form did not fit, so it was not asked about');
  });

  it('a password that ends in digits and holds a comma still works alone: every reading tried once, then the push', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    await s.api('POST', '/api/v1/users/factors', { users: ['dana'], factor: 'push', enabled: true });
    const phone = await Authenticator.enrol((await s.api('POST', '/api/v1/users/dana/enrolments')).body.uri, {});
    const pending = login('dana', 'dana-pw,123456', { timeout: 10 });
    let p;
    for (let i = 0; i < 250 && !(p = (await phone.pending())[0]); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(p, 'push-wait was reached: a push login is pending');
    await phone.answer(p!.challengeId, 'approve');
    const r = await pending;
    assert.equal(r.code, 'Access-Accept', r.output);
    assert.deepEqual(r.checked, ['dana-pw', 'dana-pw,', 'dana-pw,123456'], 'delimiter split, trailing digits, whole: once each');
  });

  it('a split whose password fails never uses up the code in it', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const code = oathTotp(otp.erin!);
    const wrong = await login('erin', `not-erins-pw,${code}`);
    assert.equal(wrong.code, 'Access-Reject', wrong.output);
    assert.equal(wrong.attributes['Reply-Message'], 'Wrong user name or password');
    assert.deepEqual(wrong.checked, ['not-erins-pw', 'not-erins-pw,', `not-erins-pw,${code}`]);
    const right = await login('erin', `erin-pw,${code}`);
    assert.equal(right.code, 'Access-Accept', `the same code still works: ${right.output}`);
  });

  it('a wrong code with the right password ends that login, and the right code works next', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const code = oathTotp(otp.frank!);
    const wrong = await login('frank', `frank-pw${wrongCode(otp.frank!)}`);
    assert.equal(wrong.code, 'Access-Reject', wrong.output);
    assert.match(wrong.attributes['Reply-Message'] ?? '', /wrong/i);
    assert.deepEqual(wrong.checked, ['frank-pw'], 'the password passed: the search stopped there');
    const right = await login('frank', `frank-pw,${code}`);
    assert.equal(right.code, 'Access-Accept', right.output);
  });

  it('an unknown user goes through the same checks as a wrong password, with the same answer', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const ghost = await login('ghost', 'guess,123456');
    const known = await login('carol', 'guess,123456');
    assert.equal(ghost.code, 'Access-Reject');
    assert.equal(known.code, 'Access-Reject');
    assert.equal(ghost.attributes['Reply-Message'], known.attributes['Reply-Message']);
    assert.deepEqual(ghost.checked, known.checked);
    assert.deepEqual(known.checked, ['guess', 'guess,', 'guess,123456']);
  });

  it('a directory that cannot answer ends the search at once with its own words', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    const code = oathTotp(otp.carol!);
    unavailableOnce = true;
    const r = await login('carol', `carol-pw,${code}`);
    assert.equal(r.code, 'Access-Reject', r.output);
    assert.match(r.attributes['Reply-Message'] ?? '', /directory cannot be reached/);
    assert.deepEqual(r.checked, ['carol-pw'], 'no other reading was tried');
    const again = await login('carol', `carol-pw,${code}`);
    assert.equal(again.code, 'Access-Accept', `the code was not used: ${again.output}`);
  });

  it('appendDelimiter "" reads the trailing digits only', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient') || !requirePeer(t, haveOathtool, 'oathtool')) return;
    await nas({ appendDelimiter: '' });
    try {
      const code = oathTotp(otp.gina!);
      const comma = await login('gina', `gina-pw,${code}`);
      assert.equal(comma.code, 'Access-Reject', comma.output);
      assert.deepEqual(comma.checked, ['gina-pw,', `gina-pw,${code}`], 'no delimiter split');
      const glued = await login('gina', `gina-pw${code}`);
      assert.equal(glued.code, 'Access-Accept', `the code was not used up: ${glued.output}`);
    } finally {
      await nas({});
    }
  });

  it('a request without Message-Authenticator is dropped, counted per client, and one warn line names the setting', async (t) => {
    if (!requirePeer(t, haveRadclient, 'radclient')) return;
    const metric = async () => {
      const text = (await s.api('GET', '/metrics')).body as string;
      const line = text.split('\n').find((l) => l.startsWith('countersign_radius_client_dropped_total{') && l.includes('client="vpn"') && l.includes('reason="missing_message_authenticator"'));
      return Number(line?.split(' ').pop() ?? 0);
    };
    const before = await metric();
    const warned = () => logged.filter((l) => l.level === 40 && l.client === 'vpn' && l.msg.includes('requireMessageAuthenticator: false'));
    const warnedBefore = warned().length;
    const noMa = () => radclient(port, SECRET, { 'User-Name': 'alice', 'User-Password': q('alice-pw,123456') }, { messageAuthenticator: false, timeout: 1, retries: 1 });
    const [a, b] = await Promise.all([noMa(), noMa()]);
    assert.equal(a.code, 'timeout', a.output);
    assert.equal(b.code, 'timeout', b.output);
    assert.ok((await metric()) >= before + 2, 'both drops counted for client vpn');
    assert.match((await s.api('GET', '/metrics')).body as string, /countersign_radius_dropped_total\{reason="missing_message_authenticator"\} [1-9]/, 'the total by reason still counts');
    const lines = warned().slice(warnedBefore);
    assert.equal(lines.length, 1, `one warn line for a burst: ${JSON.stringify(lines)}`);
    assert.match(lines[0]!.msg, /radius\.clients\[\]\.requireMessageAuthenticator: false/);
    assert.match(lines[0]!.msg, /BlastRADIUS/);
    assert.match(lines[0]!.msg, /\bvpn\b/);
  });
});

describe('countersign radius-client add says what happens to gear without Message-Authenticator', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s?.close());

  const cli = (args: string[], input: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.stdin.end(input);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });

  it('without --no-message-authenticator: one line naming the gear that sends none', async () => {
    const r = await cli(['radius-client', 'add', 'gw', '--address', '192.0.2.0/24', '--secret-stdin', '--mode', 'append'], 'a-long-shared-secret\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /added RADIUS client gw \(192\.0\.2\.0\/24, append\)/);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /pam_radius.*radiusplugin.*radsecproxy \(before 1\.11\).*dropped.*--no-message-authenticator/);
  });

  it('with --no-message-authenticator: the BlastRADIUS caveat instead, and --json stays one document', async () => {
    const r = await cli(['radius-client', 'add', 'old-pam', '--address', '192.0.2.7', '--secret-stdin', '--no-message-authenticator', '--json'], 'a-long-shared-secret\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).requireMessageAuthenticator, false);
    assert.match(r.stderr, /old-pam .*without Message-Authenticator.*BlastRADIUS/);
    assert.doesNotMatch(r.stderr, /pam_radius/);
  });
});
