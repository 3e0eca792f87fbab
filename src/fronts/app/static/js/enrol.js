// Enrolment: from a link (…/app/#enrol=server=…&token=…&user=…, a pasted
// countersign://enrol?… link, or a pasted app link), make a non-extractable
// ECDSA P-256 key in this browser, subscribe to push where possible, and
// enrol as a 'webpush' device. Only the public key leaves the device.

import { $, show, fieldError, hostOf, toast } from './dom.js';
import { C, state, reload, changed } from './state.js';
import { defaultName, device, subscriptionForEnrolment } from './push.js';

/** The link's parameters ({ server, token, user, query }), or null when it is not an enrolment link. */
export function parseLink(text) {
  const raw = String(text || '').trim();
  let query = null;
  const hash = raw.indexOf('#enrol=');
  if (hash >= 0) query = raw.slice(hash + '#enrol='.length);
  else if (/^countersign:\/\/enrol\?/i.test(raw)) query = raw.slice(raw.indexOf('?') + 1);
  else if (/^server=|[?&]token=/.test(raw)) query = raw.replace(/^[^?]*\?/, '');
  if (query === null) return null;
  // The query string may come URL-encoded as a whole (the fragment of an app link).
  if (!query.includes('=') && query.includes('%3D')) {
    try {
      query = decodeURIComponent(query);
    } catch {
      return null;
    }
  }
  const p = new URLSearchParams(query);
  const token = p.get('token');
  if (!token) return null;
  return { server: p.get('server') || '', token, user: p.get('user') || '', query };
}

let current = null;

/** Shows the set-up screen for a link (main.js routes #enrol=… here). */
export function showEnrol(link) {
  current = link;
  const d = device();
  const who = link.user ? `for ${link.user}` : '';
  const where = link.server ? hostOf(link.server) : location.host;
  $('enrol-intro').textContent = `This device will approve sign-ins ${who} on ${where}. The key that signs your answers is made here and never leaves this device.`;
  const name = $('enrol-name');
  if (!name.value) name.value = defaultName();
  const iosInSafari = d.ios && !d.standalone;
  show($('enrol-ios'), iosInSafari);
  show($('enrol-lock-note'), Boolean(state.lock));
  $('enrol-go').textContent = iosInSafari
    ? 'Set up here without notifications'
    : 'Notification' in self && Notification.permission === 'granted'
      ? 'Set up this device'
      : 'Set up and allow notifications';
  $('enrol-go').classList.toggle('primary', !iosInSafari);
  $('enrol-status').textContent = '';
  fieldError($('enrol-error'), '');
  $('enrol-go').disabled = false;
}

async function enrol(ev) {
  ev.preventDefault();
  const link = current;
  if (!link) return;
  const go = $('enrol-go');
  const status = $('enrol-status');
  const error = $('enrol-error');
  const name = $('enrol-name').value.trim();
  if (!name) {
    fieldError(error, 'Give this device a name.');
    $('enrol-name').focus();
    return;
  }
  fieldError(error, '');
  // Ask before anything else is awaited: Safari grants the prompt only inside the tap itself.
  const d = device();
  const asking =
    !(d.ios && !d.standalone) && 'Notification' in self && Notification.permission === 'default' ? Notification.requestPermission().catch(() => 'default') : null;
  go.disabled = true;
  try {
    if (asking) {
      status.textContent = 'Waiting for your answer about notifications…';
      await asking;
    }
    status.textContent = 'Making this device’s key…';
    const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    const jwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
    status.textContent = 'Connecting to notifications…';
    const sub = await subscriptionForEnrolment();
    status.textContent = 'Enrolling…';
    const body = {
      token: link.token,
      platform: 'webpush',
      publicKey: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
      name,
      protected: Boolean(state.lock),
    };
    let r;
    try {
      r = await C.api.enrol(sub ? { ...body, pushToken: C.pushToken(sub) } : body);
    } catch (err) {
      // A server that refuses this subscription still takes the device for checking while open.
      if (!sub || err.status !== 400 || !/push/i.test(err.message)) throw err;
      r = await C.api.enrol(body);
    }
    await C.db.put('enrolments', {
      deviceId: r.deviceId,
      user: r.user,
      server: r.server || link.server || location.origin,
      name,
      key: pair.privateKey,
      createdAt: Date.now(),
      protected: Boolean(state.lock),
      pushEndpoint: sub ? sub.endpoint : null,
      revoked: false,
    });
    current = null;
    $('enrol-name').value = '';
    await reload();
    // The token is spent: take it out of the address bar and the history.
    history.replaceState(null, '', '#requests');
    changed();
    window.dispatchEvent(new HashChangeEvent('hashchange')); // replaceState routes nothing by itself
    toast(`Done: this device now approves sign-ins for ${r.user}.`);
  } catch (err) {
    status.textContent = '';
    let message = C.explain(err);
    if (err.status === 410) {
      message = 'This link was already used or has expired (links work once, for a few minutes). Ask your administrator for a new one.';
      let elsewhere = false;
      try {
        elsewhere = Boolean(link.server) && new URL(link.server).origin !== location.origin;
      } catch {
        elsewhere = false;
      }
      if (elsewhere) {
        message += ` It is also for ${hostOf(link.server)}: open it there, at ${link.server.replace(/\/+$/, '')}/app/.`;
      }
    }
    fieldError(error, message);
    go.disabled = false;
    go.focus();
  }
}

/** The paste forms (welcome screen, Settings → Add another account). */
function wirePaste(formId, inputId, errorId) {
  $(formId).addEventListener('submit', (ev) => {
    ev.preventDefault();
    const link = parseLink($(inputId).value);
    if (!link) {
      fieldError($(errorId), 'That is not an enrolment link. It starts with https:// and contains #enrol=, or with countersign://enrol.');
      $(inputId).setAttribute('aria-invalid', 'true');
      $(inputId).focus();
      return;
    }
    fieldError($(errorId), '');
    $(inputId).removeAttribute('aria-invalid');
    $(inputId).value = '';
    location.hash = `#enrol=${link.query}`;
  });
}

export function wireEnrol() {
  $('enrol-form').addEventListener('submit', enrol);
  $('enrol-cancel').addEventListener('click', (ev) => {
    // Leave without keeping the link (and its token) in the history.
    ev.preventDefault();
    current = null;
    history.replaceState(null, '', '#requests');
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  });
  $('enrol-copy').addEventListener('click', async () => {
    const link = current ? `${location.origin}${location.pathname}#enrol=${current.query}` : '';
    try {
      await navigator.clipboard.writeText(link);
      $('enrol-status').textContent = 'Copied. Now add Countersign to the Home Screen and paste it there.';
    } catch {
      $('enrol-status').textContent = `Copy this link: ${link}`;
    }
  });
  wirePaste('paste-form', 'paste-link', 'paste-error');
  wirePaste('add-form', 'add-link', 'add-error');
}
