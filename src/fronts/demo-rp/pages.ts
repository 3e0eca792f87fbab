/**
 * The demo relying party's pages: server-rendered, no scripts, no external
 * resources, every value escaped, one column that reads on a phone.
 */

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const STYLE = `
:root{color-scheme:light dark;--fg:#1d2327;--bg:#eef3f1;--card:#fff;--accent:#0f766e;--err:#b3261e;--muted:#58656b;--line:#d6dfdc;--code:#f3f6f5}
@media (prefers-color-scheme:dark){:root{--fg:#e4ebe9;--bg:#0f1514;--card:#18201f;--accent:#5eead4;--err:#ff8a80;--muted:#9fb0ad;--line:#2c3836;--code:#111918}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{background:var(--accent);color:#fff;padding:.75rem 1rem}@media (prefers-color-scheme:dark){header{color:#0f1514}}
header strong{font-size:1.1rem}header span{display:block;font-size:.85rem;opacity:.9}
main{max-width:40rem;margin:1rem auto;padding:1.25rem;background:var(--card);border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
@media (max-width:40rem){main{margin:0;border-radius:0;box-shadow:none}}
h1{font-size:1.35rem;margin:0 0 .75rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}p{margin:.5rem 0}
dl{margin:.75rem 0;display:grid;grid-template-columns:minmax(6rem,max-content) 1fr;gap:.4rem 1rem}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
@media (max-width:26rem){dl{grid-template-columns:1fr;gap:0}dd{margin-bottom:.6rem}}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9rem}
pre{background:var(--code);border:1px solid var(--line);border-radius:8px;padding:.75rem;white-space:pre-wrap;overflow-wrap:anywhere;margin:.5rem 0}
.note{color:var(--muted);font-size:.9rem}.err{color:var(--err);font-weight:600}.ok{border-left:4px solid var(--accent);padding-left:.75rem}
form{margin:0}.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.25rem}.actions form{flex:1 1 14rem}
button{width:100%;padding:.75rem 1rem;font-size:1rem;font-weight:600;border:2px solid var(--accent);border-radius:8px;background:var(--accent);color:#fff;cursor:pointer}
@media (prefers-color-scheme:dark){button{color:#0f1514}}
button.secondary{background:transparent;color:var(--accent)}
button:focus,a:focus{outline:3px solid var(--accent);outline-offset:2px}a{color:var(--accent)}`;

function layout(title: string, body: string, nonce: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)} · Demo app</title><style nonce="${esc(nonce)}">${STYLE}</style></head>
<body><header><strong>Demo app</strong><span>a relying party of Countersign, served in development mode only</span></header><main>${body}</main></body></html>`;
}

const signInButtons = (path: string, label = 'Sign in with Countersign') => `<div class="actions">
<form method="post" action="${esc(path)}/login"><button type="submit">${esc(label)}</button></form>
<form method="post" action="${esc(path)}/login"><input type="hidden" name="mfa" value="1"><button type="submit" class="secondary">Sign in, MFA required</button></form>
</div>`;

export function welcomePage(o: { path: string; nonce: string; signedOut?: boolean }): string {
  return layout(
    'Welcome',
    `${o.signedOut ? '<p class="ok" role="status">You are signed out of the demo app and of Countersign.</p>' : ''}
<h1>Sign in to the demo app</h1>
<p>This page is a small web application that signs its users in through Countersign's OpenID provider
(authorization code with PKCE, state and nonce), the way your own applications will.</p>
<p>Sign in as <code>demo</code> / <code>demo-password</code>, then type the code from the authenticator app
you added the demo user to (its QR code is in the server's startup banner). The demo app then shows what it
learned: the ID token's claims and the userinfo.</p>
<p class="note">“MFA required” sends <code>acr_values=urn:countersign:mfa</code>: only the user's own second factor
(a one-time code or a push) is accepted.</p>
${signInButtons(o.path)}`,
    o.nonce,
  );
}

/** What amr values mean (RFC 8176), for the reader. */
const AMR: Record<string, string> = { pwd: 'password', otp: 'one-time code', swk: 'push approved on an enrolled phone', mfa: 'more than one factor' };
const ACR: Record<string, string> = {
  'urn:countersign:mfa': "the user's own second factor",
  'urn:countersign:approved': 'password, then approved by an administrator',
  'urn:countersign:pwd': 'password alone',
};

export interface ClaimsView {
  path: string;
  nonce: string;
  claims: Record<string, unknown>;
  userinfo: Record<string, unknown> | null;
  userinfoError?: string;
  mfaAsked: boolean;
  now: number;
}

export function claimsPage(v: ClaimsView): string {
  const c = v.claims;
  const amr = Array.isArray(c.amr) ? c.amr.map(String) : [];
  const acr = typeof c.acr === 'string' ? c.acr : '';
  const name = c.name ?? v.userinfo?.name;
  const authTime = typeof c.auth_time === 'number' ? c.auth_time : undefined;
  const ago = authTime === undefined ? '' : Math.max(0, Math.round(v.now / 1000 - authTime));
  const json = (o: unknown) => esc(JSON.stringify(o, null, 2));
  return layout(
    'Signed in',
    `<h1>Signed in as ${esc(name ?? c.sub)}</h1>
<p class="note">${v.mfaAsked ? 'This sign-in asked for MFA (<code>acr_values=urn:countersign:mfa</code>).' : 'This sign-in asked for no particular strength.'}
The ID token's signature, issuer, audience, nonce and the PKCE verifier were checked by openid-client.</p>
<dl>
<dt>sub</dt><dd><code id="sub">${esc(c.sub)}</code></dd>
<dt>name</dt><dd id="name">${name === undefined ? '<span class="note">not given</span>' : esc(name)}${c.name === undefined && name !== undefined ? ' <span class="note">(from userinfo)</span>' : ''}</dd>
<dt>amr</dt><dd><code id="amr">${esc(amr.join(' '))}</code><br><span class="note">${esc(amr.map((m) => AMR[m] ?? m).join(', '))}</span></dd>
<dt>acr</dt><dd><code id="acr">${esc(acr)}</code><br><span class="note">${esc(ACR[acr] ?? '')}</span></dd>
<dt>auth_time</dt><dd><code id="auth-time">${esc(authTime)}</code>${authTime === undefined ? '' : `<br><span class="note">${esc(new Date(authTime * 1000).toISOString().replace('.000Z', 'Z'))}, ${esc(ago)} s ago</span>`}</dd>
</dl>
<h2>All ID token claims</h2>
<pre id="claims">${json(c)}</pre>
<h2>Userinfo</h2>
${v.userinfo ? `<pre id="userinfo">${json(v.userinfo)}</pre>` : `<p class="err">${esc(v.userinfoError ?? 'not fetched')}</p>`}
${signInButtons(v.path, 'Sign in again')}
<div class="actions"><form method="post" action="${esc(v.path)}/logout"><button type="submit" class="secondary">Sign out</button></form></div>
<p class="note">Signing out ends this app's session and then Countersign's (RP-initiated logout), which asks you to confirm.</p>`,
    v.nonce,
  );
}

export function problemPage(o: { path: string; nonce: string; title: string; message: string; detail?: string }): string {
  return layout(
    o.title,
    `<h1>${esc(o.title)}</h1><p class="err" role="alert">${esc(o.message)}</p>
${o.detail ? `<p class="note">${esc(o.detail)}</p>` : ''}
<p><a href="${esc(o.path)}/">Back to the demo app</a></p>`,
    o.nonce,
  );
}
