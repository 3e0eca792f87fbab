// The directories page: where users come from (Active Directory, OpenLDAP,
// Countersign's own), whether each answers, its last sync and, for
// administrators, a sync now. Also the list other pages ask for (the users
// page offers "Enable for a group…" only when some directory has groups).

import { $, badge, clear, el, show } from './dom.js';
import { fmtAgo, fmtDateTime, fmtDuration, num, plural } from './format.js';
import { api, ApiError, enc, hideError, showError } from './api.js';
import { isAdmin } from './state.js';

/** @type {Promise<any[]>|null} the last list asked for, shared until the page loads it again */
let known = null;

/** The configured directories, asked once and shared (fresh: ask again). */
export function directoryList(fresh = false) {
  if (fresh || !known) {
    const p = api('GET', '/api/v1/directories').then((r) => r.directories);
    p.catch(() => {
      if (known === p) known = null;
    });
    known = p;
  }
  return known;
}

/** A new sign-in asks again. */
export const forgetDirectories = () => {
  known = null;
};

const view = { seq: 0, syncing: null, list: [] };

export async function loadDirectories() {
  const seq = ++view.seq;
  const table = $('directories-table');
  table.setAttribute('aria-busy', 'true');
  try {
    const list = await directoryList(true);
    if (seq !== view.seq) return;
    view.list = list;
    renderDirectories();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    showError(err);
  } finally {
    if (seq === view.seq) table.removeAttribute('aria-busy');
  }
}

const muted = (text) => el('span', { class: 'muted', text });
const sub = (...children) => el('span', { class: 'cell-sub' }, ...children);

/** A cell with the label the stacked (phone) layout shows before it, its value in one element. */
const cell = (label, attrs, ...children) => el('td', { ...attrs, 'data-label': label }, el('div', {}, ...children));

/** Links to the users a sync marked removed; the first few, then a count. */
function removedNames(names, max = 8) {
  if (!names.length) return null;
  const list = el('ul', { class: 'name-list' });
  for (const n of names.slice(0, max)) list.append(el('li', {}, el('a', { href: `#/users/${enc(n)}`, text: n })));
  if (names.length > max) list.append(el('li', { class: 'muted', text: `and ${num(names.length - max)} more` }));
  return list;
}

function renderDirectories() {
  const tbody = $('directories-table').tBodies[0];
  clear(tbody);
  for (const d of view.list) {
    const last = d.lastSync;
    const reach = d.reachable ? badge('reachable', 'ok') : badge('unreachable', 'bad');
    const syncCell = d.local
      ? [muted('not needed'), sub('Countersign keeps these users itself')]
      : last
        ? [
            el('time', { datetime: new Date(last.at).toISOString(), text: fmtDateTime(last.at) }),
            sub(`${fmtAgo(last.at)} · took ${fmtDuration(last.tookMs)}`),
          ]
        : [badge('never', 'off')];
    const count = (n, bad = false) =>
      last && !d.local ? (bad && n > 0 ? el('strong', { class: 'bad-text', text: num(n) }) : num(n)) : muted('—');
    const removed = last && !d.local ? last.removed || [] : null;
    const button = d.local
      ? null
      : el('button', {
          type: 'button',
          class: 'btn small',
          'aria-label': `Sync now: ${d.name}`,
          dataset: { sync: d.name },
          disabled: Boolean(view.syncing),
          on: { click: (e) => syncNow(d, e.currentTarget) },
        }, view.syncing === d.name ? [el('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Syncing…'] : 'Sync now');
    tbody.append(
      el(
        'tr',
        { dataset: { name: d.name } },
        el('th', { scope: 'row', class: 'name' }, d.name, ' ', d.local ? badge('local', 'off') : badge('directory', 'front')),
        cell('Realms', {}, d.realms && d.realms.length ? el('span', { class: 'mono', text: d.realms.join(', ') }) : muted('—')),
        cell('Reachable', { class: 'reach' }, reach, d.detail ? sub(el('span', { class: d.reachable ? 'mono' : '', text: d.detail })) : null),
        cell('Last sync', { class: 'last-sync' }, syncCell),
        cell('Users', { class: 'num users' }, count(last ? last.users : 0)),
        cell('Not active', { class: 'num inactive' }, count(last ? last.inactive : 0, true)),
        cell('Removed', { class: 'removed' }, removed ? [removed.length ? el('strong', { class: 'bad-text', text: num(removed.length) }) : '0', removedNames(removed)] : muted('—')),
        el('td', { class: 'row-actions needs-admin' }, button),
      ),
    );
  }
  show($('directories-table'), view.list.length > 0);
  show($('directories-empty'), view.list.length === 0);
  const down = view.list.filter((d) => !d.reachable).length;
  $('directories-summary').textContent = !view.list.length
    ? ''
    : down
      ? `${plural(view.list.length, 'directory', 'directories')}, ${num(down)} not reachable`
      : `${plural(view.list.length, 'directory', 'directories')}, all reachable`;
}

async function syncNow(d, button) {
  if (view.syncing || !isAdmin()) return;
  view.syncing = d.name;
  hideError();
  const result = $('dir-result');
  show(result, false);
  for (const b of document.querySelectorAll('#directories-table [data-sync]')) b.disabled = true;
  button.replaceChildren(el('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Syncing…');
  $('dir-progress-bar').removeAttribute('value'); // indeterminate: one call, as long as the directory takes
  $('dir-progress-text').textContent = `Syncing ${d.name}: reading every user and their groups…`;
  show($('dir-progress'));
  $('directories-table').setAttribute('aria-busy', 'true');
  let report = null;
  let error = null;
  try {
    report = await api('POST', `/api/v1/directories/${enc(d.name)}/sync`, {});
  } catch (err) {
    error = err;
  } finally {
    view.syncing = null;
    show($('dir-progress'), false);
  }
  await loadDirectories();
  if (report) {
    renderSyncResult(report);
  } else {
    if (!(error instanceof ApiError && error.status === 401)) showError(error);
    const again = document.querySelector(`#directories-table [data-sync="${CSS.escape(d.name)}"]`);
    if (again) again.focus();
  }
}

function renderSyncResult(r) {
  const box = $('dir-result');
  clear(box);
  const trouble = r.removed.length > 0 || r.inactive > 0;
  box.className = `panel result-panel ${trouble ? 'partial' : 'success'}`;
  box.append(
    el(
      'div',
      { class: 'result-head' },
      el('h2', { text: `${r.directory} synchronised: ${plural(r.users, 'user')}` }),
      el('button', { type: 'button', class: 'btn link small', text: 'Dismiss', on: { click: () => show(box, false) } }),
    ),
    el('p', {
      class: 'summary',
      text: `${num(r.records)} records made or brought up to date in ${fmtDuration(r.tookMs)}; ${num(r.inactive)} not active; ${num(r.removed.length)} removed.`,
    }),
  );
  if (r.removed.length) {
    box.append(el('p', { text: 'Removed — these users can no longer sign in anywhere:' }), removedNames(r.removed, 50));
  }
  show(box);
  box.focus();
}
