/**
 * bench/push — npm run bench:push
 *
 * 1. Dispatch latency: from the start of a login (first factor already done)
 *    to the push request arriving at a local FCM server that speaks the v1
 *    wire format, through the real transport over HTTP/2 + TLS (p50/p99;
 *    target p99 < 10 ms).
 * 2. Answer verification: signed ES256 approvals fully checked per second
 *    (device lookup, signature, freshness, one-time nonce, challenge state,
 *    atomic approval), next to bare jose jwtVerify calls on the same tokens
 *    in the same run.
 * 3. Web Push: from the start of a login to the encrypted, VAPID-signed request
 *    arriving at a local Web Push service (test/helpers/webpush-receiver.ts, which
 *    checks the VAPID JWT and decrypts the body before it counts it) (p50/p99; target
 *    p99 < 10 ms); and the transport's requests built per second (payload, aes128gcm
 *    encryption, VAPID header, TTL/Urgency/Topic) next to bare web-push encrypt()
 *    calls on the same payload in the same run.
 */
import { performance } from 'node:perf_hooks';
import { createPublicKey } from 'node:crypto';
import { jwtVerify } from 'jose';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.js';
import { startServer } from '../src/main.js';
import { Authenticator } from '../src/cli/authenticator.js';
import webpush from 'web-push';
import createWebPushTransport from '../plugins/push-webpush/index.js';
import { pushFields, type PushMessage } from '../src/core/push.js';
import { pushServices } from '../test/helpers/push.js';
import { WebPushReceiver } from '../test/helpers/webpush-receiver.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 1000);
const VERIFY_MS = Number(process.env.BENCH_MS ?? 3000);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

const push = await pushServices();
const receiver = await WebPushReceiver.start();
// The local push service is on loopback, which only allowPrivateAddresses lets through.
const webPush = createWebPushTransport({ subject: 'mailto:bench@example.org', vapid: webpush.generateVAPIDKeys(), timeoutMs: 3000, endpoints: { allowPrivateAddresses: true } });
const config = loadConfig({
  COUNTERSIGN_HTTP_PORT: '0',
  COUNTERSIGN_PUSH_WEBPUSH_ALLOW_PRIVATE_ADDRESSES: 'true',
  COUNTERSIGN_SECRET_KEY: Buffer.alloc(32, 1).toString('base64'),
  COUNTERSIGN_ADMIN_TOKEN: 'bench-admin-token-0123456789',
  COUNTERSIGN_DEMO: 'false',
});
config.passwords.scryptN = 1024;
config.push.rateLimit.count = 1e9;
const running = await startServer(config, { log: pino({ level: 'silent' }), pushTransports: [...push.transports(), webPush] });
const { ctx } = running;

// 1. open → request at the FCM server
await ctx.users.create({ name: 'bench' });
await ctx.users.setFactor(['bench'], 'push', true);
const link = await ctx.devices.createEnrolment('bench');
const phone = await Authenticator.enrol(link.uri, { platform: 'android', pushToken: `bench_${'t'.repeat(140)}` });
let arrived: (() => void) | undefined;
const record = push.fcm.requests.push.bind(push.fcm.requests);
push.fcm.requests.push = (...items) => {
  arrived?.();
  return record(...items);
};
const origin = { front: 'bench', client: 'bench', ip: '127.0.0.1' };
const latencies: number[] = [];
for (let i = 0; i < SAMPLES + 50; i++) {
  const got = new Promise<number>((r) => (arrived = () => r(performance.now())));
  const t = performance.now();
  await ctx.login.begin('bench', null, origin);
  const at = await got;
  if (i >= 50) latencies.push(at - t);
  push.fcm.requests.length = 0;
}

// 2. full answer verification vs bare jose verify
const N = 4000;
const answers: string[] = [];
const challenges: string[] = [];
for (let i = 0; i < N; i++) {
  const c = await ctx.engine.open('bench', ['push'], origin);
  challenges.push(c.id);
  answers.push(await phone.sign('answer', { cid: c.id, decision: 'approve' }));
}
const key = createPublicKey({ key: { ...phone.file.privateJwk, d: undefined }, format: 'jwk' });
let bare = 0;
let start = performance.now();
while (performance.now() - start < VERIFY_MS) {
  await jwtVerify(answers[bare % N]!, key, { algorithms: ['ES256'] });
  bare++;
}
const bareRate = bare / ((performance.now() - start) / 1000);
let ours = 0;
start = performance.now();
for (; ours < N && performance.now() - start < VERIFY_MS; ours++) {
  const { device, claims } = await ctx.devices.verify(answers[ours]!, 'answer');
  await ctx.push.answer(device, claims);
}
const oursRate = ours / ((performance.now() - start) / 1000);

