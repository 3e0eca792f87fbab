import { z } from 'zod';
import QRCode from 'qrcode';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from './audit.js';

/** Push enrolment links and the devices they produced, per user. */
export function deviceRoutes(api: ApiBuilder, ctx: AppContext): void {
  api.route({
    method: 'post',
    path: '/users/:name/enrolments',
    summary:
      'Create a one-time push enrolment link for a user (valid 10 minutes by default): uri (countersign://enrol?…) for native apps and the reference authenticator, appUrl (<publicUrl>/app/#enrol=…) for the web app; the QR codes carry appUrl',
    errors: { 404: 'no such user', 409: 'the user has push.maxDevicesPerUser devices already; remove one first' },
    handler: async ({ req, res }) => {
      const name = String(req.params.name);
      const link = await ctx.devices.createEnrolment(name);
      adminAudit(ctx, req, 'device.enrolment', { user: name });
      res.status(201);
      // The QR code is for a phone's camera, which opens https links, not countersign://: it
      // carries the web app's link when there is one.
      const scanned = link.appUrl ?? link.uri;
      return {
        ...link,
        qrSvg: await QRCode.toString(scanned, { type: 'svg', margin: 2 }),
        qrPng: await QRCode.toDataURL(scanned, { margin: 2, scale: 6 }),
      };
    },
  });

  api.route({
    method: 'get',
    path: '/users/:name/devices',
    summary: 'The devices enrolled for a user',
    errors: { 404: 'no such user' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      await ctx.users.require(name);
      return { devices: (await ctx.devices.list(name)).map((d) => ctx.devices.view(d)) };
    },
  });

  api.route({
    method: 'patch',
    path: '/users/:name/devices/:id',
    summary: 'Rename a device',
    body: z.object({ name: z.string().min(1).max(100) }).strict(),
    errors: { 404: 'no such device' },
    handler: async ({ req, body }) => {
      const name = String(req.params.name);
      const device = ctx.devices.view(await ctx.devices.rename(name, String(req.params.id), body.name));
      adminAudit(ctx, req, 'device.rename', { user: name, detail: { device: String(req.params.id), name: body.name } });
      return device;
    },
  });

  api.route({
    method: 'delete',
    path: '/users/:name/devices/:id',
    summary: 'Revoke a device: its signatures are no longer accepted',
    errors: { 404: 'no such device' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      await ctx.devices.revoke(name, String(req.params.id));
      // A device taken away (lost, stolen) no longer keeps anyone signed in that it let in.
      const sessionsEnded = await ctx.sessions.endAll(name);
      adminAudit(ctx, req, 'device.revoke', { user: name, detail: { device: String(req.params.id), sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } });
      return { ok: true };
    },
  });
}
