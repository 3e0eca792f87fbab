import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { until } from '../helpers/push.js';
import { oathTotp, startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin/countersign.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bin` with `args`; the result comes when it exits. */
function runBin(binPath: string, args: string[], env: Record<string, string>, input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [binPath, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(input ?? '');
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * A user with OTP on, and a login of theirs waiting for its second factor. Its id may start with
 * '-', so commands take it after `--`.
 */
async function pendingLogin(s: TestServer, user: string): Promise<{ id: string; displayCode: string }> {
  assert.equal((await s.api('POST', '/api/v1/users', { name: user })).status, 201);
  assert.equal((await s.api('POST', '/api/v1/users/factors', { users: [user], factor: 'otp', enabled: true })).status, 200);
  const open = await s.api('POST', '/api/v1/challenges', { user });
  assert.equal(open.status, 201, JSON.stringify(open.body));
  return open.body;
}

describe('countersign CLI against a running server', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  const cli = (args: string[], input?: string, env: Record<string, string> = {}) =>
    runBin(bin, args, { COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN, ...env }, input);

  it('adds users with a password from stdin and lists them', async () => {
    const add = await cli(['user', 'add', 'alice', '--password-stdin', '--display-name', 'Alice A'], 'correct horse\n');
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /created alice \(Alice A\)/);
    assert.equal(((await s.ctx.directory.verify('alice', 'correct horse')) as { name?: string }).name, 'alice', 'the trailing newline is not part of the password');
    await cli(['user', 'add', 'bob']);
    const list = await cli(['user', 'list']);
    assert.match(list.stdout, /alice \(Alice A\)\s+otp: off\s+push: off\nbob/);
    assert.match(list.stdout, /\(2 of 2\)/);
  });

  it('enables OTP for several users at once and prints URIs and QR codes', async () => {
    const r = await cli(['user', 'enable', 'alice', 'bob', '--otp']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /alice: otpauth:\/\/totp\/Countersign:alice\?secret=[A-Z2-7]+/);
    assert.match(r.stdout, /bob: otpauth:\/\/totp\//);
    assert.match(r.stdout, /[▀▄█]/, 'a terminal QR code');
    assert.match(r.stdout, /enabled otp for 2 user\(s\)/);
    const push = await cli(['user', 'enable', 'alice', 'nobody', '--push']);
    assert.equal(push.code, 1, 'a failed name fails the command');
    assert.match(push.stdout, /nobody: user 'nobody' does not exist/);
    const show = await cli(['user', 'show', 'alice', '--json']);
    assert.deepEqual(JSON.parse(show.stdout).factors, ['otp', 'push']);
  });

  it('drives a login with an OTP from oathtool', async (t) => {
    if (!requirePeer(t, hasCommand('oathtool'), 'oathtool')) return;
    const enrol = await cli(['user', 'otp', 'alice', '--json']);
    const secret = JSON.parse(enrol.stdout).secret;
    const open = await cli(['challenge', 'open', 'alice', '--password-stdin', '--json'], 'correct horse');
    assert.equal(open.code, 0, open.stderr);
    const c = JSON.parse(open.stdout);
    assert.equal(c.state, 'pending');
    // A challenge id may start with '-', which would read as an option.
    const ok = await cli(['challenge', 'otp', '--', c.id, oathTotp(secret)]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`${c.id}\\s+approved\\s+user alice\\s+ID ${c.displayCode}.*via otp`));
    const audit = await cli(['audit', '--user', 'alice']);
    assert.match(audit.stdout, /login\s+alice\s+api countersign-cli .* approved \d+ms/);
  });

  it('says clearly what went wrong, with a non-zero exit', async () => {
    const cases: [string[], RegExp][] = [
      [['user', 'show', 'ghost'], /user 'ghost' does not exist/],
      [['user', 'enable', 'alice'], /--otp or --push/],
      [['user', 'add', '../x'], /user name/],
      [['frobnicate'], /unknown command/],
      [['user', 'list', '--bogus'], /bogus/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    const wrongToken = await cli(['user', 'list'], undefined, { COUNTERSIGN_ADMIN_TOKEN: 'wrong-token-wrong-token-wrong' });
    assert.match(wrongToken.stderr, /admin bearer token/);
    const down = await cli(['user', 'list'], undefined, { COUNTERSIGN_URL: 'http://127.0.0.1:1' });
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
  });

  it('prints usage with --help', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /countersign user enable NAME\.\.\. --otp\|--push/);
    assert.match(r.stdout, /2 when still\s+pending after S seconds/, 'the exit codes of challenge wait');
    // Under Node 20 oidc-provider warns as it is imported: a client command must not load the server.
    assert.equal(r.stderr, '');
    const list = await cli(['user', 'list']);
    assert.equal(list.code, 0);
    assert.equal(list.stderr, '');
  });

  it('challenge wait returns once the login is approved, with exit 0', async () => {
    const c = await pendingLogin(s, 'wait-approve');
    const waiting = cli(['challenge', 'wait', '--', c.id]);
    await until(() => s.ctx.engine.waiting > 0, 30_000);
    assert.equal((await s.api('POST', `/api/v1/challenges/${c.id}/approve`, {})).status, 200);
    const r = await waiting;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${c.id}\\s+approved\\s+user wait-approve\\s+ID ${c.displayCode}\\s+factors otp\\s+via admin`));
  });

  it('challenge wait exits 1 when the login is rejected', async () => {
    const c = await pendingLogin(s, 'wait-reject');
    const waiting = cli(['challenge', 'wait', '--json', '--', c.id]);
    await until(() => s.ctx.engine.waiting > 0, 30_000);
    assert.equal((await s.api('POST', `/api/v1/challenges/${c.id}/reject`, {})).status, 200);
    const r = await waiting;
    assert.equal(r.code, 1, r.stderr);
    assert.equal(JSON.parse(r.stdout).state, 'rejected');
  });

  it('challenge wait --timeout gives up with exit 2 while the login is still pending', async () => {
    const c = await pendingLogin(s, 'wait-timeout');
    const r = await cli(['challenge', 'wait', '--timeout', '0.5', '--', c.id]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout, new RegExp(`${c.id}\\s+pending\\s+user wait-timeout`));
    const bad = await cli(['challenge', 'wait', '--timeout', 'soon', '--', c.id]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--timeout is a number of seconds/);
  });
});

