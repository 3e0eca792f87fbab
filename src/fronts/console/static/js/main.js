// Countersign console: a small single-page app on the admin API, in ES
// modules the browser loads itself (no framework, no build step). This one
// boots the page, signs the user in and out, and routes #/… to the pages.

import { $, confirmDialog, show } from './dom.js';
import { plural } from './format.js';
import { api, ApiError, hideError, onSessionEnded, showError } from './api.js';
import { current, isAdmin, session } from './state.js';
import { clearSelection, loadUsers } from './users.js';
import { loadUser } from './user.js';
import { startLive, stopLive } from './live.js';
import { loadClients } from './clients.js';
import { forgetDirectories, loadDirectories } from './directories.js';
import { loadAudit } from './audit.js';
import { initPasskeySignin, offerPasskeyFactor } from './passkeys.js';
import './invite.js';

// ── routing ──

const VIEWS = ['signin', 'users', 'user', 'directories', 'live', 'clients', 'audit'];

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [head, ...rest] = h.split('/');
  if (head === 'users' && rest.length) return { view: 'user', name: decodeURIComponent(rest.join('/')) };
  if (['users', 'directories', 'live', 'clients', 'audit'].includes(head)) return { view: head };
  return { view: 'users' };
}

function showView(name) {
  for (const v of VIEWS) show($(`view-${v}`), v === name);
  if (current.view === 'live' && name !== 'live') stopLive();
  current.view = name;
  const navKey = name === 'user' ? 'users' : name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const here = document.querySelector('#nav a[aria-current="page"]');
  if (here && !$('nav').hidden) here.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  navEdges();
}

/** On a narrow screen the sections scroll sideways: fade the edge that has more behind it. */
function navEdges() {
  const nav = $('nav');
  nav.classList.toggle('more-left', nav.scrollLeft > 1);
  nav.classList.toggle('more-right', nav.scrollLeft + nav.clientWidth < nav.scrollWidth - 1);
}
$('nav').addEventListener('scroll', navEdges, { passive: true });
window.addEventListener('resize', navEdges);

/** Moves focus to a view's heading so screen readers hear where they are. */
const focusHeading = (id) => {
  const h = $(id);
  if (h && document.activeElement !== h) h.focus({ preventScroll: true });
};

let firstRoute = true;
function route() {
  if (!session.user) return;
  hideError();
  $('toast').classList.remove('visible');
  const r = parseHash();
  const moveFocus = !firstRoute;
  firstRoute = false;
  showView(r.view);
  const titles = { users: 'Users', user: r.name, directories: 'Directories', live: 'Live logins', clients: 'Clients', audit: 'Audit' };
  document.title = `${titles[r.view]} · Countersign console`;
  if (r.view === 'users') {
    loadUsers();
    if (moveFocus) focusHeading('users-h');
  } else if (r.view === 'user') {
    loadUser(r.name).then(() => moveFocus && focusHeading('user-h'));
  } else if (r.view === 'directories') {
    loadDirectories();
    if (moveFocus) focusHeading('directories-h');
  } else if (r.view === 'live') {
    startLive();
    if (moveFocus) focusHeading('live-h');
  } else if (r.view === 'clients') {
    loadClients();
    if (moveFocus) focusHeading('clients-h');
  } else if (r.view === 'audit') {
    loadAudit();
    if (moveFocus) focusHeading('audit-h');
  }
}
window.addEventListener('hashchange', route);

// ── sign-in ──

/** The sign-in in progress: its abort controller, deadline timer and a once-only finish. */
let signin = null;

function resetSignin() {
  if (signin) {
    signin.abort.abort();
    clearInterval(signin.timer);
  }
  signin = null;
  show($('signin-form'));
  show($('signin-second'), false);
  $('si-password').value = '';
  $('si-otp').value = '';
}

function signinMessage(text, kind = 'error') {
  const m = $('signin-msg');
  m.textContent = text || '';
  m.className = `notice ${kind}`;
  show(m, Boolean(text));
}

function showSignin(message, kind = 'error') {
  document.body.classList.remove('booting');
  session.user = session.role = session.csrf = null;
  document.body.classList.remove('signed-in', 'ro');
  show($('nav'), false);
  show($('who'), false);
  stopLive();
  resetSignin();
  showView('signin');
  document.title = 'Sign in · Countersign console';
  signinMessage(message, kind);
  const user = $('si-user');
  if (user.value) $('si-password').focus();
  else user.focus();
}

/** The admin API said 401: the session expired or its cookie is gone. */
function sessionEnded(err) {
  const msg = err.code === 'session_expired' ? err.message : 'Your console session has ended. Sign in again.';
  showSignin(msg, 'warning');
}
onSessionEnded(sessionEnded);

function enterApp(s) {
  document.body.classList.remove('booting');
  session.user = s.user;
  session.role = s.role;
  session.csrf = s.csrf;
  resetSignin();
  signinMessage('');
  document.body.classList.add('signed-in');
  document.body.classList.toggle('ro', !isAdmin());
  $('who-name').textContent = s.user;
  const role = $('who-role');
  role.textContent = isAdmin() ? 'admin' : `${s.role} · read-only`;
  role.className = `badge ${isAdmin() ? 'role-admin' : 'role-ro'}`;
  role.title = isAdmin() ? 'Full access' : 'The help desk role can look but not change anything';
  show($('nav'));
  show($('who'));
  clearSelection();
  forgetDirectories();
  firstRoute = true;
  if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#/users');
  route();
  focusHeading(`${current.view === 'user' ? 'user' : current.view}-h`);
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = $('si-user').value.trim();
  const password = $('si-password').value;
  if (!user || !password) {
    signinMessage('Enter your user name and password.');
    (user ? $('si-password') : $('si-user')).focus();
    return;
  }
  const btn = $('si-continue');
  btn.disabled = true;
  signinMessage('');
  try {
    const r = await api('POST', '/console/api/login', { user, password });
    beginSecondStep(user, r);
  } catch (err) {
    signinMessage(err.message);
    $('si-password').value = '';
    $('si-password').focus();
  } finally {
    btn.disabled = false;
  }
});

