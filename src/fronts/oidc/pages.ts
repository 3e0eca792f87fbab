/**
 * The sign-in pages: small, server-rendered, no external resources, usable
 * with a keyboard and a screen reader. The only script is the live wait for
 * the push answer, allowed by a per-response CSP nonce.
 */

import { PASSKEY_STYLE, passkeySection, type PasskeyButton } from './passkey-pages.js';

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#f6f7f9;--card:#fff;--accent:#1f5fbf;--err:#b3261e;--muted:#5b6472}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--bg:#111418;--card:#1b1f24;--accent:#7fb0ff;--err:#ff8a80;--muted:#a2aab5}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:26rem;margin:8vh auto;padding:2rem;background:var(--card);border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:0 0 1rem}p{margin:.5rem 0}label{display:block;margin:1rem 0 .25rem;font-weight:600}
input{width:100%;padding:.7rem;font-size:1rem;border:1px solid var(--muted);border-radius:8px;background:transparent;color:inherit}
input:focus,button:focus,a:focus{outline:3px solid var(--accent);outline-offset:2px}
button{margin-top:1.25rem;width:100%;padding:.75rem;font-size:1rem;font-weight:600;border:0;border-radius:8px;background:var(--accent);color:#fff;cursor:pointer}
.code{font:700 2.4rem/1 ui-monospace,monospace;letter-spacing:.2em;text-align:center;margin:1rem 0}
.err{color:var(--err);font-weight:600}.note{border-left:4px solid var(--accent);padding:.25rem 0 .25rem .75rem}.muted{color:var(--muted);font-size:.9rem}.or{text-align:center;color:var(--muted);margin:1.5rem 0 0}.qr{text-align:center}h1.sub{font-size:1.1rem}
a{color:var(--accent)}`;

export function layout(title: string, body: string, nonce: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)} · Countersign</title><style nonce="${nonce}">${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

export function loginPage(o: { action: string; csrf: string; client: string; error?: string; user?: string; nonce: string; passkey?: PasskeyButton }): string {
  const page = layout(
    'Sign in',
    `<h1>Sign in</h1><p class="muted">to ${esc(o.client)}</p>
${o.error ? `<p class="err" role="alert">${esc(o.error)}</p>` : ''}
<form method="post" action="${esc(o.action)}">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<label for="user">User name</label><input id="user" name="user" autocomplete="username" required maxlength="128" value="${esc(o.user)}" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">Continue</button></form>${o.passkey ? `<p class="or">or</p>${passkeySection(o.passkey)}` : ''}`,
    o.nonce,
  );
  return o.passkey ? page.replace('</style>', `${PASSKEY_STYLE}</style>`) : page;
}

export interface FactorView {
  base: string;
  csrf: string;
  nonce: string;
  displayCode: string;
  number?: string;
  push: boolean;
  otp: boolean;
  secondsLeft: number;
  /** Why the user's push was not sent (rate limit, lock, no phone); shown instead of silence. */
  noPush?: string;
  error?: string;
  /** The user has a passkey: "Use a passkey" beside push and code. */
  passkey?: PasskeyButton;
  /** The user has recovery codes left: a link to use one (recovery.ts). */
  recovery?: boolean;
}

