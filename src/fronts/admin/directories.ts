import { z } from 'zod';
import { notFound } from '../../core/errors.js';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from './audit.js';

/**
 * The configured directories: whether each answers, its last sync, and a sync now.
 * Callers: the admin token and console sessions (the helpdesk may look, only admins sync).
 */
export function directoryRoutes(api: ApiBuilder, ctx: AppContext): void {
  api.route({
    method: 'get',
    path: '/directories',
    summary: 'The directories users come from: reachable or not, realms, and the last sync',
    handler: async () => ({ directories: await ctx.directory.status() }),
  });

  api.route({
    method: 'post',
    path: '/directories/:name/sync',
    summary: 'Synchronise a directory now: records for its users, their groups and state; records of users it no longer has are marked removed',
    errors: { 404: 'no such directory', 503: 'the directory cannot be reached' },
    handler: async ({ req }) => {
      const d = ctx.directory.byName(String(req.params.name));
      if (!d) throw notFound('directory', String(req.params.name));
      const report = await ctx.directory.sync(d);
      // A user the sync marked removed can sign in nowhere now: an event of theirs too.
      for (const user of report.removed) adminAudit(ctx, req, 'directory.user-removed', { user, client: d.name });
      adminAudit(ctx, req, 'directory.sync', { client: d.name, detail: { users: report.users, removed: report.removed } });
      return report;
    },
  });
}

/** Names of a group's members (nested) in every directory, or one, with a record made for each. */
export async function membersOf(ctx: AppContext, group: string, directory?: string): Promise<string[]> {
  const names: string[] = [];
  for (const d of ctx.directory.list) {
    if (directory ? d.name !== directory : d.ownsRecords) continue;
    for await (const user of d.users({ group })) {
      const name = await ctx.directory.recordFor(d, user);
      if (name) names.push(name);
    }
  }
  return names;
}

export const groupSelector = z.object({ group: z.string().min(1).max(256), directory: z.string().max(32).optional() });
