// The self-service portal: plain DOM on /account/api. The invitation token comes in the URL
// fragment (#invite=…), so it reaches neither the server's log nor a Referer.
const $ = (id) => document.getElementById(id);
let csrf = '';
let passkeyModule = null;

async function call(method, path, body) {
  const res = await fetch(`api${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(csrf ? { 'x-csrf-token': csrf } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    // Adding a way in needs a recent sign-in with your factor; a first-enrolment sign-in ends
    // once the factor is set up (or once one exists): both go back to the sign-in form.
    if (['sign_in_again', 'factor_exists', 'session_expired'].includes(data.error) && csrf) signedOut(data.message);
    throw Object.assign(new Error(data.message ?? `request failed (${res.status})`), { status: res.status, code: data.error });
  }
  if (data.signedOut) setTimeout(() => signedOut('Your second factor is set up. Sign in again with it to manage your account.'), 0);
  return data;
}

/** Back to the sign-in form, saying why (the session ended, or a change needs a fresh sign-in). */
function signedOut(message) {
  csrf = '';
  clearInterval(devicePoll);
  $('who').hidden = true;
  show('signin');
  flash(message);
}

const flash = (msg) => {
  $('flash').textContent = msg ?? '';
  $('flash').hidden = !msg;
};
const show = (id) => {
  for (const s of ['signin', 'second', 'portal']) $(s).hidden = s !== id;
};
const when = (ms) => (ms ? new Date(ms).toLocaleString() : '—');
const li = (text, ...extra) => {
  const el = document.createElement('li');
  el.textContent = text;
  el.append(...extra);
  return el;
};
const removeButton = (label, onClick) => {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'danger';
  b.textContent = 'Remove';
  b.setAttribute('aria-label', `Remove ${label}`);
  b.addEventListener('click', onClick);
  return b;
};

function invite() {
  const m = /(?:^#|&)invite=([A-Za-z0-9_-]{16,128})/.exec(location.hash);
  return m ? m[1] : undefined;
}

async function loadWebAuthn() {
  passkeyModule ??= await import('/webauthn.js').catch(() => null);
  return passkeyModule;
}

// ---- signing in ----
$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  flash();
  try {
    const r = await call('POST', '/login', { user: $('user').value.trim(), password: $('password').value, invite: invite() });
    $('password').value = '';
    if (r.signedIn) {
      history.replaceState(null, '', location.pathname); // the invitation is spent
      csrf = r.csrf;
      return portal();
    }
    secondStep(r);
  } catch (err) {
    flash(err.message);
  }
});

let waiting = false;
function secondStep(r) {
  show('second');
  const push = r.factors.includes('push');
  $('second-push').hidden = !push;
  $('display-code').textContent = r.displayCode;
  $('match').hidden = !r.number;
  $('match-number').textContent = r.number ?? '';
  $('otp-form').hidden = !r.factors.includes('otp');
  $('recovery-login-wrap').hidden = !r.recovery;
  $('passkey-login-wrap').hidden = !r.passkey;
  if (push) void waitForPush();
}

async function waitForPush() {
  waiting = true;
  while (waiting) {
    try {
      const { state } = await call('GET', '/login/wait');
      if (state === 'pending') continue;
      waiting = false;
      if (state === 'approved') return finish();
      $('wait-status').textContent = state === 'rejected' ? 'The request was rejected on your phone.' : 'No answer in time; start again.';
    } catch (err) {
      waiting = false;
      if (err.code !== 'no_sign_in') $('wait-status').textContent = err.message;
    }
  }
}

async function finish() {
  waiting = false;
  const r = await call('POST', '/login/finish');
  csrf = r.csrf;
  await portal();
}

const answer = (path, body) => async () => {
  flash();
  try {
    const { state } = await call('POST', path, body());
    if (state === 'approved') return finish();
    flash(`The sign-in is ${state}; start again.`);
  } catch (err) {
    flash(err.message);
  }
};
$('otp-form').addEventListener('submit', (e) => {
  e.preventDefault();
  void answer('/login/otp', () => ({ code: $('code').value.trim() }))();
});
$('recovery-form').addEventListener('submit', (e) => {
  e.preventDefault();
  void answer('/login/recovery', () => ({ code: $('recovery-code').value.trim() }))();
});
$('passkey-login').addEventListener('click', async () => {
  flash();
  try {
    const w = await loadWebAuthn();
    if (!w) throw new Error('Passkeys are not available here.');
    const response = await w.authenticate(await call('POST', '/login/passkey/options'));
    const { state } = await call('POST', '/login/passkey', { response });
    if (state === 'approved') await finish();
  } catch (err) {
    flash(err.message);
  }
});

// ---- the portal ----
async function portal() {
  const me = await call('GET', '/me');
  csrf = me.csrf;
  show('portal');
  $('who').hidden = false;
  $('who-name').textContent = me.displayName ? `${me.displayName} (${me.user})` : me.user;
  $('otp-status').textContent = me.otp.enabled ? 'On. Setting it up again replaces the app you use now, once the new code works.' : 'Not set up.';
  $('otp-start').textContent = me.otp.enabled ? 'Set up a new authenticator app' : 'Set up an authenticator app';
  $('devices').replaceChildren(
    ...(me.devices.length
      ? me.devices.map((d) =>
          li(
            `${d.name} (${d.platform === 'webpush' ? 'web app' : d.platform}) — added ${when(d.createdAt)}, last used ${when(d.lastUsedAt)}`,
            removeButton(d.name, async () => {
              if (!confirm(`Remove ${d.name}? It can no longer approve your sign-ins.`)) return;
              await call('DELETE', `/devices/${encodeURIComponent(d.id)}`).catch((err) => flash(err.message));
              await portal();
            }),
          ),
        )
      : [li('No phone or web app yet.')]),
  );
  $('passkeys-card').hidden = me.passkeys === null;
  if (me.passkeys) {
    $('passkeys').replaceChildren(
      ...(me.passkeys.length
        ? me.passkeys.map((p) =>
            li(
              `${p.name} — added ${when(p.createdAt)}, last used ${when(p.lastUsedAt)}${p.backedUp ? ' (synced)' : ''}`,
              removeButton(p.name, async () => {
                if (!confirm(`Remove the passkey ${p.name}?`)) return;
                await call('DELETE', `/passkeys/${encodeURIComponent(p.id)}`).catch((err) => flash(err.message));
                await portal();
              }),
            ),
          )
        : [li('No passkey yet.')]),
    );
  }
  // A first-enrolment sign-in (the password alone, within the grace) sets up one factor and nothing else.
  $('grace-note').hidden = !me.grace;
  $('recovery-card').hidden = Boolean(me.grace);
  $('activity-card').hidden = Boolean(me.grace);
  if (me.grace) return;
  $('recovery-status').textContent = me.recovery.total
    ? `${me.recovery.remaining} of ${me.recovery.total} codes left (made ${when(me.recovery.createdAt)}).`
    : 'You have no recovery codes.';
  const act = await call('GET', '/activity');
  $('signins').tBodies[0].replaceChildren(
    ...act.signIns.map((s) => {
      const tr = document.createElement('tr');
      for (const v of [when(s.at), `${s.front}${s.client ? ` · ${s.client}` : ''}`, s.ip ?? '—', s.method ?? '—', s.outcome ?? '—']) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  $('reports').replaceChildren(...(act.reports.length ? act.reports.map((r) => li(`${when(r.at)} — ${r.client ?? r.front ?? ''} from ${r.ip ?? 'an unknown address'}`)) : [li('None.')]));
}

$('otp-start').addEventListener('click', async () => {
  flash();
  try {
    const r = await call('POST', '/otp/start');
    $('otp-setup').hidden = false;
    $('otp-qr').src = r.qrPng;
    $('otpauth').href = r.uri;
    $('otp-secret').textContent = r.secret;
    $('otp-msg').textContent = '';
    $('otp-confirm-code').focus();
  } catch (err) {
    flash(err.message);
  }
});
$('otp-confirm-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    await call('POST', '/otp/confirm', { code: $('otp-confirm-code').value.trim() });
    $('otp-setup').hidden = true;
    $('otp-confirm-code').value = '';
    await portal();
    $('otp-status').textContent = 'On: your authenticator app is set up.';
  } catch (err) {
    $('otp-msg').textContent = err.message;
    $('otp-msg').className = 'err';
  }
});

let devicePoll;
$('enrol-start').addEventListener('click', async () => {
  flash();
  try {
    const r = await call('POST', '/devices/enrolment');
    $('enrol').hidden = false;
    $('enrol-qr').src = r.qrPng;
    $('enrol-link').href = r.appUrl;
    // The list shows the new device once it has enrolled.
    clearInterval(devicePoll);
    devicePoll = setInterval(() => void portal().catch(() => clearInterval(devicePoll)), 3000);
    setTimeout(() => clearInterval(devicePoll), 10 * 60_000);
  } catch (err) {
    flash(err.message);
  }
});

$('passkey-add').addEventListener('click', async () => {
  $('passkey-msg').textContent = '';
  try {
    const w = await loadWebAuthn();
    if (!w) throw new Error('Passkeys are not available here.');
    const response = await w.register(await call('POST', '/passkeys/options'));
    await call('POST', '/passkeys', { response, name: $('passkey-name').value.trim() || 'Passkey' });
    await portal();
    $('passkey-msg').textContent = 'Passkey added.';
  } catch (err) {
    $('passkey-msg').textContent = err.message;
  }
});

$('recovery-create').addEventListener('click', async () => {
  if (!confirm('Make new recovery codes? Any codes you have now stop working.')) return;
  try {
    const { codes } = await call('POST', '/recovery');
    $('recovery-codes').replaceChildren(...codes.map((c) => li(c)));
    $('recovery-new').hidden = false;
    $('recovery-status').textContent = `${codes.length} of ${codes.length} codes left (made just now).`;
  } catch (err) {
    flash(err.message);
  }
});

$('logout').addEventListener('click', async () => {
  await call('POST', '/logout').catch(() => {});
  csrf = '';
  $('who').hidden = true;
  show('signin');
});

// Start: an open session goes straight to the portal; otherwise the sign-in form.
(async () => {
  $('invite-note').hidden = !invite();
  try {
    if (invite()) throw new Error('an invitation signs in afresh');
    await portal();
  } catch {
    show('signin');
    $('user').focus();
  }
})();