// 3. Web Push: open → request at the local push service, decrypted and checked there
await ctx.users.create({ name: 'bench-web' });
await ctx.users.setFactor(['bench-web'], 'push', true);
const webLink = await ctx.devices.createEnrolment('bench-web');
const subscription = receiver.subscribe(await webPush.publicKey());
const browser = await Authenticator.enrol(webLink.uri, { platform: 'webpush', pushToken: JSON.stringify(subscription) });
let webArrived: (() => void) | undefined;
const refused: string[] = [];
receiver.onPush = (p) => {
  if (p.error) refused.push(p.error);
  webArrived?.();
};
const webLatencies: number[] = [];
for (let i = 0; i < SAMPLES + 50; i++) {
  const got = new Promise<number>((r) => (webArrived = () => r(performance.now())));
  const t = performance.now();
  await ctx.login.begin('bench-web', null, origin);
  const at = await got;
  if (i >= 50) webLatencies.push(at - t);
  receiver.requests.length = 0;
}
if (refused.length) throw new Error(`the local push service refused requests: ${refused[0]}`);

// Requests built per second: the transport vs bare web-push encrypt() of the same payload
const target = { deviceId: browser.file.deviceId, platform: 'webpush' as const, token: JSON.stringify(subscription) };
const now = Date.now();
const sample: PushMessage = {
  challengeId: 'ch_bench', displayCode: '4821', user: 'bench-web', client: 'bench', ip: '127.0.0.1',
  createdAt: now, deadline: now + 150_000, watch: 'approve-reject', numberMatching: false,
};
const payload = JSON.stringify(pushFields(sample));
const rate = async (fn: () => unknown | Promise<unknown>) => {
  let n = 0;
  const began = performance.now();
  while (performance.now() - began < VERIFY_MS) {
    await fn();
    n++;
  }
  return n / ((performance.now() - began) / 1000);
};
await rate(() => webPush.prepare(target, sample, now)); // warm-up
const bareEncrypt = await rate(() => webpush.encrypt(subscription.keys.p256dh, subscription.keys.auth, payload, 'aes128gcm'));
const transportRate = await rate(() => webPush.prepare(target, sample, now));
const naiveKeys = webpush.generateVAPIDKeys();
const naive = await rate(() =>
  webpush.generateRequestDetails(subscription, payload, {
    TTL: 150, urgency: 'high', contentEncoding: 'aes128gcm',
    vapidDetails: { subject: 'mailto:bench@example.org', ...naiveKeys },
  }),
);

await running.close();
await push.close();
await receiver.close();

console.log(`bench/push: ${SAMPLES} logins, verification runs of ${VERIFY_MS} ms`);
console.log(`  login start → push request at local FCM   p50 ${pct(latencies, 50).toFixed(2)} ms   p99 ${pct(latencies, 99).toFixed(2)} ms   (target p99 < 10 ms: ${pct(latencies, 99) < 10 ? 'met' : 'MISSED'})`);
console.log(`  signed approvals fully verified + applied  ${oursRate.toFixed(0)}/s`);
console.log(`  bare jose ES256 jwtVerify                  ${bareRate.toFixed(0)}/s`);
console.log(`  ratio                                      ${(oursRate / bareRate).toFixed(2)}`);
console.log(`  webpush: login start → encrypted request at local push service   p50 ${pct(webLatencies, 50).toFixed(2)} ms   p99 ${pct(webLatencies, 99).toFixed(2)} ms   (target p99 < 10 ms: ${pct(webLatencies, 99) < 10 ? 'met' : 'MISSED'})`);
console.log(`  webpush: transport requests built (encrypt + VAPID + headers)   ${transportRate.toFixed(0)}/s`);
console.log(`  bare web-push encrypt() aes128gcm                              ${bareEncrypt.toFixed(0)}/s`);
console.log(`  ratio                                                          ${(transportRate / bareEncrypt).toFixed(2)}`);
console.log(`  (web-push generateRequestDetails signing VAPID every message   ${naive.toFixed(0)}/s)`);
process.exit(0);
