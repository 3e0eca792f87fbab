// Pending sign-in requests: followed live over the device API's event stream
// (or by asking every few seconds where there is none), shown with the ID the
// sign-in screen shows, who asks, from where, and the time left; answered with
// Approve (after the number and the app lock, when asked), Reject, or "This
// wasn't me".

import { $, el, show, announce, clock, when, confirmDialog, fieldError } from './dom.js';
import { C, state, changed } from './state.js';
import { unlock } from './lock.js';

const POLL_MS = 3000;
/** The pending lists, per enrolment (deviceId). */
const lists = new Map();
/** challengeId → { node, view, … } for the cards on screen. */
const cards = new Map();
/** Announced once each. */
const seen = new Set();
/** Being answered: kept on screen until the answer is back. */
const answering = new Set();
const followers = new Map();

// ---------------------------------------------------------------- following

class Follower {
  constructor(enrolment) {
    this.e = enrolment;
    this.es = null;
    this.timer = 0;
    this.failures = 0;
    this.mode = 'stream';
    this.pollUntil = 0;
    this.live = false;
    this.problem = '';
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.refresh();
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.live = false;
    if (this.es) this.es.close();
    this.es = null;
  }

  async refresh() {
    try {
      const list = await C.api.pending(this.e);
      this.problem = '';
      setList(this.e, list);
    } catch (err) {
      if (err.code === 'device_unauthorized' && /not enrolled|revoked/i.test(err.message)) {
        this.stop();
        await markRevoked(this.e);
        return;
      }
      this.problem = C.explain(err);
      renderFollow();
    }
  }

  async open() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.mode === 'poll' || typeof EventSource === 'undefined') {
      this.timer = setTimeout(() => this.poll(), POLL_MS);
      return;
    }
    let url;
    try {
      url = await C.api.eventsUrl(this.e);
    } catch {
      this.mode = 'poll';
      this.pollUntil = Date.now() + 60_000;
      return this.open();
    }
    if (this.stopped) return;
    const es = new EventSource(url);
    this.es = es;
    let opened = false;
    es.addEventListener('open', () => {
      opened = true;
      this.failures = 0;
      this.live = true;
      renderFollow();
    });
    es.addEventListener('pending', (ev) => {
      try {
        const d = JSON.parse(ev.data);
        setList(this.e, Array.isArray(d) ? d : d.pending || []);
        this.problem = '';
      } catch {
        // a malformed event: the next one, or the next refresh, puts it right
      }
    });
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      es.close(); // never let EventSource retry with a spent signature
      this.es = null;
      this.live = false;
      if (this.stopped) return;
      if (!opened) this.failures++;
      if (this.failures >= 2) {
        // No stream here: ask every few seconds, and try the stream again in a minute.
        this.mode = 'poll';
        this.pollUntil = Date.now() + 60_000;
      }
      renderFollow();
      // The server ends a stream after a few minutes: open a fresh one (new signature) at once.
      this.refresh();
      this.timer = setTimeout(() => this.open(), opened ? 250 : 1000 * this.failures);
    });
  }

  async poll() {
    if (this.stopped) return;
    await this.refresh();
    if (this.mode === 'poll' && Date.now() > this.pollUntil) {
      this.mode = 'stream';
      this.failures = 0;
    }
    this.open();
  }
}

/** Follows every live enrolment while the page is visible; stops when it is hidden. */
export function follow() {
  const want = document.visibilityState !== 'hidden';
  const live = new Set(state.enrolments.filter((e) => !e.revoked).map((e) => e.deviceId));
  for (const [id, f] of followers) {
    if (!live.has(id)) {
      f.stop();
      followers.delete(id);
      lists.delete(id);
    }
  }
  for (const e of state.enrolments) {
    if (e.revoked) continue;
    let f = followers.get(e.deviceId);
    if (!f) followers.set(e.deviceId, (f = new Follower(e)));
    f.e = e;
    if (want) f.start();
    else f.stop();
  }
  render();
}

/** Asks at once (a push arrived, the page came back). */
export function refreshNow() {
  for (const f of followers.values()) if (!f.stopped) f.refresh();
}

function setList(e, list) {
  lists.set(
    e.deviceId,
    list.map((v) => ({ ...v, deviceId: e.deviceId })),
  );
  render();
}

async function markRevoked(e) {
  const current = await C.db.get('enrolments', e.deviceId);
  if (current) await C.db.put('enrolments', { ...current, revoked: true });
  lists.delete(e.deviceId);
  const i = state.enrolments.findIndex((x) => x.deviceId === e.deviceId);
  if (i >= 0) state.enrolments[i] = { ...state.enrolments[i], revoked: true };
  changed();
}