function beginSecondStep(user, r) {
  resetSignin();
  signin = { abort: new AbortController(), finished: false, deadline: r.deadline, timer: 0 };
  show($('signin-form'), false);
  show($('signin-second'));
  $('si-who').textContent = user;
  const push = r.factors.includes('push');
  const otp = r.factors.includes('otp');
  show($('si-push'), push);
  $('si-code').textContent = r.displayCode;
  show($('si-number-wrap'), Boolean(push && r.number));
  $('si-number').textContent = r.number || '';
  show($('si-or'), push && otp);
  show($('si-otp-form'), otp);
  offerPasskeyFactor(r.factors.includes('passkey'));
  const tick = () => {
    const left = Math.max(0, Math.round((signin.deadline - Date.now()) / 1000));
    $('si-deadline').textContent = `This sign-in expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}.`;
    if (left <= 0 && !push) failSignin('No answer arrived in time. Start again.');
  };
  tick();
  signin.timer = setInterval(tick, 1000);
  if (otp) $('si-otp').focus();
  else $('signin-h').focus();
  if (push) waitForPhone(signin);
}

async function waitForPhone(s) {
  while (!s.abort.signal.aborted) {
    let r;
    try {
      r = await api('GET', '/console/api/login/wait', undefined, { signal: s.abort.signal });
    } catch (err) {
      if (s.abort.signal.aborted) return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) return failSignin(err.message);
      await new Promise((res) => setTimeout(res, 2000)); // the network blinked: ask again
      continue;
    }
    if (s.abort.signal.aborted) return;
    if (r.state === 'pending') continue;
    if (r.state === 'approved') return finishSignin(s);
    return failSignin(stateMessage(r.state));
  }
}

const stateMessage = (state) =>
  ({
    rejected: 'The sign-in was rejected on your phone.',
    expired: 'No answer arrived in time. Start again.',
    cancelled: 'The sign-in was cancelled, perhaps by a newer one. Start again.',
  })[state] || `The sign-in is ${state}. Start again.`;

function failSignin(message) {
  resetSignin();
  signinMessage(message);
  $('si-password').focus();
}

async function finishSignin(s) {
  if (s.finished) return;
  s.finished = true;
  try {
    const r = await api('POST', '/console/api/login/finish', {});
    enterApp(r);
  } catch (err) {
    failSignin(err.message);
  }
}

$('si-otp-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const s = signin;
  if (!s) return;
  const input = $('si-otp');
  const code = input.value.replace(/\s+/g, '');
  if (!/^\d{6,8}$/.test(code)) {
    signinMessage('A code is 6 to 8 digits.');
    input.focus();
    return;
  }
  const btn = e.submitter || null;
  if (btn) btn.disabled = true;
  try {
    const r = await api('POST', '/console/api/login/otp', { code });
    if (r.state === 'approved') return finishSignin(s);
    failSignin(stateMessage(r.state));
  } catch (err) {
    if (err instanceof ApiError && /^challenge_/.test(err.code)) return failSignin(err.message);
    if (err instanceof ApiError && err.code === 'no_sign_in') return failSignin(err.message);
    signinMessage(err.message);
    input.value = '';
    input.focus();
  } finally {
    if (btn) btn.disabled = false;
  }
});

initPasskeySignin({ signedIn: enterApp, approved: () => signin && finishSignin(signin), message: (text) => signinMessage(text) });

$('si-cancel').addEventListener('click', () => {
  resetSignin();
  signinMessage('');
  $('si-password').focus();
});

$('signout').addEventListener('click', async () => {
  try {
    await api('POST', '/console/api/logout', {});
  } catch {
    // signed out locally either way
  }
  $('si-user').value = '';
  showSignin('You are signed out.', 'info');
});

$('signout-all').addEventListener('click', async (e) => {
  const button = e.currentTarget;
  const ok = await confirmDialog({
    title: 'End all your sessions?',
    message: 'You will be signed out of the console in every browser, this one included. Do this when a computer you used may be in other hands.',
    confirmLabel: 'End all sessions',
    danger: true,
  });
  if (!ok) return;
  button.disabled = true;
  hideError();
  try {
    const r = await api('POST', '/console/api/logout-everywhere', {});
    showSignin(`You are signed out everywhere (${plural(r.sessionsEnded, 'session')} ended).`, 'info');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showSignin('Your console session has ended. Sign in again.', 'warning');
    else showError(err);
  } finally {
    button.disabled = false;
  }
});

// ── start ──

async function boot() {
  try {
    const s = await api('GET', '/console/api/session');
    enterApp(s);
  } catch (err) {
    showSignin(err instanceof ApiError && err.status === 401 ? '' : err.message);
  } finally {
    document.body.classList.remove('booting');
  }
}
boot();
