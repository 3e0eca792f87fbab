// One user: factors and lock state, enrolment (OTP QR code, push link), the
// phones enrolled for push and, for a directory's user, what the directory
// says of them.

import { $, badge, clear, confirmDialog, el, promptRename, show, toast } from './dom.js';
import { accountState, factorName, fmtAgo, fmtDateTime, fmtTime } from './format.js';
import { act, api, ApiError, enc, showError, userPath } from './api.js';
import { current, session } from './state.js';
import { loadPasskeys } from './passkeys.js';

const detail = { name: null, user: null, devices: [] };

export async function loadUser(name) {
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
    void loadPasskeys(name);
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

  renderDirectory();
  renderDevices();
  show($('user-body'));
}

/** What each account state means for the user, beside its badge. */
const STATE_HELP = {
  active: 'The directory lets this account sign in.',
  disabled: 'The account is disabled in the directory: it cannot sign in anywhere.',
  expired: 'The account has expired in the directory: it cannot sign in.',
  locked: 'The directory has locked the account (too many wrong passwords, or by an administrator there).',
  must_change_password: 'The user must set a new password in the directory before signing in.',
  removed: 'The directory no longer has this account: it cannot sign in anywhere. The record is kept for the audit.',
};

function renderDirectory() {
  const box = $('user-directory');
  const d = detail.user.directory;
  show(box, Boolean(d));
  const dl = $('user-dir-facts');
  clear(dl);
  if (!d) return;
  const row = (term, cls, ...value) => dl.append(el('div', { class: `fact ${cls}` }, el('dt', { text: term }), el('dd', {}, ...value)));
  const muted = (text) => el('span', { class: 'muted', text });
  row('Directory', 'dir-name', el('a', { href: '#/directories', text: d.name }));
  row('Login there', 'dir-login', d.login ? el('span', { class: 'mono', text: d.login }) : muted('—'));
  const state = d.state || 'active';
  const kind = state === 'active' ? 'ok' : state === 'removed' || state === 'disabled' ? 'bad' : 'warn';
  row('Account state', 'dir-state', badge(accountState(state), kind), STATE_HELP[state] ? el('span', { class: 'cell-sub', text: STATE_HELP[state] }) : null);
  const groups = [...(d.groups || [])].sort((a, b) => a.localeCompare(b));
  row(
    'Groups',
    'dir-groups',
    groups.length ? el('ul', { class: 'chips', 'aria-label': `Groups of ${detail.user.name}, nested included` }, groups.map((g) => el('li', { text: g }))) : muted('none'),
  );
  const attrs = Object.entries(d.attributes || {});
  row(
    'Attributes',
    'dir-attrs',
    attrs.length
      ? el(
          'table',
          { class: 'data compact attrs' },
          el('caption', { class: 'sr-only', text: 'Attributes the directory gave for this user' }),
          el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Attribute' }), el('th', { scope: 'col', text: 'Value' }))),
          el(
            'tbody',
            {},
            attrs.map(([k, v]) => el('tr', {}, el('th', { scope: 'row', class: 'mono', text: k }), el('td', { class: 'attr-value', text: Array.isArray(v) ? v.join('\n') : String(v) }))),
          ),
        )
      : muted('none'),
  );
  row(
    'Last seen',
    'dir-seen',
    d.seenAt ? el('time', { datetime: new Date(d.seenAt).toISOString(), title: fmtDateTime(d.seenAt), text: fmtAgo(d.seenAt) }) : muted('never'),
    el('span', { class: 'cell-sub', text: 'At the last sign-in or sync.' }),
  );
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
        el('td', { text: d.platform === 'ios' ? 'iOS' : d.platform === 'android' ? 'Android' : d.platform === 'webpush' ? 'Web app' : d.platform }),
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
      help: pushEnrolmentHelp(detail.name, r.appUrl),
      qr: r.qrPng,
      alt: `QR code of the push enrolment link for ${detail.name}`,
      uri: r.uri,
      expiresAt: r.expiresAt,
    });
    watchForNewDevice(detail.name, r.expiresAt);
  }),
);

/**
 * What the person enrolling does today: open the web app link (appUrl, the Countersign web app
 * at /app/) on their phone. It is shown as text with a copy button, not as a link: opening it
 * here would enrol this browser. The QR code carries the same link, for the phone's camera; the
 * countersign:// link is for native apps and the reference authenticator.
 */
function pushEnrolmentHelp(name, appUrl) {
  if (!appUrl) return 'Open this link with an authenticator app that speaks Countersign’s device API. It works once.';
  const url = el('code', { class: 'mono', text: appUrl });
  url.style.wordBreak = 'break-all';
  url.style.display = 'block';
  url.style.margin = '0.5rem 0';
  const copy = el('button', {
    type: 'button',
    class: 'btn small',
    text: 'Copy web app link',
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(appUrl);
          toast('Web app link copied.');
        } catch {
          toast('Copying is not allowed here: select the link and copy it.');
        }
      },
    },
  });
  return [
    `Send ${name} this link to open on their phone or computer. It sets up the Countersign web app there, and works once.`,
    url,
    copy,
    el('br'),
    el('br'),
    'Or scan the QR code with the phone’s camera: it opens the same link. Android: Chrome. iPhone and iPad (iOS 16.4 or later): Safari, then Add to Home Screen, which notifications need. Computers: Chrome, Edge or Firefox. The countersign:// link is for native authenticator apps.',
  ];
}

/** While a push link is on screen, notices the phone that uses it. */
let deviceWatch = 0;
function watchForNewDevice(name, until) {
  clearTimeout(deviceWatch);
  const known = new Set(detail.devices.map((d) => d.id));
  const check = async () => {
    if (detail.name !== name || current.view !== 'user' || $('enrolment').hidden || Date.now() > until || !session.user) return;
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
  $('enrolment-help').replaceChildren(...[o.help].flat()); // text, or text and nodes built with el()
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