function renderFollow() {
  const fs = [...followers.values()].filter((f) => !f.stopped);
  const problem = fs.find((f) => f.problem)?.problem;
  $('follow-state').textContent = problem
    ? problem
    : fs.some((f) => f.live)
      ? 'New requests appear here as they come.'
      : fs.length
        ? 'Checking for new requests every few seconds.'
        : '';
}

// ---------------------------------------------------------------- the cards

function render() {
  const all = new Map();
  for (const list of lists.values()) for (const v of list) if (!all.has(v.challengeId)) all.set(v.challengeId, v);
  const views = [...all.values()].sort((a, b) => b.createdAt - a.createdAt);
  for (const [cid, c] of cards) {
    if (!all.has(cid) && !answering.has(cid)) {
      c.node.remove();
      cards.delete(cid);
    }
  }
  const list = $('pending');
  let fresh = null;
  let prev = null;
  for (const v of views) {
    let c = cards.get(v.challengeId);
    if (!c) {
      c = card(v);
      cards.set(v.challengeId, c);
      if (!seen.has(v.challengeId)) {
        seen.add(v.challengeId);
        fresh = v;
      }
    }
    // Moved only when out of place: moving a node would take the focus from a number being typed.
    const want = prev ? prev.nextSibling : list.firstChild;
    if (c.node !== want) list.insertBefore(c.node, want);
    prev = c.node;
  }
  show($('pending-empty'), cards.size === 0);
  const count = $('tab-count');
  count.textContent = String(cards.size);
  show(count, cards.size > 0);
  document.title = cards.size ? `(${cards.size}) Countersign` : 'Countersign';
  if (fresh) {
    show($('outcome'), false); // the last answer's note makes way for the new request
    announce(`New sign-in request: ID ${fresh.displayCode}${fresh.client ? `, from ${fresh.client}` : ''}.`);
    if (fresh.numberMatching || !document.activeElement || document.activeElement === document.body) {
      // Bring the newest request to the keyboard and screen reader, unless the person is typing elsewhere.
      const c = cards.get(fresh.challengeId);
      const target = c.num || c.node.querySelector('.req');
      if (location.hash === '#requests' || location.hash === '') target.focus({ preventScroll: false });
    }
  }
  renderFollow();
  tick();
}

function card(view) {
  const id = `r-${view.challengeId.replace(/[^A-Za-z0-9_-]/g, '')}`;
  const left = el('span', { class: 'left' });
  const bar = el('progress', { class: 'bar', max: 100, value: 100, 'aria-hidden': 'true' });
  const status = el('p', { class: 'error', role: 'alert', hidden: true });
  const c = { view, status, left, bar, num: null, numErr: null, buttons: [] };

  let numberBlock = null;
  if (view.numberMatching) {
    c.num = el('input', {
      id: `${id}-num`,
      class: 'number',
      inputmode: 'numeric',
      autocomplete: 'off',
      maxlength: 6,
      pattern: '[0-9]*',
      'aria-describedby': `${id}-num-err`,
    });
    c.numErr = el('p', { id: `${id}-num-err`, class: 'error', hidden: true });
    numberBlock = el(
      'div',
      { class: 'number-wrap' },
      el('label', { for: `${id}-num`, text: 'Type the number shown on the sign-in screen' }),
      c.num,
      c.numErr,
    );
    c.num.addEventListener('input', () => {
      fieldError(c.numErr, '');
      c.num.removeAttribute('aria-invalid');
    });
    c.num.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        decide(c, 'approve');
      }
    });
  }

  const approve = el('button', { type: 'button', class: 'btn approve', text: state.lock ? 'Unlock and approve' : 'Approve', on: { click: () => decide(c, 'approve') } });
  const reject = el('button', { type: 'button', class: 'btn reject', text: 'Reject', on: { click: () => decide(c, 'reject') } });
  const notMe = el('button', { type: 'button', class: 'linkish', text: 'This wasn’t me', on: { click: () => decide(c, 'reject', 'not-me') } });
  c.buttons = [approve, reject, notMe];
  c.approve = approve;

  const facts = el('dl', { class: 'facts' });
  const fact = (k, v) => v && facts.append(el('div', {}, el('dt', { text: k }), el('dd', { text: v })));
  fact('From', view.ip);
  fact('Asked at', when(view.createdAt));

  c.node = el(
    'li',
    { dataset: { cid: view.challengeId } },
    el(
      'article',
      { class: 'req', tabindex: '-1', 'aria-labelledby': `${id}-h`, 'aria-describedby': `${id}-who` },
      el('p', { class: 'asks', id: `${id}-who` }, el('strong', { text: view.client || 'An app' }), ` asks to sign in ${view.user}`),
      el('h2', { class: 'code', id: `${id}-h` }, el('span', { class: 'code-label', text: 'ID ' }), view.displayCode),
      el('p', { class: 'hint', text: 'Approve only if this ID is on the sign-in screen you are using.' }),
      view.bindingMessage ? el('p', { class: 'binding' }, el('span', { class: 'muted', text: 'Message: ' }), view.bindingMessage) : null,
      facts,
      el('div', { class: 'countdown' }, bar, left),
      numberBlock,
      status,
      el('div', { class: 'actions' }, approve, reject),
      el('p', { class: 'notme' }, notMe),
    ),
  );
  return c;
}

