/**
 * bench/radius — npm run bench:radius   (needs radclient, FreeRADIUS and Redis)
 *
 * 1. Access-Request throughput in `append` mode (password + TOTP), driven by
 *    Debian's radclient with parallel requests, against Countersign on the
 *    Redis store, and in the same run against FreeRADIUS answering PAP from
 *    its users file (the ceiling for a RADIUS server on this machine).
 * 2. push-wait: time from the approval being recorded to the Access-Accept
 *    arriving back at the NAS socket on loopback (p50/p99).
 * Password hashing is scrypt N=1024 here (the tests' cost); production's
 * default (N=32768) makes the first factor, not the RADIUS front, the limit.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import radius from 'radius';
import { Authenticator } from '../src/cli/authenticator.js';
import { base32Decode, totp } from '../src/core/otp.js';
import { freeUdpPort, startFreeRadius } from '../test/helpers/freeradius.js';
import { testRedisUrl, uniquePrefix } from '../test/helpers/peers.js';
import { startTestServer } from '../test/helpers/server.js';

const USERS = Number(process.env.BENCH_USERS ?? 2000);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 64);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 200);
const SECRET = 'bench-radius-secret';
const dir = mkdtempSync(join(tmpdir(), 'cs-bench-radius-'));

/** radclient runs beside the in-process server, so it must not block the event loop. */
const runRadclient = async (port: number, file: string) => {
  const t = performance.now();
  const child = spawn('radclient', ['-q', '-s', '-p', String(PARALLEL), '-r', '3', '-t', '5', '-f', file, `127.0.0.1:${port}`, 'auth', SECRET]);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  await new Promise((r) => child.on('close', r));
  const seconds = (performance.now() - t) / 1000;
  const accepted = Number(/Accepted\s*:\s*(\d+)/.exec(out)?.[1] ?? 0);
  return { seconds, accepted, rate: accepted / seconds };
};

// 1a. Countersign on Redis, append mode.
const prefix = uniquePrefix('bench-radius');
const client = { name: 'bench', address: '127.0.0.1/32', secret: SECRET, mode: 'append' as const, secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] };
const cs = await startTestServer({ COUNTERSIGN_REDIS_URL: testRedisUrl(), COUNTERSIGN_REDIS_PREFIX: prefix }, {}, (c) => {
  c.radius.clients = [client];
});
const packets: string[] = [];
const otpOnly: string[] = [];
const names = Array.from({ length: USERS }, (_, i) => `bench${i}`);
for (let i = 0; i < USERS; i += 100) {
  await Promise.all(
    names.slice(i, i + 100).map(async (name) => {
      await cs.ctx.users.create({ name, password: `pw-${name}` });
      const e = await cs.ctx.users.enrolOtp(name);
      const now = Date.now();
      const code = totp(base32Decode(e.secret), now, e.params);
      packets.push(`User-Name = ${name}, User-Password = "pw-${name},${code}", Message-Authenticator = 0x00`);
      // The next time step's code, for the second-factor-only run (each code counts once).
      otpOnly.push(`User-Name = ${name}, User-Password = "${totp(base32Decode(e.secret), now + 30_000, e.params)}", Message-Authenticator = 0x00`);
    }),
  );
}
const csFile = join(dir, 'countersign.txt');
writeFileSync(csFile, packets.join('\n\n') + '\n');
const ours = await runRadclient(cs.radiusPort!, csFile);
// The same server with the NAS doing the password (second-factor-only): what the front itself costs.
client.secondFactorOnly = true;
await cs.ctx.radiusClients.refresh();
const otpFile = join(dir, 'otp-only.txt');
writeFileSync(otpFile, otpOnly.join('\n\n') + '\n');
const oursOtp = await runRadclient(cs.radiusPort!, otpFile);
await cs.close();
const raw = new Redis(testRedisUrl());
for (let cursor = '0'; ; ) {
  const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
  if (keys.length) await raw.del(...keys);
  if ((cursor = next) === '0') break;
}
raw.disconnect();

