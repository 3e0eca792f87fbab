// The users page: a page at a time from the server (the directory may hold
// many thousands), prefix search, and bulk factor changes over a selection
// that survives paging, or for every member of a directory group.

import { $, badge, clear, confirmDialog, el, show } from './dom.js';
import { accountState, cap, fmtTime, num, plural } from './format.js';
import { api, ApiError, enc, hideError, showError } from './api.js';
import { directoryList } from './directories.js';
import { isAdmin } from './state.js';

const PAGE_SIZE = 50;
const BULK_CHUNK = 10_000; // the API's limit per call

const users = {
  q: '',
  after: undefined, // cursor of the page shown
  history: [], // cursors of the pages before it
  next: undefined,
  total: 0,
  rows: [],
  selected: new Set(),
  seq: 0,
  ctrl: null,
};

/** Whether "Enable for a group…" was decided for this sign-in. */
let groupsOffered = false;

/** A new sign-in starts with nothing selected, and asks again which directories there are. */
/** The selected user names, in order (the invite buttons read them). */
export const selectedUsers = () => [...users.selected].sort();

export const clearSelection = () => {
  users.selected.clear();
  groupsOffered = false;
  show($('bulk-group'), false);
};

export async function loadUsers() {
  offerGroups();
  const seq = ++users.seq;
  if (users.ctrl) users.ctrl.abort();
  users.ctrl = new AbortController();
  const qs = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (users.q) qs.set('prefix', users.q);
  if (users.after !== undefined) qs.set('after', users.after);
  $('users-table').setAttribute('aria-busy', 'true');
  try {
    const r = await api('GET', `/api/v1/users?${qs}`, undefined, { signal: users.ctrl.signal });
    if (seq !== users.seq) return;
    users.rows = r.users;
    users.next = r.next;
    users.total = r.total;
    renderUsers();
  } catch (err) {
    if (err && err.name === 'AbortError') return;
    if (err instanceof ApiError && err.status === 401) return;
    showError(err);
  } finally {
    if (seq === users.seq) $('users-table').removeAttribute('aria-busy');
  }
}

function factorCell(f) {
  if (f.lockedUntil) return badge('locked', 'bad');
  return f.enabled ? badge('on', 'ok') : badge('off', 'off');
}

function renderUsers() {
  const tbody = $('users-table').tBodies[0];
  clear(tbody);
  for (const u of users.rows) {
    const id = `u-sel-${u.name}`;
    const otpCell = u.otp.lockedUntil
      ? badge('locked', 'bad')
      : u.otp.enabled
        ? badge(u.otp.enrolled ? 'on' : 'on · no seed', u.otp.enrolled ? 'ok' : 'warn')
        : badge(u.otp.enrolled ? 'off' : 'not enrolled', 'off');
    const status = [];
    const dir = u.directory;
    if (dir && dir.state && dir.state !== 'active') {
      status.push(el('span', { class: 'badge bad', title: `The account’s state in the directory ${dir.name}`, text: `${accountState(dir.state)} in ${dir.name}` }));
    }
    if (u.otp.lockedUntil) status.push(badge(`OTP locked until ${fmtTime(u.otp.lockedUntil)}`, 'bad'));
    if (u.push.lockedUntil) status.push(badge(`push locked until ${fmtTime(u.push.lockedUntil)}`, 'bad'));
    if (!u.factors.length) status.push(badge('no second factor', 'warn'));
    if (!status.length) status.push(el('span', { class: 'muted', text: '—' }));
    const tr = el(
      'tr',
      { class: users.selected.has(u.name) ? 'selected' : '', dataset: { name: u.name } },
      el(
        'td',
        { class: 'check needs-admin' },
        el('input', {
          type: 'checkbox',
          id,
          checked: users.selected.has(u.name),
          'aria-label': `Select ${u.name}`,
          dataset: { name: u.name },
        }),
      ),
      el(
        'td',
        { class: 'name' },
        el('a', { href: `#/users/${enc(u.name)}`, text: u.name }),
        dir ? [' ', el('span', { class: 'dir-tag', title: `From the directory ${dir.name}` }, el('span', { class: 'sr-only', text: 'from directory ' }), dir.name)] : null,
      ),
      el('td', { text: u.displayName || '—', class: u.displayName ? 'hide-sm' : 'hide-sm muted' }),
      el('td', { class: 'hide-sm' }, u.role ? badge(u.role, u.role === 'admin' ? 'role-admin' : 'role-ro') : el('span', { class: 'muted', text: '—' })),
      el('td', {}, otpCell),
      el('td', {}, factorCell(u.push)),
      el('td', { class: 'status' }, status),
    );
    tbody.append(tr);
  }
  show($('users-empty'), users.rows.length === 0);
  const pageNo = users.history.length + 1;
  const first = users.rows.length ? (pageNo - 1) * PAGE_SIZE + 1 : 0;
  const last = (pageNo - 1) * PAGE_SIZE + users.rows.length;
  $('users-count').textContent = users.q
    ? `${plural(users.total, 'user')} starting with “${users.q}”`
    : `${plural(users.total, 'user')} in total`;
  $('users-page').textContent = users.rows.length ? `Page ${num(pageNo)} · ${num(first)}–${num(last)} of ${num(users.total)}` : '';
  $('users-prev').disabled = users.history.length === 0;
  $('users-next').disabled = !users.next;
  renderSelection();
}