/** Every second: the time left on each card; a request past its deadline cannot be approved. */
function tick() {
  const now = C.serverNow();
  for (const c of cards.values()) {
    const v = c.view;
    const total = Math.max(1, v.deadline - v.createdAt);
    const left = v.deadline - now;
    c.bar.value = Math.max(0, Math.min(100, (left / total) * 100));
    c.bar.classList.toggle('low', left < 20_000);
    if (left <= 0) {
      c.left.textContent = 'Expired';
      c.approve.disabled = true;
    } else {
      c.left.textContent = `${clock(left)} left`;
    }
  }
}
setInterval(tick, 1000);

// ---------------------------------------------------------------- answering

function busy(c, on) {
  for (const b of c.buttons) b.disabled = on;
  if (c.num) c.num.disabled = on;
  c.node.classList.toggle('busy', on);
}

async function decide(c, decision, reason) {
  const view = c.view;
  fieldError(c.status, '');
  let number;
  if (decision === 'approve') {
    if (view.numberMatching) {
      number = c.num.value.trim();
      if (!/^\d{1,6}$/.test(number)) {
        fieldError(c.numErr, 'Type the number shown on the sign-in screen first.');
        c.num.setAttribute('aria-invalid', 'true');
        c.num.focus();
        return;
      }
      fieldError(c.numErr, '');
      c.num.removeAttribute('aria-invalid');
    }
    if (state.lock && !(await unlock(`approve sign-in ID ${view.displayCode}`, 'Unlock and approve'))) return;
  }
  if (
    reason === 'not-me' &&
    !(await confirmDialog({
      title: 'Report this sign-in?',
      message: `It is rejected and your administrator is told that someone tried to sign in as ${view.user}. Push requests to you pause for an hour; use a code from an authenticator app meanwhile. Someone may know your password: change it.`,
      confirmLabel: 'Reject and report',
    }))
  ) {
    return;
  }
  busy(c, true);
  answering.add(view.challengeId);
  try {
    const r = await C.answerFor(view, decision, { ...(number ? { number } : {}), ...(reason ? { reason } : {}), via: 'phone' });
    done(c, r.state, reason);
  } catch (err) {
    const over = err.status === 409 || err.status === 404 || err.code === 'wrong_number';
    if (over) {
      done(c, null, reason, C.explain(err, view));
    } else {
      fieldError(c.status, C.explain(err, view));
      busy(c, false);
    }
  } finally {
    answering.delete(view.challengeId);
  }
}

function done(c, result, reason, problem) {
  const v = c.view;
  answering.delete(v.challengeId);
  for (const list of lists.values()) {
    const i = list.findIndex((x) => x.challengeId === v.challengeId);
    if (i >= 0) list.splice(i, 1);
  }
  closeNotification(v.challengeId);
  const box = $('outcome');
  box.className = `panel outcome ${problem ? 'bad' : result === 'approved' ? 'good' : 'bad'}`;
  const what = `sign-in ID ${v.displayCode}${v.client ? ` to ${v.client}` : ''}`;
  const text = problem
    ? problem
    : result === 'approved'
      ? `Approved ${what}. You can go back to it now.`
      : reason === 'not-me'
        ? `Rejected and reported ${what}. Your administrator has been told.`
        : `Rejected ${what}.`;
  box.replaceChildren(el('p', { text }), el('p', { class: 'muted small', text: when(Date.now()) }));
  show(box);
  announce(text);
  const hadFocus = c.node.contains(document.activeElement);
  render();
  if (hadFocus) {
    box.setAttribute('tabindex', '-1');
    box.focus();
  }
}

async function closeNotification(tag) {
  try {
    for (const n of (await state.registration?.getNotifications({ tag })) || []) n.close();
  } catch {
    // nothing to close
  }
}

/** An enrolment was removed or the lock changed: rebuild the cards. */
export function rebuild() {
  for (const c of cards.values()) c.node.remove();
  cards.clear();
  render();
}
