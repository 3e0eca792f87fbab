// History: the user's recent sign-ins as the server saw them (POST
// /device/v1/history), or, where the server does not offer that, the answers
// given on this device.

import { $, el, show, when } from './dom.js';
import { C, state } from './state.js';

const LABELS = {
  approved: ['Approved', 'good'],
  rejected: ['Rejected', 'bad'],
  expired: ['Expired', 'quiet'],
  cancelled: ['Cancelled', 'quiet'],
  pending: ['Waiting', 'quiet'],
};
/** How a login was decided, where that is news (push is this app's own). */
const METHODS = { push: '', otp: 'with a code', 'first-factor': 'password only', admin: 'by an administrator', deadline: '' };

/** The server's logins ({ logins: [{ time, client, ip, outcome, method, displayCode }] }) in the page's shape. */
function rows(r, e) {
  const items = Array.isArray(r) ? r : r.logins || [];
  return items.map((x) => ({
    at: Number(x.time ?? x.at ?? x.createdAt ?? 0),
    state: x.outcome ?? x.state ?? '',
    client: x.client ?? x.front ?? '',
    ip: x.ip ?? '',
    displayCode: x.displayCode ?? '',
    method: x.method ?? '',
    reason: x.reason ?? '',
    user: x.user ?? e.user,
  }));
}

export async function loadHistory() {
  const list = $('history');
  const source = $('history-source');
  source.textContent = 'Loading…';
  let all = [];
  let fromServer = false;
  const problems = [];
  const live = state.enrolments.filter((e) => !e.revoked);
  for (const e of live) {
    try {
      all.push(...rows(await C.api.history(e), e));
      fromServer = true;
    } catch (err) {
      if (err.status !== 404) problems.push(C.explain(err));
    }
  }
  if (!fromServer) {
    all = (await C.db.all('answers')).map((a) => ({
      at: a.at,
      state: a.reason === 'not-me' ? 'rejected' : a.state || (a.decision === 'approve' ? 'approved' : 'rejected'),
      client: a.client || '',
      ip: a.ip || '',
      displayCode: a.displayCode,
      method: 'push',
      reason: a.reason || '',
      user: a.user,
    }));
  }
  all.sort((a, b) => b.at - a.at);
  const multi = new Set(all.map((r) => r.user)).size > 1;
  list.replaceChildren(
    ...all.slice(0, 100).map((r) => {
      const [label, kind] = LABELS[r.state] || [r.state || 'Unknown', 'quiet'];
      const meta = [r.displayCode && `ID ${r.displayCode}`, r.ip, METHODS[r.method] ?? r.method, multi && r.user].filter(Boolean).join(' · ');
      return el(
        'li',
        { class: 'hist' },
        el('span', { class: `badge ${kind}`, text: r.reason === 'not-me' ? 'Reported' : label }),
        el(
          'div',
          { class: 'hist-main' },
          el(
            'div',
            { class: 'hist-top' },
            el('p', { class: 'hist-client', text: r.client || 'Sign-in' }),
            el('time', { class: 'hist-time small', datetime: new Date(r.at).toISOString(), text: when(r.at) }),
          ),
          el('p', { class: 'muted small', text: meta }),
        ),
      );
    }),
  );
  show($('history-empty'), all.length === 0);
  source.textContent = problems.length
    ? problems[0]
    : fromServer
      ? `Your recent sign-ins, as the server recorded them.`
      : 'Answers given on this device.';
}