describe('countersign challenge wait at the deadline', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({}, {}, (config) => {
      config.challenge.deadlineSeconds = 2;
    });
  });
  after(() => s.close());

  it('exits 1 when the login expires undecided', async () => {
    const c = await pendingLogin(s, 'wait-expire');
    const r = await runBin(bin, ['challenge', 'wait', '--', c.id], { COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`${c.id}\\s+expired\\s+user wait-expire`));
  });
});

describe('countersign challenge wait against a server that answers pending', () => {
  it('asks again until the login is decided', async () => {
    const asked: string[] = [];
    const fake = createServer((req, res) => {
      asked.push(req.url!);
      const state = asked.length < 3 ? 'pending' : 'approved';
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 'c1', state, user: 'u', displayCode: '1234', factors: ['otp'], secondsLeft: 100, method: 'admin' }));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
      const r = await runBin(bin, ['challenge', 'wait', 'c1'], { COUNTERSIGN_URL: url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /c1\s+approved/);
      assert.deepEqual(asked, Array(3).fill('/api/v1/challenges/c1/wait?timeout=25'));
    } finally {
      fake.close();
    }
  });
});

describe('bin/countersign.js in a source checkout', () => {
  // A copy of the CLI's sources, so that editing one touches nothing shared.
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'countersign-bin-'));
    cpSync(join(root, 'bin'), join(dir, 'bin'), { recursive: true });
    cpSync(join(root, 'src/cli'), join(dir, 'src/cli'), { recursive: true });
    cpSync(join(root, 'package.json'), join(dir, 'package.json'));
    mkdirSync(join(dir, 'node_modules'));
    // TypeScript alone: a client command needs no tsx.
    symlinkSync(join(root, 'node_modules/typescript'), join(dir, 'node_modules/typescript'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the sources as they are now, never an older copy or dist/', async () => {
    const help = () => runBin(join(dir, 'bin/countersign.js'), ['--help'], {});
    const first = await help();
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^countersign — second-factor server/);
    assert.equal((await help()).stdout, first.stdout, 'the cached copy answers the same');

    const main = join(dir, 'src/cli/main.ts');
    writeFileSync(main, readFileSync(main, 'utf8').replace('countersign — second-factor server', 'countersign — edited just now'));
    mkdirSync(join(dir, 'dist/src/cli'), { recursive: true });
    writeFileSync(join(dir, 'dist/src/cli/main.js'), "export const run = () => console.log('stale dist');\n");
    const edited = await help();
    assert.equal(edited.code, 0, edited.stderr);
    assert.match(edited.stdout, /^countersign — edited just now/);
  });
});
