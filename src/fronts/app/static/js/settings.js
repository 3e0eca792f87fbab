// Settings: whether notifications reach this device (and how to turn them
// on), the app lock, and the enrolments on this browser (rename, remove).

import { $, el, show, when, hostOf, confirmDialog, toast } from './dom.js';
import { C, state, reload, changed } from './state.js';
import { pushAdvice, refreshPush } from './push.js';
import { renderLock } from './lock.js';

export function renderSettings() {
  const advice = pushAdvice();
  $('set-push-text').textContent = advice.text;
  const action = $('set-push-action');
  action.textContent = advice.action === 'ask' ? 'Turn on notifications' : 'Check again';
  show(action, Boolean(advice.action));
  renderLock();
  renderAccounts();
}

function renderAccounts() {
  const ul = $('accounts');
  ul.replaceChildren(
    ...state.enrolments.map((e) => {
      const id = e.deviceId.replace(/[^A-Za-z0-9_-]/g, '');
      const name = el('input', { id: `name-${id}`, value: e.name || '', maxlength: 100, autocomplete: 'off', required: true });
      const status = el('p', { class: 'status small', role: 'status' });
      const facts = [
        `Enrolled ${when(e.createdAt)}`,
        e.pushEndpoint ? 'gets notifications' : 'no notifications (checks while open)',
        e.protected ? 'approvals need the app lock' : null,
      ].filter(Boolean);
      const rename = el(
        'form',
        { class: 'rename', novalidate: true, on: { submit: (ev) => saveName(ev, e, name, status) } },
        el('label', { for: `name-${id}`, text: 'Name of this device' }),
        el('div', { class: 'inline' }, name, el('button', { type: 'submit', class: 'btn small', text: 'Save' })),
      );
      return el(
        'li',
        { class: `account${e.revoked ? ' revoked' : ''}` },
        el('p', { class: 'acct' }, el('strong', { text: e.user }), ` on ${hostOf(e.server)}`),
        e.revoked
          ? el('p', { class: 'error', text: 'Removed on the server: this device no longer answers for this account. Remove it here, and ask for a new enrolment link to use it again.' })
          : el('p', { class: 'muted small', text: facts.join(' · ') }),
        e.revoked ? null : rename,
        status,
        el('button', { type: 'button', class: 'btn danger', text: 'Remove this device', on: { click: () => remove(e, status) } }),
      );
    }),
  );
}

async function saveName(ev, e, input, status) {
  ev.preventDefault();
  const name = input.value.trim();
  if (!name) {
    status.textContent = 'Give the device a name.';
    input.focus();
    return;
  }
  status.textContent = 'Saving…';
  try {
    await C.api.update(e, { name });
    await C.db.put('enrolments', { ...e, name });
    await reload();
    status.textContent = 'Saved.';
  } catch (err) {
    status.textContent = C.explain(err);
  }
}

async function remove(e, status) {
  const ok = await confirmDialog({
    title: 'Remove this device?',
    message: `It will no longer get or answer sign-in requests for ${e.user}, and its key is deleted. To use it again you need a new enrolment link.`,
    confirmLabel: 'Remove',
  });
  if (!ok) return;
  status.textContent = 'Removing…';
  if (!e.revoked) {
    try {
      await C.api.update(e, { forget: true });
    } catch (err) {
      // Already gone on the server (revoked, or removed from another place): fine.
      const gone = err.code === 'device_unauthorized' && /not enrolled|revoked/i.test(err.message);
      if (!gone) {
        const anyway = await confirmDialog({
          title: 'The server did not confirm',
          message: `${C.explain(err)} Remove it from this browser anyway? The server keeps listing the device until your administrator removes it.`,
          confirmLabel: 'Remove here anyway',
        });
        if (!anyway) {
          status.textContent = '';
          return;
        }
      }
    }
  }
  await C.db.delete('enrolments', e.deviceId);
  await reload();
  if (!state.enrolments.length) {
    // Nothing left to notify: drop the subscription too.
    try {
      const sub = await state.registration?.pushManager.getSubscription();
      await sub?.unsubscribe();
    } catch {
      // nothing to drop
    }
  }
  toast(`This device no longer answers for ${e.user}.`);
  changed();
  if (!state.enrolments.length) location.hash = '#welcome';
}

export function wireSettings() {
  $('set-push-action').addEventListener('click', async (ev) => {
    const btn = ev.currentTarget;
    btn.disabled = true;
    try {
      await refreshPush({ ask: true });
    } finally {
      btn.disabled = false;
    }
  });
}
