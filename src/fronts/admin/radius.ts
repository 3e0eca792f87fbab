import { z } from 'zod';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import type { RadiusClients } from '../radius/clients.js';
import { adminAudit } from './audit.js';

/** RADIUS clients (NASes) added at run time; those in the config file are listed too. */
export function radiusClientRoutes(api: ApiBuilder, ctx: AppContext, clients: RadiusClients): void {
  api.route({
    method: 'get',
    path: '/radius-clients',
    summary: 'RADIUS clients, from the config file and the API (secrets are never shown)',
    handler: () => ({ clients: clients.list() }),
  });

  api.route({
    method: 'post',
    path: '/radius-clients',
    summary: 'Add a RADIUS client: name, address or CIDR, shared secret, mode (push-wait | append | challenge)',
    body: z.object({}).passthrough(),
    errors: { 400: 'invalid input', 409: 'the name is taken' },
    handler: async ({ req, body, res }) => {
      const c = await clients.add(body);
      adminAudit(ctx, req, 'radius-client.add', { client: c.name, detail: { address: c.address, mode: c.mode } });
      res.status(201);
      return c;
    },
  });

  api.route({
    method: 'delete',
    path: '/radius-clients/:name',
    summary: 'Remove a RADIUS client added through the API',
    errors: { 400: 'defined in the config file', 404: 'no such client' },
    handler: async ({ req }) => {
      await clients.remove(String(req.params.name));
      adminAudit(ctx, req, 'radius-client.remove', { client: String(req.params.name) });
      return { ok: true };
    },
  });
}
