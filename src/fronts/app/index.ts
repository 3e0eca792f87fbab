import { extname } from 'node:path';
import express, { type Express, type Response } from 'express';
import type { AppContext } from '../../context.js';
import { staticDirOf } from '../web/static.js';

/** Where the web authenticator lives; the enrolment links' appUrl points here (`<publicUrl>/app/#enrol=…`). */
export const APP_PATH = '/app';

/**
 * The page's policy: its own scripts, styles, worker and manifest only, and it talks only to
 * this server (the device API is same-origin). form-action 'none': every form is handled by
 * script, so a PIN can never end up in a URL if the scripts did not load.
 */
export const APP_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * The web authenticator at /app/: an installable web app (PWA) that enrols
 * this browser as a `webpush` device, shows and answers pending logins, and
 * whose service worker (/app/sw.js, scope /app/) shows pushes as
 * notifications with Approve / Reject. Static files only: everything it does
 * goes through the signed device API (/device/v1), like any authenticator.
 */
export function mountApp(app: Express, _ctx: AppContext): void {
  const dir = staticDirOf('app');
  app.use(
    APP_PATH,
    (req, res, next) => {
      // /app without the slash: the page's relative URLs (and the worker's scope) need /app/.
      if (req.originalUrl === APP_PATH || req.originalUrl.startsWith(`${APP_PATH}?`)) {
        res.redirect(301, `${APP_PATH}/${req.originalUrl.slice(APP_PATH.length)}`);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        next();
        return;
      }
      res.set({
        'content-security-policy': APP_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-resource-policy': 'same-origin',
        'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
      });
      next();
    },
    express.static(dir, {
      index: 'index.html',
      redirect: false,
      dotfiles: 'deny',
      fallthrough: true,
      setHeaders: (res: Response, path: string) => {
        const ext = extname(path);
        const type = TYPES[ext];
        if (type) res.set('content-type', type);
        // The page (it is where an enrolment token arrives) is never stored; everything else is
        // revalidated on each load, so an update reaches phones at once. The worker keeps its
        // own copy for opening offline.
        res.set('cache-control', ext === '.html' ? 'no-store' : 'no-cache');
      },
    }),
  );
}
