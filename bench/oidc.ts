/**
 * bench/oidc — npm run bench:oidc
 *
 * 1. Complete authorization-code + PKCE logins per second (login page,
 *    password, one-time code, redirect, token redemption by openid-client)
 *    next to the same logins for a client that lets users without a second
 *    factor in with the password only — the second factor's cost, as a ratio.
 * 2. Time from a push approval being recorded to the sign-in page's event
 *    stream receiving it (p50/p99).
 * Passwords are hashed with scrypt N=1024 here (the tests' cost).
 */
import { performance } from 'node:perf_hooks';
import * as client from 'openid-client';
import { Authenticator } from '../src/cli/authenticator.js';
import { base32Decode, totp } from '../src/core/otp.js';
import { ScriptedBrowser, field } from '../test/helpers/browser.js';
import { startTestServer } from '../test/helpers/server.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 200);
const REDIRECT = 'http://127.0.0.1:1/cb';

const s = await startTestServer({}, {}, (c) => {
  c.http.trustProxy = 1; // each simulated browser gets its own X-Forwarded-For, so per-address limits see many users
  c.push.rateLimit.count = 1e9;
  c.oidc.clients = [
    { client_id: 'mfa', client_secret: 'mfa-secret-0123456789abcdef', redirect_uris: [REDIRECT] },
    { client_id: 'pwd', client_secret: 'pwd-secret-0123456789abcdef', redirect_uris: [REDIRECT], countersign_no_factor: 'allow' },
  ];
});
const opts = { execute: [client.allowInsecureRequests] };
const mfa = await client.discovery(new URL(s.issuer!), 'mfa', 'mfa-secret-0123456789abcdef', undefined, opts);
const pwd = await client.discovery(new URL(s.issuer!), 'pwd', 'pwd-secret-0123456789abcdef', undefined, opts);

// Users: each TOTP step counts once per user, so the OTP run needs many of them.
const USERS = 3000;
const seeds: Buffer[] = [];
for (let i = 0; i < USERS; i += 100) {
  await Promise.all(
    Array.from({ length: Math.min(100, USERS - i) }, async (_, k) => {
      const name = `u${i + k}`;
      await s.ctx.users.create({ name, password: `pw-${name}` });
      seeds[i + k] = base32Decode((await s.ctx.users.enrolOtp(name)).secret);
      await s.ctx.users.create({ name: `plain${i + k}`, password: `pw-plain${i + k}` });
    }),
  );
}

let ip = 0;
async function login(config: client.Configuration, user: string, password: string, code?: Buffer): Promise<void> {
  const b = new ScriptedBrowser();
  const forwarded = `10.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip++ & 255}`;
  b.headers = { 'x-forwarded-for': forwarded };
  const verifier = client.randomPKCECodeVerifier();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const page = await b.follow(url.toString());
  const stop = (u: string) => u.startsWith(REDIRECT);
  let r = await b.follow(new URL(`${new URL(page.url).pathname}/login`, page.url).toString(), { form: { csrf: field(page.body, 'csrf'), user, password } }, stop);
  if (code) {
    const otp = totp(code, Date.now(), { algorithm: 'SHA1', digits: 6, period: 30 });
    r = await b.follow(new URL(`${new URL(r.url).pathname}/otp`, r.url).toString(), { form: { csrf: field(r.body, 'csrf'), code: otp } }, stop);
  }
  if (!r.url.startsWith(REDIRECT)) throw new Error(`login did not complete: ${r.res.status} ${r.body.slice(0, 200)}`);
  await client.authorizationCodeGrant(config, new URL(r.url), { pkceCodeVerifier: verifier });
}

async function rate(run: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await run(next++);
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

// Warm up both paths, then measure. Users are used round-robin; a user's code is used once per 30 s step at most.
await login(pwd, 'plain0', 'pw-plain0');
const withOtp = await rate(async (i) => {
  const u = i % USERS;
  await login(mfa, `u${u}`, `pw-u${u}`, seeds[u]);
});
const pwdOnly = await rate(async (i) => {
  const u = i % USERS;
  await login(pwd, `plain${u}`, `pw-plain${u}`);
});

// Push approval → the page's event stream.
await s.ctx.users.create({ name: 'phone', password: 'pw-phone' });
await s.ctx.users.setFactor(['phone'], 'push', true);
const phone = await Authenticator.enrol((await s.ctx.devices.createEnrolment('phone')).uri);
let approvedAt = 0;
s.ctx.engine.on('resolved', (c) => {
  if (c.state === 'approved' && c.method === 'push') approvedAt = performance.now();
});
const lat: number[] = [];
for (let i = 0; i < SAMPLES; i++) {
  const b = new ScriptedBrowser();
  b.headers = { 'x-forwarded-for': `10.200.${(i >> 8) & 255}.${i & 255}` };
  const url = client.buildAuthorizationUrl(mfa, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const page = await b.follow(url.toString());
  const factor = await b.follow(new URL(`${new URL(page.url).pathname}/login`, page.url).toString(), {
    form: { csrf: field(page.body, 'csrf'), user: 'phone', password: 'pw-phone' },
  });
  const res = await b.request(new URL(`${new URL(factor.url).pathname}/events`, factor.url).toString());
  const reader = res.body!.getReader();
  const got = (async () => {
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      text += Buffer.from(value).toString();
      if (text.includes('event: outcome')) return performance.now();
    }
  })();
  let p;
  while (!(p = (await phone.pending())[0])) await new Promise((r) => setTimeout(r, 2));
  await phone.answer(p.challengeId, 'approve');
  lat.push((await got) - approvedAt);
  await reader.cancel().catch(() => {});
}
await s.close();

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((q / 100) * xs.length))]!;
console.log(`bench/oidc: ${SECONDS} s per run, ${CONCURRENCY} browsers in parallel, scrypt N=1024`);
console.log(`  code+PKCE logins with password + OTP     ${withOtp.toFixed(0)}/s`);
console.log(`  code+PKCE logins with the password only  ${pwdOnly.toFixed(0)}/s`);
console.log(`  ratio                                    ${(withOtp / pwdOnly).toFixed(2)}   (target ≥ 0.70, i.e. the second factor costs < 30%: ${withOtp / pwdOnly >= 0.7 ? 'met' : 'MISSED'})`);
console.log(`  push approval → page's event stream      p50 ${pct(lat, 50).toFixed(2)} ms  p99 ${pct(lat, 99).toFixed(2)} ms  (target p99 < 10 ms: ${pct(lat, 99) < 10 ? 'met' : 'MISSED'})`);
process.exit(0);