function renderSelection() {
  const n = users.selected.size;
  const onPage = users.rows.filter((u) => users.selected.has(u.name)).length;
  const elsewhere = n - onPage;
  $('bulk-count').textContent =
    n === 0 ? 'No users selected' : `${plural(n, 'user')} selected${elsewhere ? ` (${num(elsewhere)} on other pages)` : ''}`;
  $('bulkbar').classList.toggle('active', n > 0);
  for (const b of document.querySelectorAll('[data-bulk]')) b.disabled = n === 0 || bulkRunning;
  $('bulk-group').disabled = bulkRunning;
  $('bulk-clear').disabled = n === 0;
  const all = $('select-page');
  all.checked = users.rows.length > 0 && onPage === users.rows.length;
  all.indeterminate = onPage > 0 && onPage < users.rows.length;
  all.disabled = users.rows.length === 0;
}

$('users-table').addEventListener('change', (e) => {
  const box = e.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.name) return;
  if (box.checked) users.selected.add(box.dataset.name);
  else users.selected.delete(box.dataset.name);
  box.closest('tr').classList.toggle('selected', box.checked);
  renderSelection();
});

// A click anywhere on a row (but the checkbox or the link) opens the user.
$('users-table').tBodies[0].addEventListener('click', (e) => {
  const t = e.target;
  if (t.closest('input, a, button, label') || t.closest('td.check')) return;
  const tr = t.closest('tr');
  if (tr && tr.dataset.name) location.hash = `#/users/${enc(tr.dataset.name)}`;
});

$('select-page').addEventListener('change', (e) => {
  for (const u of users.rows) {
    if (e.target.checked) users.selected.add(u.name);
    else users.selected.delete(u.name);
  }
  for (const box of $('users-table').tBodies[0].querySelectorAll('input[type=checkbox]')) {
    box.checked = e.target.checked;
    box.closest('tr').classList.toggle('selected', box.checked);
  }
  renderSelection();
});

$('bulk-clear').addEventListener('click', () => {
  users.selected.clear();
  renderUsers();
});

let searchTimer;
const search = () => {
  clearTimeout(searchTimer);
  const q = $('users-q').value.trim();
  if (q === users.q && users.after === undefined) return;
  users.q = q;
  users.after = undefined;
  users.history = [];
  loadUsers();
};
$('users-q').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 250);
});
$('users-search').addEventListener('submit', (e) => {
  e.preventDefault();
  search();
});

$('users-next').addEventListener('click', () => {
  if (!users.next) return;
  users.history.push(users.after);
  users.after = users.next;
  loadUsers();
});
$('users-prev').addEventListener('click', () => {
  if (!users.history.length) return;
  users.after = users.history.pop();
  loadUsers();
});

// ── bulk actions ──

let bulkRunning = false;

for (const b of document.querySelectorAll('[data-bulk]')) {
  b.addEventListener('click', () => runBulk(b.dataset.bulk, b.dataset.enabled === 'true'));
}

