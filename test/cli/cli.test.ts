import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { oathTotp, startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const bin = fileURLToPath(new URL('../../bin/countersign.js', import.meta.url));

describe('countersign CLI against a running server', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  const cli = (args: string[], input?: string, env: Record<string, string> = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, ...args], {
        env: { ...process.env, COUNTERSIGN_URL: s.url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN, ...env },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.stdin.end(input ?? '');
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });

  it('adds users with a password from stdin and lists them', async () => {
    const add = await cli(['user', 'add', 'alice', '--password-stdin', '--display-name', 'Alice A'], 'correct horse\n');
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /created alice \(Alice A\)/);
    assert.equal(await s.ctx.directory.verify('alice', 'correct horse'), 'alice', 'the trailing newline is not part of the password');
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
    const ok = await cli(['challenge', 'otp', c.id, oathTotp(secret)]);
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
  });
});
