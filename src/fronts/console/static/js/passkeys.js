// Passkeys in the console: signing in with a passkey (alone, or as the second step after
// the password), a user's passkeys on their page (an administrator may remove them), and
// the signed-in user adding their own. The ceremonies run in /webauthn.js (same origin).

import { authenticate, problem, register, supported } from '/webauthn.js';
import { $, badge, clear, confirmDialog, el, show, toast } from './dom.js';
import { fmtAgo, fmtDateTime } from './format.js';
import { act, api, ApiError, enc, showError, userPath } from './api.js';
import { isAdmin, session } from './state.js';

// ── sign-in ──

/**
 * Wires the sign-in buttons. `signedIn(session)` enters the console after a passkey alone;
 * `approved()` finishes a password sign-in whose second step the passkey answered.
 */
export function initPasskeySignin({ signedIn, approved, message }) {
  const alone = $('si-passkey');
  const factor = $('si-passkey-factor');
  show($('si-passkey-wrap'), supported());

  alone.addEventListener('click', async () => {
    alone.disabled = true;
    message('');
    try {
      const { options, ticket } = await api('POST', '/console/api/login/passkey/options', {});
      const response = await authenticate(options);
      signedIn(await api('POST', '/console/api/login/passkey', { ticket, response }));
    } catch (err) {
      message(err instanceof ApiError ? err.message : problem(err));
    } finally {
      alone.disabled = false;
    }
  });

  factor.addEventListener('click', async () => {
    factor.disabled = true;
    message('');
    try {
      const { options, ticket } = await api('POST', '/console/api/login/passkey/factor-options', {});
      const response = await authenticate(options);
      const r = await api('POST', '/console/api/login/passkey/factor', { ticket, response });
      if (r.state === 'approved') approved();
    } catch (err) {
      message(err instanceof ApiError ? err.message : problem(err));
    } finally {
      factor.disabled = false;
    }
  });
}

/** The second step offers a passkey (the administrator has one, and this browser can use it). */
export function offerPasskeyFactor(on) {
  show($('si-passkey-factor'), Boolean(on && supported()));
}

// ── a user's passkeys ──

let shown = null;

export async function loadPasskeys(name) {
  shown = name;
  const own = name === session.user;
  show($('passkey-add-wrap'), own && supported());
  try {
    const r = await api('GET', `${userPath(name)}/passkeys`);
    if (shown === name) renderPasskeys(name, r.passkeys, own);
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 401 || err.status === 404))) showError(err);
  }
}

function renderPasskeys(name, passkeys, own) {
  const tbody = $('passkeys-table').tBodies[0];
  clear(tbody);
  for (const p of passkeys) {
    tbody.append(
      el(
        'tr',
        { dataset: { id: p.id } },
        el('th', { scope: 'row', class: 'name', text: p.name }),
        el('td', {}, p.deviceType === 'multiDevice' ? badge('synced', 'ok') : badge('this device only', 'off')),
        el('td', { text: fmtDateTime(p.createdAt) }),
        el('td', { text: fmtAgo(p.lastUsedAt) }),
        el(
          'td',
          { class: own ? 'row-actions' : 'row-actions needs-admin' },
          own || isAdmin()
            ? el('button', { type: 'button', class: 'btn small danger-outline', text: 'Remove', 'aria-label': `Remove passkey ${p.name}`, on: { click: (e) => removePasskey(name, p, own, e.currentTarget) } })
            : null,
        ),
      ),
    );
  }
  show($('passkeys-table'), passkeys.length > 0);
  show($('passkeys-empty'), passkeys.length === 0);
}

async function removePasskey(name, p, own, button) {
  const ok = await confirmDialog({
    title: 'Remove this passkey?',
    message: `“${p.name}” will no longer sign ${own ? 'you' : name} in anywhere. The authenticator may still list it; it will not work here.`,
    confirmLabel: 'Remove passkey',
    danger: true,
  });
  if (!ok) return;
  await act(button, async () => {
    // Your own through the console API (the help desk may manage their own); anyone's through the admin API.
    await api('DELETE', own ? `/console/api/passkeys/${enc(p.id)}` : `${userPath(name)}/passkeys/${enc(p.id)}`);
    toast(`Passkey “${p.name}” removed.`);
    await loadPasskeys(name);
    $('passkeys-h').focus?.();
  });
}

$('passkey-add-wrap').addEventListener('submit', (e) => {
  e.preventDefault();
  $('passkey-add').click();
});

$('passkey-add').addEventListener('click', async (e) => {
  const input = $('passkey-name');
  const label = input.value.trim();
  if (!label) {
    showError(new Error('Give the passkey a name, such as the device it is on'));
    input.focus();
    return;
  }
  await act(e.currentTarget, async () => {
    const options = await api('POST', '/console/api/passkeys/options', {});
    let response;
    try {
      response = await register(options);
    } catch (err) {
      throw new Error(problem(err));
    }
    const p = await api('POST', '/console/api/passkeys', { name: label, response });
    input.value = '';
    toast(`Passkey “${p.name}” added: you can sign in with it.`);
    await loadPasskeys(session.user);
  });
});