// 1b. FreeRADIUS answering PAP from its users file, same users.
const frPort = await freeUdpPort();
const fr = await startFreeRadius({ port: frPort, nasSecret: SECRET, users: names.map((n) => ({ name: n, password: `pw-${n}` })) });
const frFile = join(dir, 'freeradius.txt');
writeFileSync(frFile, names.map((n) => `User-Name = ${n}, User-Password = "pw-${n}", Message-Authenticator = 0x00`).join('\n\n') + '\n');
const theirs = await runRadclient(frPort, frFile);
await fr.stop();

// 2. push-wait: approval recorded → Access-Accept at the NAS.
const pw = await startTestServer({}, {}, (c) => {
  c.radius.clients = [{ name: 'bench-push', address: '127.0.0.1/32', secret: SECRET, mode: 'push-wait', secondFactorOnly: false, requireMessageAuthenticator: true, appendDelimiter: ',', acceptAttributes: [] }];
  c.push.rateLimit.count = 1e9;
});
await pw.ctx.users.create({ name: 'phoneuser', password: 'phone-pw' });
await pw.ctx.users.setFactor(['phoneuser'], 'push', true);
const phone = await Authenticator.enrol((await pw.ctx.devices.createEnrolment('phoneuser')).uri);
let approvedAt = 0;
pw.ctx.engine.on('resolved', () => (approvedAt = performance.now()));
const nas = dgram.createSocket('udp4');
await new Promise<void>((r) => nas.bind(0, '127.0.0.1', r));
const lat: number[] = [];
for (let i = 0; i < SAMPLES; i++) {
  const packet = radius.encode({
    code: 'Access-Request',
    secret: SECRET,
    identifier: i % 256,
    attributes: [['User-Name', 'phoneuser'], ['User-Password', 'phone-pw']],
    add_message_authenticator: true,
  });
  const reply = new Promise<number>((r) => nas.once('message', () => r(performance.now())));
  nas.send(packet, pw.radiusPort!, '127.0.0.1');
  let p;
  while (!(p = (await phone.pending())[0])) await new Promise((r) => setTimeout(r, 2));
  await phone.answer(p.challengeId, 'approve');
  lat.push((await reply) - approvedAt);
}
nas.close();
await pw.close();

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((q / 100) * xs.length))]!;
console.log(`bench/radius: ${USERS} users, radclient -p ${PARALLEL}; scrypt N=1024 for Countersign's passwords`);
console.log(`  Countersign (Redis, append: password + TOTP)  ${ours.rate.toFixed(0)} Access-Requests/s  (${ours.accepted}/${USERS} accepted in ${ours.seconds.toFixed(2)} s)`);
console.log(`  Countersign (Redis, second-factor-only: TOTP) ${oursOtp.rate.toFixed(0)} Access-Requests/s  (${oursOtp.accepted}/${USERS} accepted in ${oursOtp.seconds.toFixed(2)} s)`);
console.log(`  FreeRADIUS (PAP from its users file)         ${theirs.rate.toFixed(0)} Access-Requests/s  (${theirs.accepted}/${USERS} accepted in ${theirs.seconds.toFixed(2)} s)`);
console.log(`  ratio, append / FreeRADIUS                   ${(ours.rate / theirs.rate).toFixed(2)}   (target ≥ 0.5: ${ours.rate / theirs.rate >= 0.5 ? 'met' : 'MISSED'}; scrypt of the password is the limit)`);
console.log(`  ratio, second-factor-only / FreeRADIUS       ${(oursOtp.rate / theirs.rate).toFixed(2)}`);
console.log(`  push-wait approval → Access-Accept at the NAS  p50 ${pct(lat, 50).toFixed(2)} ms  p99 ${pct(lat, 99).toFixed(2)} ms  (target p99 < 5 ms: ${pct(lat, 99) < 5 ? 'met' : 'MISSED'})`);
process.exit(0);
