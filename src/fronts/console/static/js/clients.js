// The clients page: RADIUS and OpenID Connect clients and bridge
// credentials, read-only (the API never returns their secrets).

import { $, badge, clear, el, show } from './dom.js';
import { fmtDateTime } from './format.js';
import { api, ApiError, showError } from './api.js';

export async function loadClients() {
  const fill = (tableId, emptyId, rows) => {
    const tbody = $(tableId).tBodies[0];
    clear(tbody);
    for (const cells of rows) tbody.append(el('tr', {}, cells.map((c, i) => (i === 0 ? el('th', { scope: 'row', class: 'name' }, c) : el('td', {}, c)))));
    show($(tableId), rows.length > 0);
    show($(emptyId), rows.length === 0);
  };
  const yesNo = (b) => (b ? 'yes' : 'no');
  const src = (s) => badge(s || 'config', s === 'api' ? 'front' : 'off');
  const [radius, oidc, bridge] = await Promise.allSettled([
    api('GET', '/api/v1/radius-clients'),
    api('GET', '/api/v1/oidc-clients'),
    api('GET', '/api/v1/bridge-credentials'),
  ]);
  if (radius.status === 'fulfilled') {
    fill('radius-table', 'radius-empty', radius.value.clients.map((c) => [c.name, el('span', { class: 'mono', text: c.address }), c.mode, yesNo(c.secondFactorOnly), c.requireMessageAuthenticator === false ? badge('not required', 'warn') : 'required', src(c.source)]));
  }
  if (oidc.status === 'fulfilled') {
    fill('oidc-table', 'oidc-empty', oidc.value.clients.map((c) => [
      el('span', { class: 'mono', text: String(c.client_id) }),
      c.client_name ? String(c.client_name) : el('span', { class: 'muted', text: '—' }),
      el('span', { class: 'mono wrap small-print', text: (Array.isArray(c.redirect_uris) ? c.redirect_uris : []).join('\n') }),
      (Array.isArray(c.grant_types) ? c.grant_types : ['authorization_code']).map((g) => String(g).replace('urn:openid:params:grant-type:', '')).join(', '),
      src(c.source),
    ]));
  }
  if (bridge.status === 'fulfilled') {
    fill('bridge-table', 'bridge-empty', bridge.value.credentials.map((c) => [c.name, c.scope, fmtDateTime(c.createdAt)]));
  }
  const failed = [radius, oidc, bridge].find((r) => r.status === 'rejected');
  if (failed && !(failed.reason instanceof ApiError && failed.reason.status === 401)) showError(failed.reason);
}
