import express, { type Express } from 'express';
import { z } from 'zod';
import { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import { mayDecide, requireAdmin } from './auth.js';
import type { BrowserSessions } from '../web/sessions.js';
import { challengeRoutes } from './challenges.js';
import { deviceRoutes } from './devices.js';
import { radiusClientRoutes } from './radius.js';
import { radiusSessionRoutes } from './radius-sessions.js';
import { oidcClientRoutes } from './oidc.js';
import { bridgeCredentialRoutes } from './bridge.js';
import { userRoutes } from './users.js';
import { directoryRoutes } from './directories.js';
import { invitationRoutes } from './invitations.js';
import type { RadiusClients } from '../radius/clients.js';
import type { OidcClients } from '../oidc/clients.js';
import type { BridgeCredentials } from '../bridge/credentials.js';
import { AUDIT_STREAMS, type AuditEvent } from '../../core/store.js';

export const ADMIN_BASE = '/api/v1';

/** An audit event for the helpdesk: an event of a login still pending would otherwise hand them its id. */
const withoutChallengeIds = ({ challengeId: _id, ...e }: AuditEvent): AuditEvent => {
  if (!e.detail || !('challenge' in e.detail)) return e;
  const { challenge: _c, ...detail } = e.detail;
  return { ...e, detail };
};

/** The other fronts' clients, which the admin API manages: each front owns its registry. */
export interface Registries {
  radiusClients: RadiusClients;
  oidcClients: OidcClients;
  bridgeCredentials: BridgeCredentials;
}

/** The admin API: bearer token, JSON in and out, described at /api/v1/openapi.json. */
export function mountAdminApi(app: Express, ctx: AppContext, token: string, sessions: BrowserSessions, registries: Registries): void {
  const router = express.Router();
  const api = new ApiBuilder(router, ADMIN_BASE, {
    title: 'Countersign admin API',
    version: '1',
    description: 'Users, factors, challenges and audit. Every call needs `Authorization: Bearer <admin token>`.',
  });
  app.get(`${ADMIN_BASE}/openapi.json`, (_req, res) => {
    res.json(api.openapi());
  });
  router.use(requireAdmin(ctx, token, sessions));
  router.use(express.json({ limit: '2mb' }));

  userRoutes(api, ctx);
  directoryRoutes(api, ctx);
  invitationRoutes(api, ctx);
  deviceRoutes(api, ctx);
  radiusClientRoutes(api, ctx, registries.radiusClients);
  radiusSessionRoutes(api, ctx);
  oidcClientRoutes(api, ctx, registries.oidcClients);
  bridgeCredentialRoutes(api, ctx, registries.bridgeCredentials);
  challengeRoutes(api, ctx);
  api.route({
    method: 'get',
    path: '/audit',
    summary:
      'Audit events, newest first, filtered by user, front, outcome, type or stream (security: logins, wrong codes, administrators\' and factor changes; activity: RADIUS packets and accounting, enrolment links, device renames; both by default)',
    query: z.object({
      user: z.string().max(128).optional(),
      front: z.string().max(32).optional(),
      outcome: z.string().max(32).optional(),
      type: z.string().max(32).optional(),
      stream: z.enum(AUDIT_STREAMS).optional(),
      since: z.coerce.number().int().min(0).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ req, query }) => {
      const events = await ctx.store.audit.query(query);
      return { events: mayDecide(req) ? events : events.map(withoutChallengeIds) };
    },
  });
  app.use(ADMIN_BASE, router);
}
