import express, { type Express } from 'express';
import { z } from 'zod';
import { CountersignError } from '../../core/errors.js';
import { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';

export const DEVICE_BASE = '/device/v1';

const signed = z
  .object({ request: z.string().min(20).max(8192).describe('compact JWS (ES256) signed with the device key') })
  .strict();

/**
 * The phone-facing API, the contract for authenticator apps: enrol with a
 * one-time link, then every call is a JWS signed with the device's own key
 * (typ countersign-<kind>+jwt, kid = device id, sub = user, iat, jti).
 */
export function mountDeviceApi(app: Express, ctx: AppContext): void {
  const router = express.Router();
  const api = new ApiBuilder(router, DEVICE_BASE, {
    title: 'Countersign device API',
    version: '1',
    description:
      'For authenticator apps. Enrol once with the token from an enrolment link (countersign://enrol?server=…&token=…&user=…), ' +
      'sending an ES256 public JWK generated on the device. Every later request is `{ "request": <compact JWS> }`, signed with that key: ' +
      'header `{alg: "ES256", typ: "countersign-<answer|poll|update>+jwt", kid: <deviceId>}`, claims `sub` (user), `iat` (seconds, ' +
      'within 60 s of the server clock), `jti` (a fresh random nonce; each is accepted once). Push payloads carry only ids and what ' +
      'the login screen shows; anything more is fetched here.',
  });
  app.get(`${DEVICE_BASE}/openapi.json`, (_req, res) => {
    res.json(api.openapi());
  });
  router.use(express.json({ limit: '16kb' }));

  api.route({
    method: 'post',
    path: '/enrol',
    summary: 'Enrol a device with a one-time enrolment token',
    body: z
      .object({
        token: z.string().min(16).max(128),
        platform: z.enum(['android', 'ios']),
        pushToken: z.string().min(1).max(4096).optional().describe('FCM registration token or APNs device token; omit for poll-only'),
        publicKey: z.record(z.string(), z.unknown()).describe('EC P-256 public JWK'),
        name: z.string().min(1).max(100),
        protected: z.boolean().describe('the app is PIN/biometric-protected'),
      })
      .strict(),
    errors: { 400: 'invalid input or key', 410: 'the link is unknown, used or expired', 429: 'too many attempts' },
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
    summary: 'Pending logins this device may answer (typ countersign-poll+jwt); poll-only devices call this',
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
      'Approve or reject a login (typ countersign-answer+jwt; claims cid, decision approve|reject, number when asked, reason not-me|cancelled, via phone|watch)',
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
    summary: 'Replace the device’s push token (typ countersign-update+jwt; claim pushToken, absent for poll-only)',
    body: signed,
    errors: { 400: 'malformed', 401: 'unknown device or bad signature' },
    handler: async ({ body }) => {
      const { device, claims } = await ctx.devices.verify(body.request, 'update');
      const token = claims.pushToken;
      if (token !== undefined && (typeof token !== 'string' || token.length === 0 || token.length > 4096)) {
        throw new CountersignError(400, 'malformed_request', 'pushToken must be a non-empty string');
      }
      await ctx.devices.updatePushToken(device, token as string | undefined);
      return { ok: true };
    },
  });

  app.use(DEVICE_BASE, router);
}
