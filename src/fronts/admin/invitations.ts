import { z } from 'zod';
import { badRequest } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { ApiBuilder } from '../../http/openapi.js';
import { userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from './audit.js';
import { membersOf } from './directories.js';

/**
 * E-mailed enrolment invitations (src/core/invitations.ts). Caller: the admin token or an
 * admin console session (the helpdesk may not send mail). One call invites a list of users or
 * a directory group's members; each user gets their own result, and the console and the CLI
 * send long lists in batches to show progress.
 */
export function invitationRoutes(api: ApiBuilder, ctx: AppContext): void {
  api.route({
    method: 'post',
    path: '/invitations',
    summary:
      'E-mail enrolment invitations (a single-use, expiring link to the self-service portal) to users by name or to the members of a directory group; one result per user',
    body: z
      .object({
        users: z.array(userName).min(1).max(500).optional(),
        group: z.string().min(1).max(256).optional(),
        directory: z.string().max(32).optional(),
      })
      .strict(),
    errors: { 400: 'neither users nor group, or both', 503: 'the directory cannot be reached' },
    handler: async ({ req, body }) => {
      if (Boolean(body.users) === Boolean(body.group)) throw badRequest('invalid_input', 'give either users or group');
      const names = body.users ?? (await membersOf(ctx, body.group!, body.directory));
      const results = await ctx.invitations.inviteMany(names);
      const sent = results.filter((r) => r.ok).map((r) => r.name);
      // One event per user invited (`audit --user` finds it), and one for the call, tied by `batch`.
      const batch = newToken(9);
      const group = body.group ? { group: body.group } : {};
      const mailer = ctx.invitations.mailerKind;
      for (const user of sent) adminAudit(ctx, req, 'invitation.send', { user, detail: { ...group, batch, mailer } });
      adminAudit(ctx, req, 'invitation.bulk', {
        detail: { ...group, batch, requested: results.length, sent: sent.length, failed: results.filter((r) => !r.ok).map((r) => r.name), mailer },
      });
      return { results, sent: sent.length, failed: results.length - sent.length };
    },
  });
}
