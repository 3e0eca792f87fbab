// The Countersign web app: starts the service worker, routes between the
// screens (#enrol=…, #requests, #history, #settings), and keeps the notices
// about notifications and removed devices current.

import { $, show, hostOf } from './dom.js';
import { state, reload, onChange, changed } from './state.js';
import { device, registerWorker, refreshPush, pushAdvice } from './push.js';
import { parseLink, showEnrol, wireEnrol } from './enrol.js';
import { follow, refreshNow, rebuild } from './requests.js';
import { loadHistory } from './history.js';
import { renderSettings, wireSettings } from './settings.js';
import { wireLock, syncProtected } from './lock.js';

const SCREENS = ['loading', 'enrol', 'welcome', 'requests', 'history', 'settings'];
const TABS = ['requests', 'history', 'settings'];
let shown = 'loading';

function screen(name, { focus = true } = {}) {
  const moved = shown !== name;
  shown = name;
  if (moved) $('toast').classList.remove('visible');
  for (const s of SCREENS) show($(`screen-${s}`), s === name);
  show($('tabs'), state.enrolments.length > 0 && TABS.includes(name));
  for (const t of TABS) {
    const a = $(`tab-${t}`);
    if (t === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (moved && focus) {
    // A new screen: its heading takes the focus, so keyboard and screen reader users land there.
    const h = $(`screen-${name}`).querySelector('h1');
    if (h) {
      h.setAttribute('tabindex', '-1');
      h.focus({ preventScroll: true });
    }
    scrollTo(0, 0);
  }
}

function route({ focus = true } = {}) {
  const h = location.hash;
  if (h.startsWith('#enrol=')) {
    const link = parseLink(h);
    if (link) {
      showEnrol(link);
      screen('enrol', { focus });
      return;
    }
  }
  if (!state.enrolments.length) {
    const d = device();
    show($('welcome-ios'), d.ios && !d.standalone);
    screen('welcome', { focus });
    return;
  }
  const name = { '#history': 'history', '#settings': 'settings' }[h] || 'requests';
  screen(name, { focus });
  if (name === 'history') loadHistory();
  if (name === 'settings') renderSettings();
}

function renderHeader() {
  const live = state.enrolments.filter((e) => !e.revoked);
  $('who').textContent = live.length === 1 ? `${live[0].user} · ${hostOf(live[0].server)}` : live.length > 1 ? `${live.length} accounts` : '';
}

function renderNotices() {
  const advice = pushAdvice();
  const notice = $('push-notice');
  show(notice, state.push.state === 'off' && Boolean(advice.short));
  $('push-notice-text').textContent = advice.short;
  const action = $('push-notice-action');
  action.textContent = advice.action === 'ask' ? 'Turn on notifications' : 'Details';
  action.dataset.action = advice.action === 'ask' ? 'ask' : 'details';
  show(action, true);

  const revoked = state.enrolments.filter((e) => e.revoked);
  const box = $('revoked-notice');
  show(box, revoked.length > 0);
  $('revoked-text').textContent = revoked.length
    ? `This device was removed on the server for ${revoked.map((e) => e.user).join(', ')} and no longer answers for ${revoked.length > 1 ? 'them' : 'that account'}. Remove it in Settings, and ask for a new enrolment link to use it again.`
    : '';
}

let lastLock = null;
onChange(() => {
  renderHeader();
  renderNotices();
  if (Boolean(lastLock) !== Boolean(state.lock)) {
    lastLock = state.lock;
    rebuild(); // the Approve buttons say "Unlock and approve" now, or no longer
  }
  follow();
  if (shown === 'settings') renderSettings();
  if (shown === 'welcome' || shown === 'requests') route({ focus: false });
});

async function boot() {
  wireEnrol();
  wireSettings();
  wireLock();
  $('push-notice-action').addEventListener('click', async (ev) => {
    if (ev.currentTarget.dataset.action === 'ask') await refreshPush({ ask: true });
    else location.hash = '#settings';
  });
  for (const b of document.querySelectorAll('.install')) {
    b.addEventListener('click', async () => {
      const p = state.installPrompt;
      state.installPrompt = null;
      for (const x of document.querySelectorAll('.install')) show(x, false);
      if (p) await p.prompt();
    });
  }
  addEventListener('beforeinstallprompt', (ev) => {
    ev.preventDefault();
    state.installPrompt = ev;
    for (const x of document.querySelectorAll('.install')) show(x, true);
  });

  await reload();
  lastLock = state.lock;
  route({ focus: false });
  changed();
  addEventListener('hashchange', () => route());
  document.addEventListener('visibilitychange', () => {
    follow();
    if (document.visibilityState === 'visible') refreshNow();
  });
  addEventListener('online', () => {
    follow();
    refreshNow();
  });

  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.addEventListener('message', (ev) => {
      const type = ev.data && ev.data.type;
      if (type === 'countersign.push' || type === 'countersign.answered') refreshNow();
      if (type === 'countersign.open' && state.enrolments.length) location.hash = '#requests';
    });
  }
  await registerWorker();
  await refreshPush();
  await syncProtected();
}

boot().catch((err) => {
  const p = document.createElement('p');
  p.className = 'panel error-panel';
  p.textContent = `Countersign could not start: ${err.message}. Storage may be turned off for this site (a private window?).`;
  $('main').prepend(p);
  show($('screen-loading'), false);
});
