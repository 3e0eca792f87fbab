/**
 * The passkey parts of the sign-in pages: a button that asks the server for options, runs
 * the ceremony with /webauthn.js and posts the answer as an ordinary form, so the result
 * (a redirect back to the application, or the page again with an error) is what any form
 * post gives. The inline module carries the page's CSP nonce; /webauthn.js is imported
 * same-origin and inherits it.
 */

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export interface PasskeyButton {
  /** POST (csrf): answers { options, ticket } as JSON. */
  optionsAction: string;
  /** POST (csrf, ticket, response): the answer, as a form. */
  action: string;
  csrf: string;
  nonce: string;
  label: string;
  /** Shown above the button. */
  heading?: string;
}

export const PASSKEY_STYLE = 'button.secondary{background:transparent;color:var(--accent);border:1px solid var(--accent)}.small-h{font-size:1.1rem}';

export function passkeySection(b: PasskeyButton): string {
  return `<section aria-labelledby="passkey-h" id="passkey">${b.heading ? `<h1 id="passkey-h" class="small-h">${esc(b.heading)}</h1>` : `<h2 id="passkey-h" hidden>${esc(b.label)}</h2>`}
<form method="post" action="${esc(b.action)}" id="passkey-form"><input type="hidden" name="csrf" value="${esc(b.csrf)}"><input type="hidden" name="ticket" value=""><input type="hidden" name="response" value="">
<button type="button" id="passkey-button" class="secondary">${esc(b.label)}</button></form>
<p id="passkey-status" role="status" aria-live="polite"></p></section>
<script type="module" nonce="${esc(b.nonce)}">
import { authenticate, problem, supported } from '/webauthn.js';
const form = document.getElementById('passkey-form'), button = document.getElementById('passkey-button'), status = document.getElementById('passkey-status');
if (!supported()) { button.disabled = true; status.textContent = 'This browser cannot use passkeys.'; }
button.addEventListener('click', async () => {
  button.disabled = true; status.textContent = 'Waiting for your passkey…';
  try {
    const res = await fetch(${JSON.stringify(b.optionsAction)}, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: form.csrf.value }), credentials: 'same-origin' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || 'Passkeys are not available for this sign-in.');
    const answer = await authenticate(body.options);
    form.ticket.value = body.ticket; form.response.value = JSON.stringify(answer);
    status.textContent = 'Checking…'; form.submit();
  } catch (err) { status.innerHTML = ''; const e = document.createElement('span'); e.className = 'err'; e.textContent = problem(err); status.append(e); button.disabled = false; }
});
</script>`;
}
