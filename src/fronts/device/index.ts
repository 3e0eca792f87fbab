import express, { type Express, type Response } from 'express';
import { z } from 'zod';
import type { Challenge } from '../../core/challenge.js';
import { CountersignError, badRequest } from '../../core/errors.js';
import type { DeviceRecord } from '../../core/store.js';
import { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';

export const DEVICE_BASE = '/device/v1';

const jws = z.string().min(20).max(8192).describe('compact JWS (ES256) signed with the device key');
const signed = z.object({ request: jws }).strict();

/** How an event stream (GET /events) behaves; tests shorten these. */
export const eventStream = {
  /** Look at the user's pending logins this often (besides at once on this instance's own news). */
  checkMs: 2_000,
  /** A comment line this often keeps proxies from closing an idle stream. */
  keepAliveMs: 15_000,
  /** The stream ends after this; the app opens a new one with a fresh signed request. */
  lifetimeMs: 5 * 60_000,
  /** Open streams per device on one instance. */
  perDevice: 4,
};

/** How many logins POST /history lists. */
const HISTORY = 20;

export interface DeviceApi {
  /** Ends the open event streams (shutdown). */
  close(): void;
}

/**
 * The phone-facing API, the contract for authenticator apps: enrol with a
 * one-time link, then every call is a JWS signed with the device's own key
 * (typ countersign-<kind>+jwt, kid = device id, sub = user, iat, jti).
 */
export function mountDeviceApi(app: Express, ctx: AppContext): DeviceApi {
  const router = express.Router();
  const api = new ApiBuilder(router, DEVICE_BASE, {
    title: 'Countersign device API',
    version: '1',
    description:
      'For authenticator apps (native, and the web app at /app/). Enrol once with the token from an enrolment link ' +
      '(countersign://enrol?server=…&token=…&user=…, or <server>/app/#enrol=server=…&token=…&user=… for the web app), ' +
      'sending an ES256 public JWK generated on the device. Every later request is `{ "request": <compact JWS> }` ' +
      '(GET /events: `?request=<compact JWS>`), signed with that key: ' +
      'header `{alg: "ES256", typ: "countersign-<answer|poll|update>+jwt", kid: <deviceId>}`, claims `sub` (user), `iat` (seconds, ' +
      'within 60 s of the server clock), `jti` (a fresh random nonce of 16 to 128 characters; each is accepted once). Push payloads ' +
      '(FCM, APNs, Web Push) carry only ids and what the login screen shows; anything more is fetched here.',
  });
  app.get(`${DEVICE_BASE}/openapi.json`, (_req, res) => {
    res.json(api.openapi());
  });
  router.use(express.json({ limit: '16kb' }));

  api.route({
    method: 'post',
    path: '/enrol',
    summary: 'Anonymous, with a one-time enrolment token: enrol a device (webpush: pushToken is the PushSubscription JSON)',
    body: z
      .object({
        token: z.string().min(16).max(128),
        platform: z.enum(['android', 'ios', 'webpush']),
        pushToken: z
          .string()
          .min(1)
          .max(4096)
          .optional()
          .describe('FCM registration token, APNs device token, or for webpush JSON.stringify(PushSubscription); omit for poll-only'),
        publicKey: z.record(z.string(), z.unknown()).describe('EC P-256 public JWK'),
        name: z.string().min(1).max(100),
        protected: z.boolean().describe('the app is PIN/biometric-protected'),
      })
      .strict(),
    errors: {
      400: 'invalid input, key or push subscription, or a subscription whose push service this server does not send to (push_endpoint_refused)',
      409: 'the user has push.maxDevicesPerUser devices already; remove one first (the link stays usable)',
      410: 'the link is unknown, used or expired',
      429: 'too many attempts',
    },
    handler: async ({ req, body, res }) => {
      if ((await ctx.store.guards.hit(`enrol-ip:${req.ip}`, 60_000)) > 30) {
        throw new CountersignError(429, 'too_many_attempts', 'too many enrolment attempts; wait a minute');
      }
      const d = await ctx.devices.enrol(body);
      void ctx.audit.record({ at: ctx.clock.now(), type: 'device', user: d.user, ip: req.ip, detail: { action: 'device.enrol', device: d.id, platform: d.platform } });
      res.status(201);
      return { deviceId: d.id, user: d.user, server: ctx.devices.publicUrl };
    },
  });

  api.route({
    method: 'post',
    path: '/pending',
    summary: 'Signed by the device (typ countersign-poll+jwt): pending logins it may answer; poll-only devices call this',
    body: signed,
    errors: { 401: 'unknown device or bad signature', 409: 'replayed request' },
    handler: async ({ body }) => {
      const { device } = await ctx.devices.verify(body.request, 'poll');
      return { pending: await ctx.push.pendingFor(device) };
    },
  });

  api.route({
    method: 'post',
    path: '/answer',
    summary:
      'Signed by the device (typ countersign-answer+jwt): approve or reject a login (claims cid, decision approve|reject, number when asked, reason not-me|cancelled, via phone|watch)',
    body: signed,
    errors: {
      400: 'malformed answer',
      401: 'unknown device or bad signature',
      403: 'another user’s login, wrong number (the login is rejected), or approval from a watch where the phone is required',
      404: 'unknown login',
      409: 'replayed request, or the login is already decided or expired',
    },
    handler: async ({ body }) => {
      const { device, claims } = await ctx.devices.verify(body.request, 'answer');
      const c = await ctx.push.answer(device, claims);
      return { challengeId: c.id, state: c.state };
    },
  });

  api.route({
    method: 'post',
    path: '/token',
    summary:
      'Signed by the device (typ countersign-update+jwt): replace its push token (claim pushToken: a string, or null for poll-only; ' +
      'a request with no claim at all also means poll-only), rename it (claim name), say whether the app is locked (claim protected: ' +
      'approvals then come only from the unlocked app), or remove it (claim forget: true)',
    body: signed,
    errors: {
      400: 'malformed, or a push token its platform cannot use (a subscription whose push service this server does not send to: push_endpoint_refused)',
      401: 'unknown device or bad signature',
      409: 'replayed request',
    },
    handler: async ({ req, body }) => {
      const { device, claims } = await ctx.devices.verify(body.request, 'update');
      const { pushToken: token, name, forget, protected: locked } = claims;
      if (locked !== undefined && typeof locked !== 'boolean') throw badRequest('malformed_request', 'protected, when present, is true or false');
      if (forget !== undefined && forget !== true) throw badRequest('malformed_request', 'forget, when present, is true');
      if (token !== undefined && token !== null && (typeof token !== 'string' || token.length === 0 || token.length > 4096)) {
        throw badRequest('malformed_request', 'pushToken must be a non-empty string, or null');
      }
      if (name !== undefined && (typeof name !== 'string' || name.trim().length === 0 || name.length > 100)) {
        throw badRequest('malformed_request', 'name must be 1 to 100 characters');
      }
      const audit = (action: string, detail: Record<string, unknown> = {}) =>
        void ctx.audit.record({ at: ctx.clock.now(), type: 'device', user: device.user, ip: req.ip, detail: { action, device: device.id, ...detail } });
      if (forget) {
        await ctx.devices.revoke(device.user, device.id);
        audit('device.forget');
        closeStreams(device);
        return { ok: true, forgotten: true };
      }
      // No claim at all is the original "poll only from now on"; a rename alone keeps the token.
      // The token first: a subscription its platform refuses (400) leaves the name alone too.
      if ('pushToken' in claims || (name === undefined && locked === undefined)) {
        await ctx.devices.updatePushToken(device, (token as string | null | undefined) ?? undefined);
      }
      if (typeof locked === 'boolean' && locked !== device.protected) {
        await ctx.devices.setProtected(device, locked);
        audit('device.lock', { protected: locked });
      }
      if (typeof name === 'string') {
        await ctx.devices.rename(device.user, device.id, name.trim());
        audit('device.rename', { name: name.trim() });
      }
      return { ok: true };
    },
  });

  api.route({
    method: 'get',
    path: '/webpush-key',
    summary: 'Anonymous: the VAPID public key (base64url) the web app subscribes to Web Push with (applicationServerKey)',
    errors: { 404: 'Web Push is off on this server' },
    handler: async ({ res }) => {
      if (!ctx.webPush) throw new CountersignError(404, 'webpush_off', 'Web Push is not enabled on this server (push.webpush.enabled)');
      res.set('cache-control', 'no-cache');
      return { publicKey: await ctx.webPush.publicKey() };
    },
  });

  api.route({
    method: 'post',
    path: '/history',
    summary: `Signed by the device (typ countersign-poll+jwt): its user's last ${HISTORY} logins (time, client, ip, outcome, method, displayCode)`,
    body: signed,
    errors: { 401: 'unknown device or bad signature', 409: 'replayed request' },
    handler: async ({ body }) => {
      const { device } = await ctx.devices.verify(body.request, 'poll');
      // By type in the store: the user's RADIUS packets and device events never crowd logins out.
      const events = await ctx.store.audit.query({ user: device.user, type: 'login', stream: 'security', limit: HISTORY });
      const logins = events.map((e) => ({
        time: e.at,
        ...(e.client !== undefined ? { client: e.client } : {}),
        ...(e.ip !== undefined ? { ip: e.ip } : {}),
        outcome: e.outcome,
        ...(e.method !== undefined ? { method: e.method } : {}),
        ...(typeof e.detail?.displayCode === 'string' ? { displayCode: e.detail.displayCode } : {}),
      }));
      return { logins };
    },
  });

  // Event streams: who listens for which user, so this instance's own news reaches them at once.
  const streams = new Map<string, Set<Stream>>();
  const poke = (user: string) => streams.get(user)?.forEach((st) => st.check());
  // A login of the user was decided (here), or became the user's pending one (here).
  const onNews = (c: Challenge) => poke(c.user);
  ctx.engine.on('resolved', onNews);
  ctx.push.on('offered', onNews);
  const closeStreams = (d: DeviceRecord) => streams.get(d.user)?.forEach((st) => st.device.id === d.id && st.end());

  interface Stream {
    device: DeviceRecord;
    check(): void;
    end(): void;
  }

  api.route({
    method: 'get',
    path: '/events',
    summary:
      'Signed by the device (?request=<JWS typ countersign-poll+jwt>, checked once when opened): text/event-stream of `pending` events, ' +
      'data {"pending": [...]} as POST /pending answers, sent at once and whenever the list changes; keep-alive comments; ends after 5 minutes ' +
      '(open a new one with a fresh request)',
    query: z.object({ request: jws }),
    errors: { 401: 'unknown device or bad signature', 409: 'replayed request', 429: 'too many open streams for this device' },
    handler: async ({ res, query }) => {
      const { device } = await ctx.devices.verify(query.request, 'poll');
      const mine = streams.get(device.user) ?? new Set<Stream>();
      if ([...mine].filter((st) => st.device.id === device.id).length >= eventStream.perDevice) {
        throw new CountersignError(429, 'too_many_streams', 'this device has too many event streams open; close one');
      }
      streams.set(device.user, mine);
      res.status(200).set({ 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      openStream(res, device, mine, () => {
        if (mine.size === 0 && streams.get(device.user) === mine) streams.delete(device.user);
      });
    },
  });

  function openStream(res: Response, device: DeviceRecord, mine: Set<Stream>, emptied: () => void): void {
    let last = '';
    let ended = false;
    let running = false;
    let again = false;
    const write = (text: string) => {
      if (!ended) res.write(text);
    };
    const stream: Stream = {
      device,
      check() {
        if (ended) return;
        if (running) {
          again = true;
          return;
        }
        running = true;
        void (async () => {
          try {
            do {
              again = false;
              // A device revoked or forgotten meanwhile hears nothing more.
              const current = await ctx.store.devices.get(device.user, device.id);
              if (!current) return stream.end();
              const data = JSON.stringify({ pending: await ctx.push.pendingFor(current) });
              if (data !== last) {
                last = data;
                write(`event: pending\ndata: ${data}\n\n`);
              }
            } while (again && !ended);
          } catch (err) {
            // The store did not answer: the next check tries again.
            ctx.log.debug({ err, device: device.id }, 'event stream check failed');
          } finally {
            running = false;
          }
        })();
      },
      end() {
        if (ended) return;
        ended = true;
        clearInterval(checks);
        clearInterval(beats);
        clearTimeout(lifetime);
        mine.delete(stream);
        emptied();
        res.end();
      },
    };
    const checks = setInterval(() => stream.check(), eventStream.checkMs);
    const beats = setInterval(() => write(': keep-alive\n\n'), eventStream.keepAliveMs);
    const lifetime = setTimeout(() => stream.end(), eventStream.lifetimeMs);
    res.on('close', () => stream.end());
    mine.add(stream);
    stream.check();
  }

  app.use(DEVICE_BASE, router);
  return {
    close() {
      ctx.engine.off('resolved', onNews);
      ctx.push.off('offered', onNews);
      for (const mine of [...streams.values()]) for (const st of [...mine]) st.end();
    },
  };
}
