import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import { CountersignError } from '../core/errors.js';
import type { AppContext } from '../context.js';

/** The express setting (from http.secureCookies) that marks cookies Secure even when this hop is plain HTTP. */
export const SECURE_COOKIES_SETTING = 'countersign secure cookies';

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * The HTTP shell every front mounts into: health, readiness, metrics, and one
 * error handler that turns everything into a clear JSON answer.
 */
export function createHttpApp(ctx: AppContext, mount: (app: Express) => void): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', ctx.config.http.trustProxy);
  app.set('query parser', 'simple');
  app.set(SECURE_COOKIES_SETTING, ctx.config.http.secureCookies);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Ready when the store answers and every enabled front has started.
  app.get('/readyz', async (_req, res) => {
    const starting = Object.entries(ctx.fronts).filter(([, s]) => s !== 'up').map(([name]) => name);
    try {
      await ctx.store.ping();
    } catch {
      res.status(503).json({ status: 'not ready', store: ctx.store.kind, fronts: ctx.fronts, message: 'the store does not answer' });
      return;
    }
    if (starting.length) {
      res.status(503).json({ status: 'not ready', store: ctx.store.kind, fronts: ctx.fronts, message: `starting: ${starting.join(', ')}` });
      return;
    }
    res.json({ status: 'ready', store: ctx.store.kind, fronts: ctx.fronts });
  });
  // Caller: a Prometheus scraper, with metrics.token when one is set (public otherwise).
  const metricsToken = ctx.config.metrics.token === undefined ? null : sha256(ctx.config.metrics.token);
  app.get('/metrics', async (req, res) => {
    if (metricsToken) {
      const m = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
      // Both sides hashed: equal lengths for timingSafeEqual, and no hint of the token's length.
      if (!m || !timingSafeEqual(sha256(m[1]!.trim()), metricsToken)) {
        res
          .status(401)
          .set('www-authenticate', 'Bearer realm="metrics"')
          .json({ error: 'unauthorized', message: '/metrics needs Authorization: Bearer <metrics.token> (COUNTERSIGN_METRICS_TOKEN)' });
        return;
      }
    }
    res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  mount(app);

  app.use(((req, res) => {
    res.status(404).json({ error: 'not_found', message: `no route for ${req.method} ${req.path}` });
  }) as RequestHandler);
  app.use(((err, req, res, _next) => {
    if (err instanceof CountersignError) {
      if (err.status >= 500) ctx.log.error({ err, path: req.path }, err.message);
      res.status(err.status).json({ error: err.code, message: err.message, ...err.details });
      return;
    }
    // body-parser errors carry a status: malformed JSON, too large, wrong charset.
    const status = typeof err?.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status < 500) {
      res.status(status).json({ error: err.type ?? 'bad_request', message: err.message });
      return;
    }
    ctx.log.error({ err, path: req.path }, 'unhandled error');
    res.status(500).json({ error: 'internal', message: 'internal error; nothing was approved' });
  }) as ErrorRequestHandler);
  return app;
}
