// Live logins: the pending second factors, polled while the page is on
// screen. Administrators may approve or reject; the help desk only looks.

import { $, badge, confirmDialog, el, show, svg, toast } from './dom.js';
import { factorName, fmtTime, plural } from './format.js';
import { act, api, ApiError, enc } from './api.js';
import { current, isAdmin, session } from './state.js';

const LIVE_EVERY_MS = 1500;

let liveTimer = 0;
let liveOn = false;
let liveLastCount = -1;
let liveFirst = true;
const liveRows = new Map();

export function startLive() {
  liveOn = true;
  liveLastCount = -1;
  liveFirst = true;
  for (const row of liveRows.values()) row.tr.remove(); // what was pending when we left may be long gone
  liveRows.clear();
  clearTimeout(liveTimer);
  pollLive();
}
export function stopLive() {
  liveOn = false;
  clearTimeout(liveTimer);
}
document.addEventListener('visibilitychange', () => {
  if (current.view !== 'live' || !session.user) return;
  if (document.hidden) stopLive();
  else startLive();
});

async function pollLive() {
  if (!liveOn) return;
  try {
    const r = await api('GET', '/api/v1/challenges?limit=100');
    if (!liveOn) return;
    renderLive(r.challenges);
    $('live-updated').textContent = `· updated ${fmtTime(Date.now())}`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    $('live-updated').textContent = `· could not refresh: ${err.message}`;
  } finally {
    if (liveOn) liveTimer = setTimeout(pollLive, LIVE_EVERY_MS);
  }
}

function renderLive(list) {
  const tbody = $('live-table').tBodies[0];
  const seen = new Set();
  for (const c of list) {
    // The helpdesk is not given challenge ids (they answer logins): rows are keyed by the opaque ref.
    const key = c.ref || c.id;
    seen.add(key);
    let row = liveRows.get(key);
    if (!row) {
      const total = Math.max(1, Math.round((c.deadline - c.createdAt) / 1000));
      const fill = svg('rect', { class: 'meter-fill', x: 0, y: 0, height: 6, rx: 3, width: 0 });
      const meter = svg('svg', { class: 'meter', viewBox: '0 0 80 6', width: 80, height: 6, 'aria-hidden': 'true', focusable: 'false' },
        svg('rect', { class: 'meter-track', x: 0, y: 0, width: 80, height: 6, rx: 3 }), fill);
      const left = el('span', { class: 'left' });
      const origin = c.origin || {};
      const from = el(
        'td',
        { class: 'from' },
        badge(origin.front || '?', 'front'),
        origin.client ? el('span', { text: ` ${origin.client}` }) : null,
        origin.ip ? el('span', { class: 'muted mono', text: ` ${origin.ip}` }) : null,
      );
      const tr = el(
        'tr',
        { dataset: c.id ? { id: c.id, ref: key } : { ref: key }, class: liveFirst ? '' : 'fresh' },
        el('th', { scope: 'row', class: 'name' }, el('a', { href: `#/users/${enc(c.user)}`, text: c.user })),
        from,
        el('td', { class: 'display-id mono', text: c.displayCode }),
        el('td', { text: (c.factors || []).map(factorName).join(', ') }),
        el('td', { text: fmtTime(c.createdAt) }),
        el('td', { class: 'time-left' }, meter, left),
        isAdmin() && c.id
          ? el(
              'td',
              { class: 'row-actions needs-admin' },
              el('button', { type: 'button', class: 'btn small', text: 'Approve', 'aria-label': `Approve the login of ${c.user} (ID ${c.displayCode})`, on: { click: (e) => decideLogin(c, 'approve', e.currentTarget) } }),
              el('button', { type: 'button', class: 'btn small danger-outline', text: 'Reject', 'aria-label': `Reject the login of ${c.user} (ID ${c.displayCode})`, on: { click: (e) => decideLogin(c, 'reject', e.currentTarget) } }),
            )
          : null,
      );
      row = { tr, fill, left, total };
      liveRows.set(key, row);
      setTimeout(() => tr.classList.remove('fresh'), 1200);
    }
    const s = Math.max(0, c.secondsLeft);
    row.left.textContent = s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
    row.fill.setAttribute('width', String(Math.max(0, Math.min(80, (80 * s) / row.total))));
    row.tr.classList.toggle('urgent', s <= 10);
    tbody.append(row.tr); // keeps server order (soonest deadline first)
  }
  for (const [id, row] of liveRows) {
    if (!seen.has(id)) {
      row.tr.remove();
      liveRows.delete(id);
    }
  }
  liveFirst = false;
  show($('live-empty'), list.length === 0);
  show($('live-table').tHead, list.length > 0);
  if (list.length !== liveLastCount) {
    liveLastCount = list.length;
    $('live-summary').textContent = list.length ? `${plural(list.length, 'login')} waiting` : 'No login waiting';
  }
}

/** An administrator decides a login in the user's stead: only after saying what that means. */
async function decideLogin(c, decision, button) {
  const approve = decision === 'approve';
  const ok = await confirmDialog({
    title: approve ? 'Approve this login?' : 'Reject this login?',
    message: approve
      ? `${c.user} will be signed in (ID ${c.displayCode}) without their second factor. Approve only when you have made sure it is really them.`
      : `The login of ${c.user} (ID ${c.displayCode}) will be denied.`,
    confirmLabel: approve ? 'Approve login' : 'Reject login',
    danger: !approve,
  });
  if (!ok) return;
  await act(button, async () => {
    await api('POST', `/api/v1/challenges/${enc(c.id)}/${decision}`, { reason: 'by administrator in the console' });
    toast(`The login of ${c.user} was ${approve ? 'approved' : 'rejected'}.`);
  });
}
