import { z } from 'zod';
import { policySchema } from '../../config/schema.js';
import { WORKSTATION_PATTERN, type BridgeCredentials } from '../bridge/credentials.js';
import type { ApiBuilder } from '../../http/openapi.js';
import type { AppContext } from '../../context.js';
import { adminAudit } from './audit.js';

/** API credentials for Windows credential providers. */
export function bridgeCredentialRoutes(api: ApiBuilder, ctx: AppContext, credentials: BridgeCredentials): void {
  api.route({
    method: 'get',
    path: '/bridge-credentials',
    summary: 'Bridge credentials (tokens are never shown again)',
    handler: async () => ({ credentials: await credentials.list() }),
  });

  api.route({
    method: 'post',
    path: '/bridge-credentials',
    summary: 'Create a credential for one workstation or a fleet; the token is returned this once',
    body: z
      .object({
        name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
        scope: z.enum(['workstation', 'fleet']).default('fleet'),
        workstations: z
          .array(z.string().regex(WORKSTATION_PATTERN))
          .min(1)
          .max(100)
          .optional()
          .describe('the workstation names it may speak for (fleet: patterns such as PC-*; default any). A workstation credential: its one name (default: the credential name)'),
        policy: policySchema.optional().describe('group policy for logins through this credential, over the default'),
      })
      .strict(),
    errors: { 400: 'invalid input', 409: 'the name is taken' },
    handler: async ({ req, body, res }) => {
      const r = await credentials.create(body.name, body.scope, ctx.clock.now(), body.workstations, body.policy);
      adminAudit(ctx, req, 'bridge-credential.add', { client: body.name, detail: { scope: body.scope, workstations: r.credential.workstations } });
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
      await credentials.revoke(String(req.params.name));
      adminAudit(ctx, req, 'bridge-credential.revoke', { client: String(req.params.name) });
      return { ok: true };
    },
  });
}
