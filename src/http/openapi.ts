import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { parse } from './validate.js';

type Method = 'get' | 'post' | 'patch' | 'put' | 'delete';

export interface RouteSpec<B extends z.ZodType, Q extends z.ZodType> {
  method: Method;
  path: string; // express style, /users/:name
  summary: string;
  body?: B;
  query?: Q;
  /** Status codes this route answers besides 200, with what they mean. */
  errors?: Record<number, string>;
  handler: (input: { req: Request; res: Response; body: z.infer<B>; query: z.infer<Q> }) => Promise<unknown> | unknown;
}

/**
 * Routes declared once: the same zod schemas validate the request and
 * describe it in the served OpenAPI document, so the two cannot drift.
 */
export class ApiBuilder {
  private paths: Record<string, Record<string, unknown>> = {};

  constructor(
    private router: Router,
    private base: string,
    private info: { title: string; version: string; description: string },
  ) {}

  route<B extends z.ZodType = z.ZodUnknown, Q extends z.ZodType = z.ZodUnknown>(spec: RouteSpec<B, Q>): void {
    this.router[spec.method](spec.path, async (req, res) => {
      const body = spec.body ? parse(spec.body, req.body ?? {}, 'request body') : undefined;
      const query = spec.query ? parse(spec.query, req.query, 'query') : undefined;
      const result = await spec.handler({ req, res, body: body as z.infer<B>, query: query as z.infer<Q> });
      if (!res.headersSent) res.json(result ?? { ok: true });
    });
    this.document(spec);
  }

  private document(spec: RouteSpec<z.ZodType, z.ZodType>): void {
    const oaPath = this.base + spec.path.replace(/:(\w+)/g, '{$1}');
    const params = [...spec.path.matchAll(/:(\w+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const queryParams = spec.query
      ? Object.entries((z.toJSONSchema(spec.query, { io: 'input' }) as { properties?: Record<string, unknown> }).properties ?? {}).map(
          ([name, schema]) => ({ name, in: 'query', required: false, schema }),
        )
      : [];
    const responses: Record<string, unknown> = { 200: { description: 'OK' } };
    for (const [code, description] of Object.entries(spec.errors ?? {})) {
      responses[code] = { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
    (this.paths[oaPath] ??= {})[spec.method] = {
      summary: spec.summary,
      parameters: [...params, ...queryParams],
      ...(spec.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(spec.body, { io: 'input' }) } } } }
        : {}),
      responses,
    };
  }

  openapi(): unknown {
    return {
      openapi: '3.1.0',
      info: this.info,
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
        schemas: {
          Error: {
            type: 'object',
            required: ['error', 'message'],
            properties: { error: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
      security: [{ bearer: [] }],
      paths: this.paths,
    };
  }
}