async function runBulk(factor, enabled) {
  const names = [...users.selected].sort();
  if (!names.length || bulkRunning) return;
  const what = factor === 'otp' ? 'OTP' : 'push';
  if (!enabled) {
    const ok = await confirmDialog({
      title: `Disable ${what}?`,
      message: `${cap(what)} will be turned off for ${plural(names.length, 'user')}. Users with no other factor will not be able to sign in.`,
      confirmLabel: `Disable ${what}`,
      danger: true,
    });
    if (!ok) return;
  }
  const batches = [];
  for (let i = 0; i < names.length; i += BULK_CHUNK) batches.push({ users: names.slice(i, i + BULK_CHUNK) });
  await runFactors({ factor, enabled, batches, who: plural(names.length, 'user') });
}

/**
 * One bulk change through POST /users/factors, in one or more calls (batches
 * of named users, or one group): progress while it runs, then the results.
 * `group` (with `directory`) names the group when the members are its.
 */
async function runFactors({ factor, enabled, batches, who, group, directory }) {
  if (bulkRunning) return;
  const what = factor === 'otp' ? 'OTP' : 'push';
  bulkRunning = true;
  renderSelection();
  hideError();
  const result = $('bulk-result');
  show(result, false);
  const progress = $('bulk-progress');
  const bar = $('bulk-progress-bar');
  bar.removeAttribute('value'); // indeterminate
  const verb = enabled ? 'Enabling' : 'Disabling';
  $('bulk-progress-text').textContent = `${verb} ${what} for ${who}…`;
  show(progress);
  $('users-table').setAttribute('aria-busy', 'true');
  const all = { succeeded: 0, failed: 0, results: [] };
  let error = null;
  try {
    const chunks = batches.length;
    for (let i = 0; i < chunks; i++) {
      if (chunks > 1) {
        bar.max = chunks;
        bar.value = i;
        $('bulk-progress-text').textContent = `${verb} ${what} for ${who}… (batch ${i + 1} of ${chunks})`;
      }
      const r = await api('POST', '/api/v1/users/factors', { ...batches[i], factor, enabled });
      all.succeeded += r.succeeded;
      all.failed += r.failed;
      all.results.push(...r.results);
    }
  } catch (err) {
    error = err;
  } finally {
    bulkRunning = false;
    show(progress, false);
    $('users-table').removeAttribute('aria-busy');
  }
  if (error && !all.results.length) {
    if (!(error instanceof ApiError && error.status === 401)) showError(error);
    renderSelection();
    return;
  }
  if (!group) for (const r of all.results) if (r.ok) users.selected.delete(r.name);
  renderBulkResult(what, enabled, all, error, group ? { group, directory } : null);
  await loadUsers();
}

// ── enablement for a directory group ──

/** Shows "Enable for a group…" when some directory other than the local one has groups. */
function offerGroups() {
  if (groupsOffered || !isAdmin()) return;
  groupsOffered = true;
  directoryList()
    .then((list) => show($('bulk-group'), list.some((d) => !d.local)))
    .catch(() => {
      groupsOffered = false; // ask again on the next page
    });
}

$('bulk-group').addEventListener('click', async () => {
  if (bulkRunning) return;
  let list = [];
  try {
    list = (await directoryList()).filter((d) => !d.local);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err);
    return;
  }
  const choice = await askGroup(list);
  if (!choice) return;
  const where = choice.directory ? ` in ${choice.directory}` : '';
  await runFactors({
    factor: choice.factor,
    enabled: true,
    batches: [{ group: choice.group, ...(choice.directory ? { directory: choice.directory } : {}) }],
    who: `the members of “${choice.group}”${where}`,
    group: choice.group,
    directory: choice.directory,
  });
});

/** The group dialog: a group name, its directory when there are several, and the factor. */
function askGroup(directories) {
  const d = $('group-dialog');
  const opener = document.activeElement;
  const select = $('group-dir');
  clear(select);
  select.append(el('option', { value: '', text: 'Every directory' }), ...directories.map((x) => el('option', { value: x.name, text: x.name })));
  show($('group-dir-field'), directories.length > 1);
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener(
      'close',
      () => {
        const group = $('group-name').value.trim();
        const checked = d.querySelector('input[name="group-factor"]:checked');
        const ok = d.returnValue === 'ok' && group && checked;
        resolve(ok ? { group, factor: checked.value, directory: directories.length > 1 ? select.value || undefined : undefined } : null);
        if (opener && opener.isConnected) opener.focus();
      },
      { once: true },
    );
    d.showModal();
    $('group-name').select();
  });
}

