import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import type { Clock } from '../../src/core/clock.js';
import { hasCommand, requirePeer } from '../helpers/peers.js';
import { ldapDirectory, slapdAvailable, startSlapd, USERS, type Slapd } from '../helpers/slapd.js';
import { startSmtpReceiver, type ReceivedMail, type SmtpReceiver } from '../helpers/smtp.js';
import { startTestServer, TEST_TOKEN, type TestServer } from '../helpers/server.js';

const bin = fileURLToPath(new URL('../../bin/countersign.js', import.meta.url));
const SMTP_AUTH = { user: 'countersign-relay', password: 'relay-secret-1' };
const FROM = 'IT Service Desk <it@example.org>';

/** The real clock, moved forward by hand: invitations expire without waiting a week. */
let skew = 0;
const clock: Clock = {
  now: () => Date.now() + skew,
  at(at, fn) {
    const t = setTimeout(fn, Math.max(0, at - Date.now() - skew));
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

function runCli(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, COUNTERSIGN_URL: url, COUNTERSIGN_ADMIN_TOKEN: TEST_TOKEN } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end();
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const linkIn = (m: ReceivedMail) => /https?:\/\/\S+\/account\/#invite=([A-Za-z0-9_-]+)/.exec(m.text);

describe('invitations by e-mail (smtp-server with STARTTLS and AUTH PLAIN)', () => {
  let smtp: SmtpReceiver;
  let slapd: Slapd | undefined;
  let s: TestServer;
  const up = hasCommand('openssl');

  before(async () => {
    if (!up) return;
    smtp = await startSmtpReceiver(SMTP_AUTH);
    if (slapdAvailable()) slapd = await startSlapd();
    s = await startTestServer(
      {
        COUNTERSIGN_MAIL_FROM: FROM,
        COUNTERSIGN_MAIL_SMTP_HOST: '127.0.0.1',
        COUNTERSIGN_MAIL_SMTP_PORT: String(smtp.port),
        COUNTERSIGN_MAIL_SMTP_SECURITY: 'starttls',
        COUNTERSIGN_MAIL_SMTP_USER: SMTP_AUTH.user,
        COUNTERSIGN_MAIL_SMTP_PASSWORD: SMTP_AUTH.password,
        COUNTERSIGN_MAIL_SMTP_CA_FILE: smtp.caFile,
        COUNTERSIGN_INVITATIONS_TTL_SECONDS: '3600',
      },
      { clock },
      (c) => {
        if (slapd) c.directories = [{ name: 'local', kind: 'local', realms: [] }, ldapDirectory(slapd)];
      },
    );
    for (const [name, email] of [['nina', 'nina@example.org'], ['omar', 'omar@example.org'], ['pat', 'pat@example.org'], ['quinn', undefined]] as const) {
      const r = await s.api('POST', '/api/v1/users', { name, password: `${name}-pw`, ...(email ? { email } : {}) });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
  });
  after(async () => {
    await s?.close();
    await smtp?.close();
    await slapd?.destroy();
  });
  const ready = (t: TestContext) => requirePeer(t, up, 'openssl');
  const redeem = (user: string, token: string) =>
    fetch(`${s.url}/account/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password: `${user}-pw`, invite: token }) });

  it('sends over STARTTLS with AUTH, with the configured sender, subject and a working link; one result per user', async (t) => {
    if (!ready(t)) return;
    const r = await s.api('POST', '/api/v1/invitations', { users: ['nina', 'quinn', 'ghost'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(
      r.body.results.map((x: any) => [x.name, x.ok]),
      [['nina', true], ['quinn', false], ['ghost', false]],
    );
    assert.match(r.body.results[1].error, /no e-mail address/);
    assert.match(r.body.results[2].error, /does not exist/);
    assert.equal(r.body.sent, 1);
    const [mail] = await smtp.waitFor(1);
    assert.equal(mail!.secure, true, 'the session was upgraded with STARTTLS');
    assert.equal(mail!.authUser, SMTP_AUTH.user);
    assert.equal(mail!.headers.from, 'IT Service Desk <it@example.org>');
    assert.equal(mail!.headers.to, 'nina@example.org');
    assert.deepEqual(mail!.envelopeTo, ['nina@example.org']);
    assert.equal(mail!.headers.subject, 'Set up sign-in confirmation for Countersign');
    const link = linkIn(mail!);
    assert.ok(link, mail!.text);
    assert.ok(link[0].startsWith(`${s.url}/account/#invite=`));
    // The link (with the password) opens a portal session once; the second use is refused.
    const first = await redeem('nina', link[1]!);
    assert.equal(first.status, 200);
    assert.equal((await first.json()).signedIn, true);
    const second = await redeem('nina', link[1]!);
    assert.equal(second.status, 410);
    assert.match((await second.json()).message, /already used or expired/);
    // The store holds no live link: only its digest.
    assert.equal(await s.ctx.store.tokens.take('invite', link[1]!), null);
  });

  it('a link for someone else is refused and stays usable; a wrong password spends nothing', async (t) => {
    if (!ready(t)) return;
    const before = smtp.mails.length;
    await s.api('POST', '/api/v1/invitations', { users: ['omar'] });
    const [mail] = (await smtp.waitFor(before + 1)).slice(before);
    const token = linkIn(mail!)![1]!;
    const other = await redeem('pat', token);
    assert.equal(other.status, 403);
    const wrong = await fetch(`${s.url}/account/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'omar', password: 'nope', invite: token }) });
    assert.equal(wrong.status, 401);
    assert.equal((await redeem('omar', token)).status, 200);
  });

  it('expires', async (t) => {
    if (!ready(t)) return;
    const before = smtp.mails.length;
    await s.api('POST', '/api/v1/invitations', { users: ['pat'] });
    const [mail] = (await smtp.waitFor(before + 1)).slice(before);
    skew += 3601_000;
    try {
      assert.equal((await redeem('pat', linkIn(mail!)![1]!)).status, 410);
    } finally {
      skew = 0;
    }
  });

  it('the CLI invites a list, one line per user with progress, and fails when one fails', async (t) => {
    if (!ready(t)) return;
    const before = smtp.mails.length;
    const r = await runCli(['invite', 'omar', 'quinn'], s.url);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^omar: sent to omar@example\.org {2}\(1\/2\)$/m);
    assert.match(r.stdout, /^quinn: no e-mail address for this user {2}\(2\/2\)$/m);
    assert.match(r.stdout, /invited 1 user\(s\), 1 failed/);
    await smtp.waitFor(before + 1);
  });

  it('the API and the CLI invite a directory group (nested members, addresses from the directory)', async (t) => {
    if (!ready(t) || !requirePeer(t, Boolean(slapd), 'slapd')) return;
    const before = smtp.mails.length;
    const r = await s.api('POST', '/api/v1/invitations', { group: 'staff' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.results.map((x: any) => [x.name, x.ok, x.email]).sort(), [
      ['alice', true, 'alice@example.org'],
      ['bob', true, 'bob@example.org'],
    ]);
    const mails = (await smtp.waitFor(before + 2)).slice(before);
    assert.deepEqual(mails.map((m) => m.headers.to).sort(), ['alice@example.org', 'bob@example.org']);
    // A directory user redeems with the directory's password.
    const alice = mails.find((m) => m.headers.to === 'alice@example.org')!;
    const res = await fetch(`${s.url}/account/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'alice', password: USERS.find((u) => u.uid === 'alice')!.password, invite: linkIn(alice)![1] }),
    });
    assert.equal(res.status, 200);

    const cli = await runCli(['invite', '--group', 'engineering'], s.url);
    assert.equal(cli.code, 0, cli.stderr + cli.stdout);
    for (const who of ['alice', 'bob', 'carol']) assert.match(cli.stdout, new RegExp(`^${who}: sent to ${who}@example\\.org$`, 'm'));
    assert.match(cli.stdout, /invited 3 user\(s\)/);
    await smtp.waitFor(before + 5);
  });

  it('the development server without SMTP writes the invitation, link included, to its log at info', async (t) => {
    if (!ready(t)) return;
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const dev = await startTestServer({ COUNTERSIGN_MODE: 'development' }, { log });
    try {
      await dev.api('POST', '/api/v1/users', { name: 'sam', password: 'sam-pw', email: 'sam@example.org' });
      const r = await dev.api('POST', '/api/v1/invitations', { users: ['sam'] });
      assert.equal(r.body.results[0].ok, true);
      const entry = lines.map((l) => JSON.parse(l)).find((e) => e.component === 'mail');
      assert.ok(entry, 'a mail log entry');
      assert.equal(entry.level, 30, 'at info');
      assert.equal(entry.to, 'sam@example.org');
      const token = /\/account\/#invite=([A-Za-z0-9_-]+)/.exec(entry.msg)![1]!;
      const res = await fetch(`${dev.url}/account/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'sam', password: 'sam-pw', invite: token }) });
      assert.equal(res.status, 200);
    } finally {
      await dev.close();
    }
  });

  it('production without SMTP sends nothing, logs no link, and says why per user', async (t) => {
    if (!ready(t)) return;
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const prod = await startTestServer({ COUNTERSIGN_MODE: 'production', COUNTERSIGN_STORE_KIND: 'memory', COUNTERSIGN_PUBLIC_URL: 'http://127.0.0.1:1' }, { log });
    try {
      await prod.api('POST', '/api/v1/users', { name: 'tess', password: 'tess-pw', email: 'tess@example.org' });
      const r = await prod.api('POST', '/api/v1/invitations', { users: ['tess'] });
      assert.equal(r.body.results[0].ok, false);
      assert.match(r.body.results[0].error, /no mail server is configured/);
      assert.ok(!lines.some((l) => l.includes('#invite=')));
    } finally {
      await prod.close();
    }
  });

  it('a mail server that refuses leaves no usable link behind and says why', async (t) => {
    if (!ready(t)) return;
    const bad = await startTestServer({
      COUNTERSIGN_MAIL_SMTP_HOST: '127.0.0.1',
      COUNTERSIGN_MAIL_SMTP_PORT: String(smtp.port),
      COUNTERSIGN_MAIL_SMTP_USER: SMTP_AUTH.user,
      COUNTERSIGN_MAIL_SMTP_PASSWORD: 'wrong-password',
      COUNTERSIGN_MAIL_SMTP_CA_FILE: smtp.caFile,
    });
    try {
      await bad.api('POST', '/api/v1/users', { name: 'rita', password: 'rita-pw', email: 'rita@example.org' });
      const r = await bad.api('POST', '/api/v1/invitations', { users: ['rita'] });
      assert.equal(r.body.results[0].ok, false);
      assert.match(r.body.results[0].error, /mail server refused/);
    } finally {
      await bad.close();
    }
  });
});
