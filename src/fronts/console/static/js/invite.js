// Invitations by e-mail (POST /api/v1/invitations): for the selected users, in batches so a
// long list shows progress, or for a directory group's members; one result line per user.

import { $, clear, el, show } from './dom.js';
import { num, plural } from './format.js';
import { api, ApiError, showError } from './api.js';
import { selectedUsers } from './users.js';

const BATCH = 20;
let running = false;

async function invite(batches, who) {
  if (running) return;
  running = true;
  const progress = $('bulk-progress');
  const bar = $('bulk-progress-bar');
  const result = $('bulk-result');
  show(result, false);
  bar.removeAttribute('value');
  $('bulk-progress-text').textContent = `Sending invitations to ${who}…`;
  show(progress);
  const results = [];
  let error = null;
  try {
    for (let i = 0; i < batches.length; i++) {
      if (batches.length > 1) {
        bar.max = batches.length;
        bar.value = i;
        $('bulk-progress-text').textContent = `Sending invitations to ${who}… (${num(results.length)} done)`;
      }
      results.push(...(await api('POST', '/api/v1/invitations', batches[i])).results);
    }
  } catch (err) {
    error = err;
  } finally {
    running = false;
    show(progress, false);
  }
  if (error && !results.length) {
    if (!(error instanceof ApiError && error.status === 401)) showError(error);
    return;
  }
  const sent = results.filter((r) => r.ok).length;
  clear(result);
  result.className = `panel result-panel ${sent < results.length || error ? 'partial' : 'success'}`;
  result.append(
    el('div', { class: 'result-head' }, el('h2', { text: `Invitations sent to ${plural(sent, 'user')}` }), el('button', { type: 'button', class: 'btn link small', text: 'Dismiss', on: { click: () => show(result, false) } })),
    el('p', { class: 'summary', text: `${num(sent)} sent, ${num(results.length - sent)} failed.${error ? ` The run stopped early: ${error.message}` : ''}` }),
    el('ul', { class: 'result-lines' }, ...results.map((r) => el('li', { class: r.ok ? 'ok' : 'bad', text: `${r.name}: ${r.ok ? `sent to ${r.email}` : r.error}` }))),
  );
  show(result);
  result.focus();
}

$('invite-selected').addEventListener('click', () => {
  const names = selectedUsers();
  if (!names.length) return showError(new Error('Select the users to invite first.'));
  const batches = [];
  for (let i = 0; i < names.length; i += BATCH) batches.push({ users: names.slice(i, i + BATCH) });
  void invite(batches, plural(names.length, 'user'));
});

$('invite-group').addEventListener('click', () => {
  const group = window.prompt('Invite the members of which directory group?')?.trim();
  if (!group) return;
  void invite([{ group }], `the members of “${group}”`);
});