/** The second step: the push, with the same ID the phone shows, and/or a code field. */
export function factorPage(v: FactorView): string {
  const push = v.push
    ? `<section aria-labelledby="push-h"><h1 id="push-h">Approve on your phone</h1>
<p>We sent a sign-in request to your phone. Check that it shows this ID:</p>
<p class="code" id="display-code" aria-label="ID ${esc(v.displayCode.split('').join(' '))}">${esc(v.displayCode)}</p>
${v.number ? `<p>Then type this number on your phone: <strong class="code" id="match-number">${esc(v.number)}</strong></p>` : ''}
<p id="status" role="status" aria-live="polite">Waiting for your answer… (<span id="left">${v.secondsLeft}</span> s left)</p></section>`
    : '';
  const noPush = !v.push && v.noPush ? `<p class="note" id="no-push" role="status">${esc(v.noPush)}</p>` : '';
  const otp = v.otp
    ? `<section aria-labelledby="otp-h">${v.push ? '<p class="or">or</p>' : ''}<h1 id="otp-h"${v.push ? ' class="sub"' : ''}>Enter your one-time code</h1>
${v.error ? `<p class="err" role="alert">${esc(v.error)}</p>` : ''}
<form method="post" action="${esc(v.base)}/otp" id="otp-form"><input type="hidden" name="csrf" value="${esc(v.csrf)}">
<label for="code">Code from your authenticator app</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6,8}" maxlength="8" required${v.push ? '' : ' autofocus'}>
<button type="submit">Verify</button></form></section>`
    : v.error
      ? `<p class="err" role="alert">${esc(v.error)}</p>`
      : '';
  const script = v.push
    ? `<form id="finish" method="post" action="${esc(v.base)}/finish"><input type="hidden" name="csrf" value="${esc(v.csrf)}"><noscript><button type="submit">I have approved — continue</button></noscript></form>
<script nonce="${v.nonce}">
(function(){var s=document.getElementById('status'),l=document.getElementById('left'),f=document.getElementById('finish'),n=${v.secondsLeft};
var t=setInterval(function(){if(n>0){n--;l.textContent=n}},1000);
var es=new EventSource(${JSON.stringify(`${v.base}/events`)});
es.addEventListener('outcome',function(e){var d=JSON.parse(e.data);es.close();clearInterval(t);
if(d.state==='approved'){s.textContent='Approved. Signing you in…'}
else if(d.state==='rejected'){s.innerHTML='<span class="err">The sign-in was rejected on your phone.</span>'}
else if(d.state==='expired'){s.innerHTML='<span class="err">No answer in time: the sign-in was denied.</span>'}
else{s.innerHTML='<span class="err">This sign-in was cancelled.</span>'}
setTimeout(function(){f.submit()},d.state==='approved'?0:2500)});
es.onerror=function(){s.textContent='Connection lost; reload the page to keep waiting.'};
var o=document.querySelector('form[action$="/otp"]');if(o){o.addEventListener('submit',function(){es.close();clearInterval(t)})}})();
</script>`
    : '';
  const passkey = v.passkey ? `${v.push || v.otp ? '<p class="or">or</p>' : ''}${passkeySection(v.passkey)}` : '';
  const page = layout('Confirm sign-in', `${push}${noPush}${otp}${passkey}${script}${v.recovery ? `<p class="muted"><a href="${esc(v.base)}/recovery">Lost your phone? Use a recovery code</a></p>` : ''}<p class="muted"><a href="${esc(v.base)}/abort">Cancel this sign-in</a></p>`, v.nonce);
  return v.passkey ? page.replace('</style>', `${PASSKEY_STYLE}</style>`) : page;
}

export function errorPage(title: string, message: string, nonce: string): string {
  return layout(title, `<h1>${esc(title)}</h1><p role="alert">${esc(message)}</p>`, nonce);
}

/** oidc-provider's end-session confirmation, in our look (its own page loads a web font from a CDN). */
export function logoutPage(o: { form: string; client?: string; nonce: string }): string {
  return layout(
    'Sign out',
    `<h1>Sign out</h1><p>Sign out of Countersign${o.client ? ` and ${esc(o.client)}` : ''} on this device?</p>
${o.form}<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Sign out</button>
<button type="submit" form="op.logoutForm" class="secondary">Stay signed in</button>`,
    o.nonce,
  ).replace('</style>', 'button.secondary{background:transparent;color:var(--accent);border:1px solid var(--accent)}</style>');
}

export function loggedOutPage(nonce: string): string {
  return layout('Signed out', '<h1>Signed out</h1><p>You are signed out. You can close this window.</p>', nonce);
}
