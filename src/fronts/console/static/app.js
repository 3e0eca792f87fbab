// Countersign console: a small single-page app on the admin API.
// No framework and no build step. Every piece of data reaches the page
// through textContent or DOM attributes, never through innerHTML.
'use strict';

(() => {
  const PAGE_SIZE = 50;
  const LIVE_EVERY_MS = 1500;
  const BULK_CHUNK = 10_000; // the API's limit per call
  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** @type {{user: string|null, role: string|null, csrf: string|null}} */
  const session = { user: null, role: null, csrf: null };
  let currentView = null;

  // ───────────────────────── small DOM helpers ─────────────────────────

  const $ = (id) => document.getElementById(id);

  /** el('td', {class: 'x', text: 'y'}, child, …) — text always through textContent. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'class') node.className = v;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null) continue;
      if (k === 'text') node.textContent = String(v);
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c) node.append(c);
    return node;
  }

  const clear = (node) => node.replaceChildren();
  const show = (node, on = true) => { node.hidden = !on; };
  const cap = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : s);
  const sentence = (s) => { const t = cap(String(s ?? '').trim()); return t && !/[.!?…]$/.test(t) ? `${t}.` : t; };
  const nf = new Intl.NumberFormat();
  const num = (n) => nf.format(n);
  const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const fmtTime = (ms) => (ms ? timeFmt.format(new Date(ms)) : '—');
  const fmtDateTime = (ms) => (ms ? dateTimeFmt.format(new Date(ms)) : '—');
  const fmtAgo = (ms) => {
    if (!ms) return '—';
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
    return fmtDateTime(ms);
  };
  const fmtDuration = (ms) => {
    if (ms === undefined || ms === null) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
    return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  };
  const factorName = (f) => (f === 'otp' ? 'OTP' : f === 'push' ? 'push' : f);
  const isAdmin = () => session.role === 'admin';

  function badge(text, kind = '') {
    return el('span', { class: `badge ${kind}`.trim(), text });
  }

  // ───────────────────────── messages ─────────────────────────

  let toastTimer;
  function toast(message) {
    const t = $('toast');
    t.textContent = message;
    t.classList.add('visible');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove('visible'), 5000);
  }

  function showError(err) {
    const message = err instanceof ApiError ? err.message : sentence(err && err.message ? err.message : String(err));
    $('alert-text').textContent = message;
    show($('alert'));
  }
  const hideError = () => show($('alert'), false);
  $('alert-close').addEventListener('click', hideError);

  // ───────────────────────── API ─────────────────────────

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /**
   * One call to the console or admin API. The session cookie goes along
   * (same origin); every change carries the CSRF token. A 401 from the
   * admin API means the session is gone: back to the sign-in.
   */
  async function api(method, path, body, { signal } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['x-csrf-token'] = session.csrf;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        signal,
      });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!res.ok) {
      const err = new ApiError(
        res.status,
        (data && data.error) || `http_${res.status}`,
        sentence((data && data.message) || `The server answered ${res.status} ${res.statusText}`),
      );
      if (res.status === 401 && path.startsWith('/api/') && session.user) sessionEnded(err);
      throw err;
    }
    return data;
  }

  const enc = encodeURIComponent;
  const userPath = (name) => `/api/v1/users/${enc(name)}`;

  /** Runs an action from a button: disables it meanwhile and shows any error. */
  async function act(button, fn) {
    if (button) button.disabled = true;
    hideError();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return undefined; // handled by sessionEnded
      showError(err);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ───────────────────────── dialogs ─────────────────────────

  function confirmDialog({ title, message, confirmLabel, danger = false }) {
    const d = $('confirm');
    const opener = document.activeElement;
    $('confirm-h').textContent = title;
    $('confirm-text').textContent = message;
    const ok = $('confirm-ok');
    ok.textContent = confirmLabel;
    ok.className = `btn ${danger ? 'danger' : 'primary'}`;
    d.returnValue = '';
    return new Promise((resolve) => {
      d.addEventListener(
        'close',
        () => {
          resolve(d.returnValue === 'ok');
          if (opener && opener.isConnected) opener.focus();
        },
        { once: true },
      );
      d.showModal();
      $('confirm-cancel').focus();
    });
  }

  function promptRename(current) {
    const d = $('rename');
    const opener = document.activeElement;
    const input = $('rename-input');
    input.value = current;
    d.returnValue = '';
    return new Promise((resolve) => {
      d.addEventListener(
        'close',
        () => {
          const v = input.value.trim();
          resolve(d.returnValue === 'ok' && v ? v : null);
          if (opener && opener.isConnected) opener.focus();
        },
        { once: true },
      );
      d.showModal();
      input.select();
    });
  }

  // ───────────────────────── routing ─────────────────────────

  const VIEWS = ['signin', 'users', 'user', 'live', 'clients', 'audit'];

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, '');
    const [head, ...rest] = h.split('/');
    if (head === 'users' && rest.length) return { view: 'user', name: decodeURIComponent(rest.join('/')) };
    if (['users', 'live', 'clients', 'audit'].includes(head)) return { view: head };
    return { view: 'users' };
  }

  function showView(name) {
    for (const v of VIEWS) show($(`view-${v}`), v === name);
    if (currentView === 'live' && name !== 'live') stopLive();
    currentView = name;
    const navKey = name === 'user' ? 'users' : name;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

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
    const titles = { users: 'Users', user: r.name, live: 'Live logins', clients: 'Clients', audit: 'Audit' };
    document.title = `${titles[r.view]} · Countersign console`;
    if (r.view === 'users') {
      loadUsers();
      if (moveFocus) focusHeading('users-h');
    } else if (r.view === 'user') {
      loadUser(r.name).then(() => moveFocus && focusHeading('user-h'));
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

  // ───────────────────────── sign-in ─────────────────────────

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
    users.selected.clear();
    firstRoute = true;
    if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#/users');
    route();
    focusHeading(`${currentView === 'user' ? 'user' : currentView}-h`);
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

  // ───────────────────────── users ─────────────────────────

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

  async function loadUsers() {
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
        el('td', { class: 'name' }, el('a', { href: `#/users/${enc(u.name)}`, text: u.name })),
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
    bulkRunning = true;
    renderSelection();
    hideError();
    const result = $('bulk-result');
    show(result, false);
    const progress = $('bulk-progress');
    const bar = $('bulk-progress-bar');
    bar.removeAttribute('value'); // indeterminate
    const verb = enabled ? 'Enabling' : 'Disabling';
    $('bulk-progress-text').textContent = `${verb} ${what} for ${plural(names.length, 'user')}…`;
    show(progress);
    $('users-table').setAttribute('aria-busy', 'true');
    const all = { succeeded: 0, failed: 0, results: [] };
    let error = null;
    try {
      const chunks = Math.ceil(names.length / BULK_CHUNK);
      for (let i = 0; i < chunks; i++) {
        if (chunks > 1) {
          bar.max = chunks;
          bar.value = i;
          $('bulk-progress-text').textContent = `${verb} ${what} for ${plural(names.length, 'user')}… (batch ${i + 1} of ${chunks})`;
        }
        const r = await api('POST', '/api/v1/users/factors', {
          users: names.slice(i * BULK_CHUNK, (i + 1) * BULK_CHUNK),
          factor,
          enabled,
        });
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
    for (const r of all.results) if (r.ok) users.selected.delete(r.name);
    renderBulkResult(what, enabled, all, error);
    await loadUsers();
  }

  function renderBulkResult(what, enabled, r, error) {
    const box = $('bulk-result');
    clear(box);
    box.className = `panel result-panel ${r.failed || error ? 'partial' : 'success'}`;
    const done = enabled ? 'enabled' : 'disabled';
    box.append(
      el(
        'div',
        { class: 'result-head' },
        el('h2', { text: `${cap(what)} ${done} for ${plural(r.succeeded, 'user')}` }),
        el('button', { type: 'button', class: 'btn link small', text: 'Dismiss', on: { click: () => show(box, false) } }),
      ),
      el('p', {
        class: 'summary',
        text: `${num(r.succeeded)} succeeded, ${num(r.failed)} failed.${error ? ` The run stopped early: ${error.message}` : ''}`,
      }),
    );
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

  // ───────────────────────── one user ─────────────────────────

  const detail = { name: null, user: null, devices: [] };

  async function loadUser(name) {
    const changed = detail.name !== name;
    detail.name = name;
    $('user-h').textContent = name;
    $('user-crumb').textContent = name;
    if (changed) {
      show($('user-body'), false);
      hideEnrolment();
      $('user-sub').textContent = 'Loading…';
    }
    try {
      const [u, d] = await Promise.all([api('GET', userPath(name)), api('GET', `${userPath(name)}/devices`)]);
      if (detail.name !== name) return;
      detail.user = u;
      detail.devices = d.devices;
      renderUser();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      if (err instanceof ApiError && err.status === 404) {
        $('user-sub').textContent = `There is no user named “${name}”.`;
        show($('user-body'), false);
        return;
      }
      showError(err);
    }
  }

  const refreshUser = () => loadUser(detail.name);

  function renderUser() {
    const u = detail.user;
    $('user-h').textContent = u.name;
    const sub = [u.displayName, u.email, u.role ? `console role: ${u.role}` : null, `created ${fmtDateTime(u.createdAt)}`].filter(Boolean);
    $('user-sub').textContent = sub.join(' · ');
    const dl = $('user-factors');
    clear(dl);
    const row = (term, ...value) => dl.append(el('div', { class: 'fact' }, el('dt', { text: term }), el('dd', {}, ...value)));
    const otpState = !u.otp.enrolled
      ? badge('not enrolled', 'off')
      : u.otp.enabled
        ? badge('enabled', 'ok')
        : badge('disabled', 'off');
    const otpInfo = u.otp.enrolled
      ? el('span', { class: 'muted', text: ` ${String(u.otp.type || '').toUpperCase()} · ${u.otp.digits} digits${u.otp.period ? ` · ${u.otp.period} s` : ''} · ${u.otp.algorithm}` })
      : null;
    row('One-time passwords', otpState, otpInfo);
    row('Push', u.push.enabled ? badge('enabled', 'ok') : badge('disabled', 'off'), u.push.numberMatching !== undefined ? el('span', { class: 'muted', text: ` number matching ${u.push.numberMatching ? 'on' : 'off'}` }) : null);
    const locks = [];
    if (u.otp.lockedUntil) locks.push(badge(`OTP locked until ${fmtTime(u.otp.lockedUntil)}`, 'bad'));
    if (u.push.lockedUntil) locks.push(badge(`push locked until ${fmtTime(u.push.lockedUntil)}${u.push.lockReason ? ` (${u.push.lockReason})` : ''}`, 'bad'));
    if (u.push.rateLimitedUntil) locks.push(badge(`push rate-limited until ${fmtTime(u.push.rateLimitedUntil)}`, 'bad'));
    if (!locks.length) locks.push(badge('not locked', 'ok'));
    row('Lock state', ...locks);
    if (u.push.limit !== undefined) {
      row(
        'Pushes sent in this window',
        el('span', { text: `${u.push.sent} of ${u.push.limit}` }),
        u.push.rateLimitedUntil ? el('span', { class: 'muted', text: ` · no push until ${fmtTime(u.push.rateLimitedUntil)}, or an unlock` }) : null,
      );
    }
    row('Failed OTP attempts', el('span', { text: String(u.otp.failures) }));
    row('Factors offered at login', u.factors.length ? el('span', { text: u.factors.map(factorName).join(' and ') }) : badge('none — this user cannot log in', 'warn'));

    const otpBtn = $('u-otp-toggle');
    otpBtn.textContent = u.otp.enabled ? 'Disable OTP' : 'Enable OTP';
    show(otpBtn, u.otp.enrolled); // without a seed, "Enrol OTP" is the way in
    $('u-push-toggle').textContent = u.push.enabled ? 'Disable push' : 'Enable push';
    // Like failed OTP attempts, pushes already counted are something an unlock clears.
    const locked = Boolean(u.otp.lockedUntil || u.push.lockedUntil || u.otp.failures || u.push.rateLimitedUntil || u.push.sent);
    const unlock = $('u-unlock');
    unlock.disabled = !locked;
    unlock.title = locked ? 'Clear the OTP and push lockouts and the pushes counted in this window' : 'Nothing to unlock';
    $('u-enrol-otp').textContent = u.otp.enrolled ? 'Re-enrol OTP' : 'Enrol OTP';

    renderDevices();
    show($('user-body'));
  }

  function renderDevices() {
    const tbody = $('devices-table').tBodies[0];
    clear(tbody);
    for (const d of detail.devices) {
      tbody.append(
        el(
          'tr',
          { dataset: { id: d.id } },
          el('th', { scope: 'row', class: 'name', text: d.name }),
          el('td', { text: d.platform === 'ios' ? 'iOS' : d.platform === 'android' ? 'Android' : d.platform }),
          el('td', {}, d.stale ? badge('stale token', 'warn') : d.push ? badge('yes', 'ok') : badge('poll only', 'off')),
          el('td', { text: d.protected ? 'PIN / biometrics' : 'no' }),
          el('td', { text: fmtDateTime(d.createdAt) }),
          el('td', { text: fmtAgo(d.lastSeenAt) }),
          el(
            'td',
            { class: 'row-actions needs-admin' },
            el('button', { type: 'button', class: 'btn small', text: 'Rename', 'aria-label': `Rename ${d.name}`, on: { click: (e) => renameDevice(d, e.currentTarget) } }),
            el('button', { type: 'button', class: 'btn small danger-outline', text: 'Revoke', 'aria-label': `Revoke ${d.name}`, on: { click: (e) => revokeDevice(d, e.currentTarget) } }),
          ),
        ),
      );
    }
    show($('devices-table'), detail.devices.length > 0);
    show($('devices-empty'), detail.devices.length === 0);
  }

  async function renameDevice(d, button) {
    const name = await promptRename(d.name);
    if (!name || name === d.name) return;
    await act(button, async () => {
      await api('PATCH', `${userPath(detail.name)}/devices/${enc(d.id)}`, { name });
      toast(`Device renamed to “${name}”.`);
      await refreshUser();
    });
  }

  async function revokeDevice(d, button) {
    const ok = await confirmDialog({
      title: 'Revoke this device?',
      message: `“${d.name}” of ${detail.name} will no longer be able to approve logins. This cannot be undone; the user would have to enrol again.`,
      confirmLabel: 'Revoke device',
      danger: true,
    });
    if (!ok) return;
    await act(button, async () => {
      await api('DELETE', `${userPath(detail.name)}/devices/${enc(d.id)}`);
      toast(`Device “${d.name}” revoked.`);
      await refreshUser();
      $('devices-h').focus?.();
    });
  }

  async function setFactor(factor, enabled, button) {
    await act(button, async () => {
      const r = await api('POST', '/api/v1/users/factors', { users: [detail.name], factor, enabled });
      const one = r.results[0];
      if (!one || !one.ok) throw new Error(one?.error || 'the change failed');
      toast(`${factor === 'otp' ? 'OTP' : 'Push'} ${enabled ? 'enabled' : 'disabled'} for ${detail.name}.`);
      await refreshUser();
    });
  }

  $('u-otp-toggle').addEventListener('click', async (e) => {
    const on = detail.user.otp.enabled;
    if (on) {
      const ok = await confirmDialog({ title: 'Disable OTP?', message: `${detail.name} will no longer be able to use codes from an authenticator app. The seed is kept.`, confirmLabel: 'Disable OTP', danger: true });
      if (!ok) return;
    }
    setFactor('otp', !on, e.currentTarget);
  });
  $('u-push-toggle').addEventListener('click', async (e) => {
    const on = detail.user.push.enabled;
    if (on) {
      const ok = await confirmDialog({ title: 'Disable push?', message: `${detail.name} will no longer get push notifications for logins.`, confirmLabel: 'Disable push', danger: true });
      if (!ok) return;
    }
    setFactor('push', !on, e.currentTarget);
  });
  $('u-unlock').addEventListener('click', (e) =>
    act(e.currentTarget, async () => {
      await api('POST', `${userPath(detail.name)}/unlock`, {});
      toast(`${detail.name} is unlocked.`);
      await refreshUser();
    }),
  );

  $('u-enrol-otp').addEventListener('click', async (e) => {
    const btn = e.currentTarget;
    if (detail.user.otp.enrolled) {
      const ok = await confirmDialog({
        title: 'Replace the OTP seed?',
        message: `${detail.name} already has an authenticator app enrolled. A new seed makes the old app’s codes stop working.`,
        confirmLabel: 'Enrol a new seed',
        danger: true,
      });
      if (!ok) return;
    }
    await act(btn, async () => {
      const r = await api('POST', `${userPath(detail.name)}/otp`, {});
      showEnrolment({
        title: `OTP enrolment for ${detail.name}`,
        help: 'Scan this code with an authenticator app (any TOTP/HOTP app), or enter the secret by hand.',
        qr: r.qrPng,
        alt: `QR code of the OTP enrolment for ${detail.name}`,
        uri: r.uri,
        secret: r.secret,
      });
      refreshUser();
    });
  });

  $('u-enrol-push').addEventListener('click', (e) =>
    act(e.currentTarget, async () => {
      const r = await api('POST', `${userPath(detail.name)}/enrolments`);
      showEnrolment({
        title: `Push enrolment link for ${detail.name}`,
        help: 'Scan this code with the Countersign app on the phone, or open the link on it. It works once.',
        qr: r.qrPng,
        alt: `QR code of the push enrolment link for ${detail.name}`,
        uri: r.uri,
        expiresAt: r.expiresAt,
      });
      watchForNewDevice(detail.name, r.expiresAt);
    }),
  );

  /** While a push link is on screen, notices the phone that uses it. */
  let deviceWatch = 0;
  function watchForNewDevice(name, until) {
    clearTimeout(deviceWatch);
    const known = new Set(detail.devices.map((d) => d.id));
    const check = async () => {
      if (detail.name !== name || currentView !== 'user' || $('enrolment').hidden || Date.now() > until || !session.user) return;
      try {
        const r = await api('GET', `${userPath(name)}/devices`);
        const added = r.devices.find((d) => !known.has(d.id));
        if (added && detail.name === name) {
          hideEnrolment();
          toast(`“${added.name}” is enrolled for ${name}.`);
          await refreshUser();
          return;
        }
      } catch {
        // try again on the next round
      }
      deviceWatch = setTimeout(check, 2000);
    };
    deviceWatch = setTimeout(check, 2000);
  }

  let expiryTimer;
  function showEnrolment(o) {
    const box = $('enrolment');
    $('enrolment-h').textContent = o.title;
    $('enrolment-help').textContent = o.help;
    const img = $('enrolment-qr');
    if (typeof o.qr === 'string' && o.qr.startsWith('data:image/')) img.src = o.qr;
    else img.removeAttribute('src');
    img.alt = o.alt;
    $('enrolment-uri').value = o.uri;
    show($('enrolment-secret-wrap'), Boolean(o.secret));
    $('enrolment-secret').value = o.secret || '';
    clearInterval(expiryTimer);
    const exp = $('enrolment-expiry');
    if (o.expiresAt) {
      const tick = () => {
        const left = Math.round((o.expiresAt - Date.now()) / 1000);
        exp.textContent =
          left > 0
            ? `Expires at ${fmtTime(o.expiresAt)} (in ${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s).`
            : `Expired at ${fmtTime(o.expiresAt)}. Create a new link.`;
        if (left <= 0) clearInterval(expiryTimer);
      };
      tick();
      expiryTimer = setInterval(tick, 1000);
      show(exp);
    } else {
      show(exp, false);
    }
    show(box);
    box.focus();
  }

  function hideEnrolment() {
    clearInterval(expiryTimer);
    clearTimeout(deviceWatch);
    show($('enrolment'), false);
    $('enrolment-qr').removeAttribute('src');
    $('enrolment-uri').value = '';
    $('enrolment-secret').value = '';
  }

  $('enrolment-done').addEventListener('click', () => {
    hideEnrolment();
    $('u-enrol-otp').focus();
  });
  $('enrolment-copy').addEventListener('click', async () => {
    const v = $('enrolment-uri').value;
    try {
      await navigator.clipboard.writeText(v);
      toast('Link copied.');
    } catch {
      $('enrolment-uri').select();
      toast('Select the link and copy it with Ctrl+C.');
    }
  });

  // ───────────────────────── live logins ─────────────────────────

  let liveTimer = 0;
  let liveOn = false;
  let liveLastCount = -1;
  let liveFirst = true;
  const liveRows = new Map();

  function startLive() {
    liveOn = true;
    liveLastCount = -1;
    liveFirst = true;
    for (const row of liveRows.values()) row.tr.remove(); // what was pending when we left may be long gone
    liveRows.clear();
    clearTimeout(liveTimer);
    pollLive();
  }
  function stopLive() {
    liveOn = false;
    clearTimeout(liveTimer);
  }
  document.addEventListener('visibilitychange', () => {
    if (currentView !== 'live' || !session.user) return;
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

  // ───────────────────────── clients ─────────────────────────

  async function loadClients() {
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

  // ───────────────────────── audit ─────────────────────────

  let auditSeq = 0;

  function auditFilters() {
    const q = new URLSearchParams();
    const user = $('af-user').value.trim();
    const front = $('af-front').value.trim();
    const outcome = $('af-outcome').value;
    if (user) q.set('user', user);
    if (front) q.set('front', front);
    if (outcome) q.set('outcome', outcome);
    return q;
  }

  async function loadAudit() {
    const seq = ++auditSeq;
    const base = auditFilters();
    const tableQ = new URLSearchParams(base);
    tableQ.set('limit', '200');
    const hourAgo = Date.now() - 3_600_000;
    const chartQ = new URLSearchParams(base);
    chartQ.set('since', String(hourAgo));
    chartQ.set('limit', '1000');
    $('audit-table').setAttribute('aria-busy', 'true');
    try {
      const [t, c] = await Promise.all([api('GET', `/api/v1/audit?${tableQ}`), api('GET', `/api/v1/audit?${chartQ}`)]);
      if (seq !== auditSeq) return;
      renderAuditTable(t.events);
      const logins = c.events.filter((e) => e.type === 'login');
      drawRate(logins, hourAgo);
      drawOutcomes(logins);
      drawLatency(logins.filter((e) => e.outcome === 'approved' && typeof e.durationMs === 'number'));
      const note = $('chart-note');
      note.textContent = c.events.length >= 1000 ? 'The charts show the latest 1,000 events of the last hour only (the API returns at most 1,000 at a time).' : '';
      show(note, c.events.length >= 1000);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      showError(err);
    } finally {
      if (seq === auditSeq) $('audit-table').removeAttribute('aria-busy');
    }
  }

  $('audit-filters').addEventListener('submit', (e) => {
    e.preventDefault();
    loadAudit();
  });
  $('af-reset').addEventListener('click', () => {
    $('af-user').value = '';
    $('af-front').value = '';
    $('af-outcome').value = '';
    loadAudit();
  });

  const outcomeKind = (o) => ({ approved: 'ok', rejected: 'bad', expired: 'warn', cancelled: 'off' })[o] || 'off';

  function renderAuditTable(events) {
    const tbody = $('audit-table').tBodies[0];
    clear(tbody);
    for (const e of events) {
      const detailText = [
        ...(e.detail
          ? Object.entries(e.detail)
              .filter(([k]) => k !== 'actorRole')
              .map(([k, v]) => (k === 'action' ? String(v) : `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`))
          : []),
        e.actor ? `by ${e.actor}${e.detail && e.detail.actorRole ? ` (${e.detail.actorRole})` : ''}` : '',
      ]
        .filter(Boolean)
        .join(' · ');
      tbody.append(
        el(
          'tr',
          {},
          el('td', { class: 'nowrap', text: fmtTime(e.at), title: new Date(e.at).toISOString() }),
          el('td', { text: e.type }),
          el('td', { class: 'name' }, e.user ? el('a', { href: `#/users/${enc(e.user)}`, text: e.user }) : '—'),
          el('td', { text: e.front || '—' }),
          el('td', { class: 'nowrap', text: e.client || '—' }),
          el('td', { class: 'mono', text: e.ip || '—' }),
          el('td', { text: e.method || '—' }),
          el('td', {}, e.outcome ? badge(e.outcome, outcomeKind(e.outcome)) : '—'),
          el('td', { class: 'num', text: e.durationMs !== undefined ? fmtDuration(e.durationMs) : '—' }),
          el('td', { class: 'detail', text: detailText || '—' }),
        ),
      );
    }
    show($('audit-empty'), events.length === 0);
    $('audit-count').textContent = `${plural(events.length, 'event')}${events.length >= 200 ? ' (the latest 200)' : ''}`;
  }

  /** A chart's frame: an <svg role="img"> labelled by the card heading and a text summary. */
  function chartFrame(hostId, headingId, width, height, summary) {
    const host = $(hostId);
    clear(host);
    const descId = `${hostId}-desc`;
    const root = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-labelledby': headingId,
      'aria-describedby': descId,
      preserveAspectRatio: 'xMidYMid meet',
    });
    host.append(root, el('p', { id: descId, class: 'chart-summary', text: summary }));
    return root;
  }

  function niceMax(v) {
    if (v <= 4) return Math.max(1, v);
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawRate(logins, start) {
    const W = 360;
    const H = 170;
    const pad = { l: 30, r: 8, t: 10, b: 24 };
    const buckets = Array.from({ length: 60 }, () => ({ ok: 0, bad: 0 }));
    for (const e of logins) {
      const i = Math.floor((e.at - start) / 60_000);
      if (i < 0 || i > 59) continue;
      if (e.outcome === 'approved') buckets[i].ok++;
      else buckets[i].bad++;
    }
    const totals = buckets.map((b) => b.ok + b.bad);
    const sum = totals.reduce((a, b) => a + b, 0);
    const peak = Math.max(0, ...totals);
    const peakAt = totals.indexOf(peak);
    const summary = sum
      ? `${plural(sum, 'login')} in the last hour; at most ${num(peak)} in one minute (${fmtTime(start + peakAt * 60_000).slice(0, 5)}).`
      : 'No logins in the last hour.';
    const root = chartFrame('chart-rate', 'chart-rate-h', W, H, summary);
    const max = niceMax(peak);
    const iw = W - pad.l - pad.r;
    const ih = H - pad.t - pad.b;
    const y = (v) => pad.t + ih - (ih * v) / max;
    for (const v of [0, max / 2, max]) {
      root.append(svg('line', { class: 'grid-line', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
      root.append(svg('text', { class: 'axis', x: pad.l - 5, y: y(v) + 3.5, 'text-anchor': 'end', text: Number.isInteger(v) ? v : v.toFixed(1) }));
    }
    const bw = iw / 60;
    buckets.forEach((b, i) => {
      const x = pad.l + i * bw + 0.6;
      const w = Math.max(1, bw - 1.2);
      const t = b.ok + b.bad;
      if (!t) return;
      const label = `${fmtTime(start + i * 60_000).slice(0, 5)}: ${b.ok} approved, ${b.bad} not approved`;
      const g = svg('g', {}, svg('title', { text: label }));
      if (b.ok) g.append(svg('rect', { class: 'bar-ok', x, width: w, y: y(b.ok), height: y(0) - y(b.ok) }));
      if (b.bad) g.append(svg('rect', { class: 'bar-bad', x, width: w, y: y(t), height: y(b.ok) - y(t) }));
      root.append(g);
    });
    root.append(svg('line', { class: 'axis-line', x1: pad.l, x2: W - pad.r, y1: y(0), y2: y(0) }));
    for (const [i, label, anchor] of [[0, '−60 min', 'start'], [30, '−30 min', 'middle'], [60, 'now', 'end']]) {
      root.append(svg('text', { class: 'axis', x: pad.l + i * bw, y: H - 6, 'text-anchor': anchor, text: label }));
    }
    if (!sum) root.append(svg('text', { class: 'empty-text', x: pad.l + iw / 2, y: pad.t + ih / 2, 'text-anchor': 'middle', text: 'No logins in the last hour' }));
  }

  function drawOutcomes(logins) {
    const order = ['approved', 'rejected', 'expired', 'cancelled'];
    const counts = new Map(order.map((o) => [o, 0]));
    for (const e of logins) counts.set(e.outcome || 'unknown', (counts.get(e.outcome || 'unknown') || 0) + 1);
    const rows = [...counts].filter(([o, n]) => order.includes(o) || n > 0);
    const total = logins.length;
    const summary = total ? rows.map(([o, n]) => `${o} ${num(n)} (${Math.round((100 * n) / total)}%)`).join(', ') + '.' : 'No logins in the last hour.';
    const W = 360;
    const H = 170;
    const rowH = Math.min(38, (H - 16) / Math.max(1, rows.length));
    const root = chartFrame('chart-outcomes', 'chart-outcomes-h', W, H, summary);
    const lx = 78;
    const rw = W - lx - 86;
    const max = Math.max(1, ...rows.map(([, n]) => n));
    rows.forEach(([o, n], i) => {
      const mid = 8 + i * rowH + rowH / 2; // the row's vertical centre
      const bh = Math.min(20, rowH - 10);
      root.append(svg('text', { class: 'label', x: lx - 8, y: mid + 4, 'text-anchor': 'end', text: o }));
      root.append(svg('rect', { class: 'bar-track', x: lx, y: mid - bh / 2, width: rw, height: bh, rx: 3 }));
      if (n) {
        root.append(
          svg('rect', { class: `bar-${outcomeKind(o)}`, x: lx, y: mid - bh / 2, width: Math.max(2, (rw * n) / max), height: bh, rx: 3 }, svg('title', { text: `${o}: ${n}` })),
        );
      }
      root.append(svg('text', { class: 'value', x: lx + rw + 8, y: mid + 4, text: total ? `${num(n)} · ${Math.round((100 * n) / total)}%` : '0' }));
    });
  }

  function drawLatency(approved) {
    const edges = [0, 1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000, Infinity];
    const labels = ['<1s', '1–2s', '2–5s', '5–10s', '10–20s', '20–30s', '30–60s', '>60s'];
    const counts = labels.map(() => 0);
    for (const e of approved) {
      const i = edges.findIndex((edge, k) => e.durationMs >= edge && e.durationMs < edges[k + 1]);
      if (i >= 0) counts[i]++;
    }
    const sorted = approved.map((e) => e.durationMs).sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    const summary = sorted.length
      ? `${plural(sorted.length, 'approved login')}: median ${fmtDuration(q(0.5))}, 90th percentile ${fmtDuration(q(0.9))}.`
      : 'No approved logins in the last hour.';
    const W = 360;
    const H = 170;
    const pad = { l: 30, r: 8, t: 10, b: 24 };
    const root = chartFrame('chart-latency', 'chart-latency-h', W, H, summary);
    const max = niceMax(Math.max(0, ...counts));
    const iw = W - pad.l - pad.r;
    const ih = H - pad.t - pad.b;
    const y = (v) => pad.t + ih - (ih * v) / max;
    for (const v of [0, max / 2, max]) {
      root.append(svg('line', { class: 'grid-line', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
      root.append(svg('text', { class: 'axis', x: pad.l - 5, y: y(v) + 3.5, 'text-anchor': 'end', text: Number.isInteger(v) ? v : v.toFixed(1) }));
    }
    const bw = iw / labels.length;
    labels.forEach((label, i) => {
      const x = pad.l + i * bw;
      if (counts[i]) {
        root.append(svg('rect', { class: 'bar-accent', x: x + 4, width: bw - 8, y: y(counts[i]), height: y(0) - y(counts[i]), rx: 2 }, svg('title', { text: `${label}: ${counts[i]}` })));
      }
      root.append(svg('text', { class: 'axis', x: x + bw / 2, y: H - 6, 'text-anchor': 'middle', text: label }));
    });
    root.append(svg('line', { class: 'axis-line', x1: pad.l, x2: W - pad.r, y1: y(0), y2: y(0) }));
    if (!sorted.length) root.append(svg('text', { class: 'empty-text', x: pad.l + iw / 2, y: pad.t + ih / 2, 'text-anchor': 'middle', text: 'No approved logins' }));
  }

  // ───────────────────────── start ─────────────────────────

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
})();
