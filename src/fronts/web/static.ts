import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';

/** The console's and the portal's pages: own scripts and styles only, never framed, nothing cached. */
export const STATIC_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * A front's static files: beside its module in the source tree (src/fronts/<front>/static);
 * the Docker build copies them next to the compiled one.
 */
export function staticDirOf(front: string): string {
  const here = fileURLToPath(new URL(`../${front}/static/`, import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL(`../../../../src/fronts/${front}/static/`, import.meta.url));
}

/** Serves a browser front's pages at `path` under STATIC_HEADERS. */
export function mountStaticPages(app: Express, path: string, front: string): void {
  app.use(
    path,
    (_req, res, next) => {
      res.set(STATIC_HEADERS);
      next();
    },
    express.static(staticDirOf(front), { index: 'index.html', redirect: true }),
  );
}
