import { z } from 'zod';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import type { OidcClients } from '../oidc/clients.js';
import { adminAudit } from './audit.js';

/** OpenID Connect relying parties added at run time; those in the config file are listed too. */
export function oidcClientRoutes(api: ApiBuilder, ctx: AppContext, clients: OidcClients): void {
  api.route({
    method: 'get',
    path: '/oidc-clients',
    summary: 'OpenID Connect clients (secrets are never shown)',
    handler: async () => ({ clients: await clients.list() }),
  });

  api.route({
    method: 'post',
    path: '/oidc-clients',
    summary:
      'Register a relying party with OpenID client metadata (client_id, redirect_uris, …; countersign_no_factor deny|allow). A client secret is generated unless given or token_endpoint_auth_method is none; it is returned this once.',
    body: z.object({ client_id: z.string(), redirect_uris: z.array(z.string()).optional() }).passthrough(),
    errors: { 400: 'invalid client metadata', 409: 'the client_id is taken' },
    handler: async ({ req, body, res }) => {
      const c = await clients.add(body);
      adminAudit(ctx, req, 'oidc-client.add', { client: String(c.client_id), detail: { redirectUris: c.redirect_uris } });
      res.status(201);
      return c;
    },
  });

  api.route({
    method: 'delete',
    path: '/oidc-clients/:id',
    summary: 'Remove a relying party added through the API',
    errors: { 400: 'defined in the config file', 404: 'no such client' },
    handler: async ({ req }) => {
      await clients.remove(String(req.params.id));
      adminAudit(ctx, req, 'oidc-client.remove', { client: String(req.params.id) });
      return { ok: true };
    },
  });
}
