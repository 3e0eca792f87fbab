// The clients page: RADIUS and OpenID Connect clients and bridge
// credentials with their group policy, read-only (the API never returns
// their secrets).

import { $, badge, clear, el, show } from './dom.js';
import { fmtDateTime } from './format.js';
import { api, ApiError, showError } from './api.js';

const muted = (text, title) => el('span', { class: 'muted', text, title });
const strings = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : undefined);

/**
 * A client's group policy: who may sign in (allow groups), who needs a
 * second factor (MFA groups), and users with no factor (deny or allow).
 * What it leaves out, the server's default policy decides.
 */
function policyCell(p) {
  const allow = strings(p && p.allowGroups);
  const mfa = strings(p && p.mfaGroups);
  const noFactor = p && typeof p.noFactor === 'string' ? p.noFactor : undefined;
  if (allow === undefined && mfa === undefined && noFactor === undefined) return muted('default', 'The server’s default policy applies');
  const groups = (g) => (g === undefined ? muted('default') : g.length ? g.join(', ') : 'everyone');
  const line = (term, title, value) => el('div', {}, el('dt', { text: term, title }), el('dd', {}, value));
  return el(
    'dl',
    { class: 'policy' },
    line('Allow', 'Only members of these groups may sign in', groups(allow)),
    line('MFA', 'Only members of these groups need a second factor', groups(mfa)),
    line('No factor', 'Users who need a second factor but have none enrolled', noFactor === undefined ? muted('default') : noFactor === 'allow' ? badge('allow', 'warn') : badge(noFactor, 'off')),
  );
}

/** The workstations a bridge credential speaks for ("*": any). */
function workstationsCell(list) {
  const names = strings(list) || [];
  if (!names.length || (names.length === 1 && names[0] === '*')) return muted('any');
  return el('ul', { class: 'chips mono' }, names.map((n) => el('li', { text: n })));
}

export async function loadClients() {
  const fill = (tableId, emptyId, rows) => {
    const tbody = $(tableId).tBodies[0];
    clear(tbody);
    // Each value in one element under its column's name: on phones a row reads as a block of label and value.
    const labels = [...$(tableId).tHead.rows[0].cells].map((th) => th.textContent.trim());
    for (const cells of rows) {
      tbody.append(el('tr', {}, cells.map((c, i) => (i === 0 ? el('th', { scope: 'row', class: 'name' }, c) : el('td', { 'data-label': labels[i] }, el('div', {}, c))))));
    }
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
    fill('radius-table', 'radius-empty', radius.value.clients.map((c) => [c.name, el('span', { class: 'mono', text: c.address }), c.mode, yesNo(c.secondFactorOnly), c.requireMessageAuthenticator === false ? badge('not required', 'warn') : 'required', policyCell(c.policy), src(c.source)]));
  }
  if (oidc.status === 'fulfilled') {
    fill('oidc-table', 'oidc-empty', oidc.value.clients.map((c) => [
      el('span', { class: 'mono', text: String(c.client_id) }),
      c.client_name ? String(c.client_name) : el('span', { class: 'muted', text: '—' }),
      el('span', { class: 'mono wrap small-print', text: (Array.isArray(c.redirect_uris) ? c.redirect_uris : []).join('\n') }),
      (Array.isArray(c.grant_types) ? c.grant_types : ['authorization_code']).map((g) => String(g).replace('urn:openid:params:grant-type:', '')).join(', '),
      policyCell({ allowGroups: c.countersign_allow_groups, mfaGroups: c.countersign_mfa_groups, noFactor: c.countersign_no_factor }),
      src(c.source),
    ]));
  }
  if (bridge.status === 'fulfilled') {
    fill('bridge-table', 'bridge-empty', bridge.value.credentials.map((c) => [c.name, c.scope, workstationsCell(c.workstations), policyCell(c.policy), fmtDateTime(c.createdAt)]));
  }
  const failed = [radius, oidc, bridge].find((r) => r.status === 'rejected');
  if (failed && !(failed.reason instanceof ApiError && failed.reason.status === 401)) showError(failed.reason);
}