function renderBulkResult(what, enabled, r, error, from) {
  const box = $('bulk-result');
  clear(box);
  const none = from && r.results.length === 0;
  box.className = `panel result-panel ${r.failed || error || none ? 'partial' : 'success'}`;
  const done = enabled ? 'enabled' : 'disabled';
  const ofGroup = from ? ` of “${from.group}”${from.directory ? ` in ${from.directory}` : ''}` : '';
  const title = none
    ? `No members found in “${from.group}”${from.directory ? ` in ${from.directory}` : ''}`
    : `${cap(what)} ${done} for ${plural(r.succeeded, 'user')}${ofGroup}`;
  box.append(
    el(
      'div',
      { class: 'result-head' },
      el('h2', { text: title }),
      el('button', { type: 'button', class: 'btn link small', text: 'Dismiss', on: { click: () => show(box, false) } }),
    ),
    el('p', {
      class: 'summary',
      text: none
        ? 'No directory has a group of that name with members in it. Nothing changed.'
        : `${num(r.succeeded)} succeeded, ${num(r.failed)} failed.${error ? ` The run stopped early: ${error.message}` : ''}`,
    }),
  );
  if (r.results.length) {
    // One line per user: for a group, the only place the admin learns who its members are.
    const MAX = 500;
    const lines = el('ul', { class: 'result-lines' });
    for (const x of r.results.slice(0, MAX)) {
      lines.append(
        el(
          'li',
          { dataset: { name: x.name } },
          el('a', { href: `#/users/${enc(x.name)}`, text: x.name }),
          ' ',
          x.ok ? badge(`${what} ${done}`, 'ok') : badge('failed', 'bad'),
          x.ok ? (x.otp ? el('span', { class: 'muted', text: ' · new OTP seed' }) : null) : el('span', { text: ` ${x.error || 'failed'}` }),
        ),
      );
    }
    if (r.results.length > MAX) lines.append(el('li', { class: 'muted', text: `… and ${num(r.results.length - MAX)} more` }));
    box.append(el('details', { class: 'per-user', open: Boolean(from) && r.results.length <= 50 }, el('summary', { text: `Each user (${num(r.results.length)})` }), lines));
  }
  const failures = r.results.filter((x) => !x.ok);
  if (failures.length) {
    const list = el('ul', { class: 'failures' });
    for (const f of failures.slice(0, 200)) list.append(el('li', {}, el('strong', { text: f.name }), ': ', f.error || 'failed'));
    if (failures.length > 200) list.append(el('li', { class: 'muted', text: `… and ${num(failures.length - 200)} more` }));
    box.append(el('details', { open: failures.length <= 10 }, el('summary', { text: `Failures (${num(failures.length)})` }), list));
  }
  const seeds = r.results.filter((x) => x.ok && x.otp);
  if (seeds.length) {
    const csv = ['user,secret,uri', ...seeds.map((s) => [s.name, s.otp.secret, s.otp.uri].map(csvCell).join(','))].join('\r\n');
    const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
    const table = el(
      'table',
      { class: 'data compact' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'User' }), el('th', { scope: 'col', text: 'otpauth URI' }))),
      el('tbody', {}, seeds.slice(0, 100).map((s) => el('tr', {}, el('td', { text: s.name }), el('td', { class: 'mono wrap', text: s.otp.uri })))),
    );
    box.append(
      el('p', { class: 'warn', text: `${plural(seeds.length, 'user')} had no OTP seed and got a new one. The seeds are shown this once.` }),
      el('p', {}, el('a', { class: 'btn small', href: url, download: 'otp-enrolments.csv', text: 'Download the new seeds (CSV)' })),
      el('details', {}, el('summary', { text: 'Show the new seeds' }), el('div', { class: 'table-wrap flat' }, table)),
    );
  }
  show(box);
  box.focus();
}

const csvCell = (v) => (/[",\r\n]/.test(v) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
