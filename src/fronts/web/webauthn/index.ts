import { createHash } from 'node:crypto';
import type { Express } from 'express';
import { WEBAUTHN_JS } from './browser.js';

/** Where the browser module is served: same origin as every page that uses it, so each CSP's script-src 'self' (or a nonce'd importer) allows it. */
export const WEBAUTHN_JS_PATH = '/webauthn.js';

const etag = `"${createHash('sha256').update(WEBAUTHN_JS).digest('base64url').slice(0, 16)}"`;

/**
 * Caller: anyone (a public, static ES module with no data in it). The OIDC pages, the
 * console and the self-service portal import it for the passkey ceremonies.
 */
export function mountWebauthn(app: Express): void {
  app.get(WEBAUTHN_JS_PATH, (req, res) => {
    res.set({
      'content-type': 'text/javascript; charset=utf-8',
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
      etag,
      // Module scripts are fetched in CORS mode; same-origin pages need nothing more.
      'cross-origin-resource-policy': 'same-origin',
    });
    if (req.get('if-none-match') === etag) return void res.status(304).end();
    res.send(WEBAUTHN_JS);
  });
}
