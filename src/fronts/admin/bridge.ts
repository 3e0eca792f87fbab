import { z } from 'zod';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';

/** API credentials for Windows credential providers. */
export function bridgeCredentialRoutes(api: ApiBuilder, ctx: AppContext): void {
  api.route({
    method: 'get',
    path: '/bridge-credentials',
    summary: 'Bridge credentials (tokens are never shown again)',
    handler: async () => ({ credentials: await ctx.bridgeCredentials.list() }),
  });

  api.route({
    method: 'post',
    path: '/bridge-credentials',
    summary: 'Create a credential for one workstation or a fleet; the token is returned this once',
    body: z.object({ name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), scope: z.enum(['workstation', 'fleet']).default('fleet') }).strict(),
    errors: { 400: 'invalid input', 409: 'the name is taken' },
    handler: async ({ body, res }) => {
      const r = await ctx.bridgeCredentials.create(body.name, body.scope, ctx.clock.now());
      void ctx.audit.record({ at: ctx.clock.now(), type: 'admin', client: body.name, detail: { action: 'bridge-credential.add' } });
      res.status(201);
      return { ...r.credential, token: r.token };
    },
  });

  api.route({
    method: 'delete',
    path: '/bridge-credentials/:name',
    summary: 'Revoke a bridge credential',
    errors: { 404: 'no such credential' },
    handler: async ({ req }) => {
      await ctx.bridgeCredentials.revoke(String(req.params.name));
      adminAudit(ctx, req, 'bridge-credential.revoke', { client: String(req.params.name) });
      return { ok: true };
    },
  });
}
