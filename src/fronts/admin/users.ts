import { z } from 'zod';
import QRCode from 'qrcode';
import type { ApiBuilder } from '../../http/openapi.js';
import { localUserName, userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import type { UserRecord } from '../../core/store.js';
import { adminAudit } from './audit.js';
import { membersOf } from './directories.js';
import { notFound } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';

const otpParams = z
  .object({
    type: z.enum(['totp', 'hotp']).optional(),
    algorithm: z.enum(['SHA1', 'SHA256', 'SHA512']).optional(),
    digits: z.number().int().min(6).max(8).optional(),
    period: z.number().int().min(10).max(120).optional(),
  })
  .strict();

const password = z.string().min(1).max(1024);

const withQr = async <T extends { uri: string }>(e: T) => ({
  ...e,
  qrSvg: await QRCode.toString(e.uri, { type: 'svg', margin: 2 }),
  qrPng: await QRCode.toDataURL(e.uri, { margin: 2, scale: 6 }),
});

/** Runs `fn` over `items` with at most `limit` in flight, keeping their order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function userRoutes(api: ApiBuilder, ctx: AppContext): void {
  api.route({
    method: 'get',
    path: '/users',
    summary: 'List users in name order, optionally by name prefix, a page at a time',
    query: z.object({
      prefix: z.string().max(128).optional(),
      after: z.string().max(128).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: ({ query }) => ctx.users.list(query),
  });

  api.route({
    method: 'post',
    path: '/users',
    summary: 'Create a user (password optional: without one, the first factor must come from elsewhere)',
    body: z
      .object({
        name: localUserName,
        password: password.optional(),
        displayName: z.string().max(200).optional(),
        email: z.email().optional(),
        role: z.enum(['admin', 'helpdesk']).optional().describe('console access'),
      })
      .strict(),
    errors: { 400: 'invalid input', 409: 'the name is taken' },
    handler: async ({ req, body, res }) => {
      const user = await ctx.users.create(body);
      adminAudit(ctx, req, 'user.create', { user: body.name, detail: { role: body.role, withPassword: body.password !== undefined } });
      res.status(201);
      return user;
    },
  });

  // Registered before /users/:name so "factors" is not taken for a name.
  api.route({
    method: 'post',
    path: '/users/factors',
    summary: 'Turn OTP or push on or off for many users in one call: named users, or every (nested) member of a directory group, records made for those who have none yet',
    body: z
      .object({
        users: z.array(userName).min(1).max(10_000).optional(),
        group: z.string().min(1).max(256).optional().describe('a directory group: its members, nested'),
        directory: z.string().max(32).optional().describe('with group: only this directory'),
        factor: z.enum(['otp', 'push']),
        enabled: z.boolean(),
        otp: otpParams.optional(),
      })
      .strict()
      .refine((b) => (b.users === undefined) !== (b.group === undefined), 'give either users or group'),
    errors: { 400: 'invalid input' },
    handler: async ({ req, body }) => {
      const asked = body.users ?? (await membersOf(ctx, body.group!, body.directory));
      // Read first so the audit can name the users whose factor really changed, not every name asked for.
      const before = new Map<string, UserRecord | null>();
      const names = [...new Set(asked)];
      (await mapLimit(names, 64, (n) => ctx.store.users.get(n))).forEach((u, i) => before.set(names[i]!, u));
      const results = await ctx.users.setFactor(names, body.factor, body.enabled, body.otp);
      const succeeded = results.filter((r) => r.ok).length;
      const changed = results.filter((r) => {
        if (!r.ok) return false;
        const u = before.get(r.name);
        const was = body.factor === 'push' ? u?.pushEnabled : u?.otpEnabled;
        return Boolean(r.otp) || was !== body.enabled;
      });
      // One event per user changed, so `audit --user` finds it, tied to the call's own event by
      // `batch`. Not awaited: ten thousand writes leave pipelined while the answer goes out.
      const batch = newToken(9);
      const group = body.group ? { group: body.group } : {};
      const action = `${body.factor}.${body.enabled ? 'enable' : 'disable'}`;
      for (const r of changed) adminAudit(ctx, req, action, { user: r.name, detail: { ...group, batch, ...(r.otp ? { enrolled: true } : {}) } });
      adminAudit(ctx, req, 'factors.bulk', {
        detail: {
          factor: body.factor,
          enabled: body.enabled,
          ...group,
          batch,
          requested: results.length,
          succeeded,
          failed: results.length - succeeded,
          changed: changed.length,
        },
      });
      return { succeeded, failed: results.length - succeeded, results };
    },
  });

  api.route({
    method: 'get',
    path: '/users/:name',
    summary: 'Show one user and the state of their factors, with locks and the push allowance (pushes sent in this window, the limit, and while at it when the window ends)',
    errors: { 404: 'no such user' },
    handler: ({ req }) => ctx.users.get(String(req.params.name)),
  });

  api.route({
    method: 'patch',
    path: '/users/:name',
    summary: 'Change a user’s password (null removes it), display name, email or number matching (null: the global setting)',
    body: z
      .object({
        password: password.nullable().optional(),
        displayName: z.string().max(200).optional(),
        email: z.email().optional(),
        numberMatching: z.boolean().nullable().optional(),
        role: z.enum(['admin', 'helpdesk']).nullable().optional(),
      })
      .strict(),
    errors: { 404: 'no such user' },
    handler: async ({ req, body }) => {
      const name = String(req.params.name);
      const before = await ctx.users.require(name);
      const user = await ctx.users.update(name, body);
      // A new or removed password or role voids what the old one let in: every session of the
      // user (console, portal, OpenID Connect grants and refresh tokens).
      const roleChanged = body.role !== undefined && (body.role ?? undefined) !== before.role;
      const passwordChanged = body.password !== undefined;
      const sessionsEnded = roleChanged || passwordChanged ? await ctx.sessions.endAll(name) : undefined;
      adminAudit(ctx, req, 'user.update', {
        user: name,
        detail: {
          fields: Object.keys(body),
          ...(roleChanged ? { role: body.role, previousRole: before.role ?? null } : {}),
          ...(passwordChanged ? { password: body.password === null ? 'removed' : 'set' } : {}),
          ...(sessionsEnded !== undefined ? { sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } : {}),
        },
      });
      return user;
    },
  });

  api.route({
    method: 'delete',
    path: '/users/:name',
    summary: 'Delete a user',
    errors: { 404: 'no such user' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      await ctx.users.delete(name);
      const sessionsEnded = await ctx.sessions.endAll(name);
      adminAudit(ctx, req, 'user.delete', { user: name, detail: { sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } });
      return { ok: true };
    },
  });

  api.route({
    method: 'post',
    path: '/users/:name/otp',
    summary: 'Enrol (or re-enrol) OTP: a new seed, returned once as an otpauth:// URI and a QR code',
    body: otpParams,
    errors: { 404: 'no such user' },
    handler: async ({ req, body }) => {
      const name = String(req.params.name);
      const had = await ctx.users.require(name);
      const enrolment = await ctx.users.enrolOtp(name, body);
      // A new seed replacing one is a factor reset (a lost or copied seed): whatever the old seed
      // let in is signed out everywhere.
      const sessionsEnded = had.otpSecret ? await ctx.sessions.endAll(name) : undefined;
      adminAudit(ctx, req, 'otp.enrol', { user: name, detail: { type: enrolment.params.type, ...(sessionsEnded ? { sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } : {}) } });
      return withQr(enrolment);
    },
  });

  api.route({
    method: 'post',
    path: '/users/:name/otp/resync',
    summary: 'Bring a drifted HOTP token back with two consecutive codes',
    body: z.object({ code1: z.string().regex(/^\d{6,8}$/), code2: z.string().regex(/^\d{6,8}$/) }).strict(),
    errors: { 400: 'not an HOTP user, or the codes do not match', 404: 'no such user' },
    handler: async ({ req, body }) => {
      const name = String(req.params.name);
      const user = await ctx.users.resyncHotp(name, body.code1, body.code2);
      adminAudit(ctx, req, 'otp.resync', { user: name });
      return user;
    },
  });

  api.route({
    method: 'post',
    path: '/users/:name/unlock',
    summary: 'Clear OTP and push lockouts: the OTP lock and failures, a push hold-back or mute, the push rejection count and the push rate-limit window',
    errors: { 404: 'no such user' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      const user = await ctx.users.unlock(name);
      adminAudit(ctx, req, 'otp.unlock', { user: name });
      return user;
    },
  });

  // Caller: the admin token or a console session (the helpdesk may look).
  api.route({
    method: 'get',
    path: '/users/:name/passkeys',
    summary: 'A user’s passkeys (WebAuthn): name, when made and last used, synced (multiDevice) or bound to one authenticator (singleDevice); never the key',
    errors: { 404: 'no such user' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      await ctx.users.require(name);
      return { passkeys: await ctx.passkeys.list(name) };
    },
  });

  // Caller: the admin token or a console admin (the gate refuses the helpdesk any DELETE).
  api.route({
    method: 'delete',
    path: '/users/:name/passkeys/:id',
    summary: 'Remove one of a user’s passkeys: it no longer signs in anywhere',
    errors: { 404: 'no such passkey' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      const id = String(req.params.id);
      if (!(await ctx.passkeys.remove(name, id))) throw notFound('passkey', id);
      // A passkey taken away (lost, stolen) no longer keeps anyone signed in that it let in.
      const sessionsEnded = await ctx.sessions.endAll(name);
      adminAudit(ctx, req, 'passkey.remove', { user: name, detail: { passkey: id, sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } });
      return { ok: true };
    },
  });

  // Caller: the admin token or a console admin (the gate refuses the helpdesk any POST).
  api.route({
    method: 'post',
    path: '/users/:name/sessions/revoke',
    summary: 'Sign a user out everywhere: their console and portal sessions, OpenID Connect sessions, grants and refresh tokens end at once',
    errors: { 404: 'no such user' },
    handler: async ({ req }) => {
      const name = String(req.params.name);
      await ctx.users.require(name);
      const sessionsEnded = await ctx.sessions.endAll(name);
      adminAudit(ctx, req, 'user.sessions-revoke', { user: name, detail: { sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by } });
      return { ok: true, sessionsEnded: sessionsEnded.total, ended: sessionsEnded.by };
    },
  });

  api.route({
    method: 'post',
    path: '/otp/verify',
    summary: 'Check a one-time password outside a challenge (it is used up if right)',
    body: z.object({ user: userName, code: z.string().min(1).max(16) }).strict(),
    errors: { 401: 'wrong or reused code', 403: 'OTP not enabled', 404: 'no such user', 423: 'locked' },
    handler: async ({ body }) => {
      await ctx.otp.check(body.user, body.code);
      return { ok: true };
    },
  });
}
