import { z } from 'zod';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import { SessionStore } from '../radius/accounting.js';

/** The sessions RADIUS accounting reports open (Start or Interim-Update, no Stop yet), from the store every instance shares. */
export function radiusSessionRoutes(api: ApiBuilder, ctx: AppContext): void {
  const sessions = new SessionStore(ctx.store.kv, ctx.clock);
  api.route({
    method: 'get',
    path: '/radius-sessions',
    summary: 'Open RADIUS accounting sessions, newest first, filtered by user and client: NAS, framed IP, calling station, time and octets as last reported',
    query: z.object({
      user: z.string().max(253).optional(),
      client: z.string().max(64).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ query }) => ({ sessions: await sessions.list(query) }),
  });
}
