// The app lock: approving asks for an app PIN (a salted PBKDF2 hash kept in
// IndexedDB, never sent anywhere) or the device's own screen lock through a
// passkey this app made on the device (WebAuthn, user verification required).
// With the lock on, every enrolment is marked protected on its server, so a
// watch or a notification can only reject.
//
// What it guards against: someone holding the unlocked phone. It is not a
// guard against someone who can run code in this browser profile.

import { $, fieldError, show, toast } from './dom.js';
import { C, state, reload, changed } from './state.js';

const ITERATIONS = 600_000; // OWASP's figure for PBKDF2-HMAC-SHA256
const FREE_TRIES = 5;

async function pinHash(pin, salt, iterations) {
  const base = await crypto.subtle.importKey('raw', C.utf8(pin), 'PBKDF2', false, ['deriveBits']);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, 256));
}

/** Why a PIN will not do, or '' when it will. */
export function weakPin(pin) {
  if (!/^\d{4,12}$/.test(pin)) return 'A PIN is 4 to 12 digits.';
  if (/^(\d)\1+$/.test(pin)) return 'Choose a PIN that is not one digit repeated.';
  const up = '01234567890123456789';
  const down = '98765432109876543210';
  if (up.includes(pin) || down.includes(pin)) return 'Choose a PIN that is not a run of digits such as 1234.';
  return '';
}

export async function setPin(pin) {
  const salt = C.random(16);
  const hash = await pinHash(pin, salt, ITERATIONS);
  await applyLock({ k: 'lock', kind: 'pin', salt, hash, iterations: ITERATIONS, failures: 0, waitUntil: 0 });
}

/** Checks a PIN; after five wrong ones each further try waits longer (30 s, 1 min, … up to an hour). */
export async function checkPin(pin) {
  const lock = await C.lock();
  if (!lock || lock.kind !== 'pin') return { ok: true };
  const now = Date.now();
  if (lock.waitUntil > now) return { ok: false, message: `Too many wrong PINs. Try again in ${Math.ceil((lock.waitUntil - now) / 1000)} seconds.` };
  const ok = C.sameBytes(await pinHash(pin, lock.salt, lock.iterations), lock.hash);
  const failures = ok ? 0 : lock.failures + 1;
  const waitUntil = failures >= FREE_TRIES ? now + Math.min(3_600_000, 30_000 * 2 ** (failures - FREE_TRIES)) : 0;
  await C.db.put('settings', { ...lock, failures, waitUntil });
  if (ok) return { ok: true };
  const left = FREE_TRIES - failures;
  return { ok: false, message: left > 0 ? `Wrong PIN. ${left} ${left === 1 ? 'try' : 'tries'} left before a wait.` : `Wrong PIN. Wait ${Math.ceil((waitUntil - now) / 1000)} seconds before the next try.` };
}

// ---------------------------------------------------------------- passkey

export async function passkeyAvailable() {
  try {
    return Boolean(self.PublicKeyCredential && (await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable()));
  } catch {
    return false;
  }
}

export async function setPasskey() {
  const name = state.enrolments[0]?.user || 'Countersign';
  const cred = await navigator.credentials.create({
    publicKey: {
      rp: { name: 'Countersign app lock' },
      user: { id: C.random(16), name: `${name} (app lock)`, displayName: `${name} (app lock)` },
      challenge: C.random(32),
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
      authenticatorSelection: { authenticatorAttachment: 'platform', userVerification: 'required', residentKey: 'discouraged' },
      attestation: 'none',
      timeout: 60_000,
    },
  });
  if (!cred) throw new Error('No passkey was made.');
  const spki = typeof cred.response.getPublicKey === 'function' ? cred.response.getPublicKey() : null;
  await applyLock({ k: 'lock', kind: 'passkey', credentialId: new Uint8Array(cred.rawId), publicKey: spki ? new Uint8Array(spki) : null });
}

/** ECDSA signatures in WebAuthn are DER; WebCrypto verifies r||s. */
function derToRaw(der) {
  const b = new Uint8Array(der);
  let i = 2;
  const int = () => {
    i++; // 0x02
    const len = b[i++];
    let v = b.slice(i, i + len);
    i += len;
    while (v.length > 32 && v[0] === 0) v = v.slice(1);
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  const r = int();
  const s = int();
  const raw = new Uint8Array(64);
  raw.set(r, 0);
  raw.set(s, 32);
  return raw;
}

async function checkPasskey(lock) {
  const challenge = C.random(32);
  const a = await navigator.credentials.get({
    publicKey: { challenge, allowCredentials: [{ type: 'public-key', id: lock.credentialId }], userVerification: 'required', timeout: 60_000 },
  });
  if (!a) return false;
  const client = JSON.parse(new TextDecoder().decode(a.response.clientDataJSON));
  if (client.type !== 'webauthn.get' || client.challenge !== C.b64u.encode(challenge) || client.origin !== location.origin) return false;
  const authData = new Uint8Array(a.response.authenticatorData);
  const flags = authData[32];
  if (!(flags & 0x01) || !(flags & 0x04)) return false; // user present and verified
  if (lock.publicKey) {
    const key = await crypto.subtle.importKey('spki', lock.publicKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', a.response.clientDataJSON));
    const signed = new Uint8Array(authData.length + digest.length);
    signed.set(authData, 0);
    signed.set(digest, authData.length);
    if (!(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, derToRaw(a.response.signature), signed))) return false;
  }
  return true;
}

// ---------------------------------------------------------------- on and off

/** Saves the lock (or removes it) and tells every enrolment's server whether it is protected now. */
async function applyLock(lock) {
  if (lock) await C.db.put('settings', lock);
  else await C.db.delete('settings', 'lock');
  await reload();
  const protectedNow = Boolean(lock);
  const failed = [];
  // An update that names neither a push token nor a name means "poll only" to the server:
  // the current subscription goes along, so telling it about the lock keeps the notifications.
  let sub = null;
  try {
    sub = (await state.registration?.pushManager.getSubscription()) || null;
  } catch {
    sub = null;
  }
  for (const e of state.enrolments) {
    if (e.revoked || e.protected === protectedNow) continue;
    const pushToken = sub && e.pushEndpoint === sub.endpoint ? C.pushToken(sub) : null;
    try {
      await C.api.update(e, { protected: protectedNow, pushToken });
      await C.db.put('enrolments', { ...e, protected: protectedNow });
    } catch {
      failed.push(e.user);
    }
  }
  await reload();
  changed();
  if (failed.length) throw new Error(`The lock is ${protectedNow ? 'on' : 'off'} here, but the server could not be told for ${failed.join(', ')}; it tries again at the next start.`);
}

export const lockOff = () => applyLock(null);

/** Tells servers about a lock change they missed (offline at the time). */
export async function syncProtected() {
  const want = Boolean(state.lock);
  if (state.enrolments.some((e) => !e.revoked && e.protected !== want)) await applyLock(state.lock).catch(() => {});
}

// ---------------------------------------------------------------- the unlock dialog

/**
 * Asks to unlock; resolves true when unlocked (or when there is no lock). `purpose` ends
 * "Enter your app PIN to …", `button` names the button.
 */
export async function unlock(purpose, button = 'Unlock') {
  const lock = await C.lock();
  if (!lock) return true;
  if (lock.kind === 'passkey') {
    let ok = false;
    try {
      ok = await checkPasskey(lock);
    } catch {
      ok = false; // cancelled, timed out, or the device could not check
    }
    if (!ok) toast('The device did not confirm it is you: nothing was done.');
    return ok;
  }
  const d = $('unlock');
  const input = $('unlock-pin');
  const error = $('unlock-error');
  const opener = document.activeElement;
  $('unlock-text').textContent = `Enter your app PIN to ${purpose}.`;
  $('unlock-ok').textContent = button;
  input.value = '';
  fieldError(error, '');
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      form.removeEventListener('submit', onSubmit);
      $('unlock-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(ok);
    };
    const form = $('unlock-form');
    const onSubmit = async (ev) => {
      ev.preventDefault();
      const ok = $('unlock-ok');
      ok.disabled = true;
      try {
        const r = await checkPin(input.value);
        if (r.ok) return finish(true);
        fieldError(error, r.message);
        input.setAttribute('aria-invalid', 'true');
        input.select();
      } finally {
        ok.disabled = false;
      }
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      finish(false);
    };
    form.addEventListener('submit', onSubmit);
    $('unlock-cancel').addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    input.removeAttribute('aria-invalid');
    d.showModal();
    input.focus();
  });
}

// ---------------------------------------------------------------- Settings: the lock card

export function renderLock() {
  const lock = state.lock;
  $('lock-state').textContent = !lock
    ? 'Off: anyone holding this device while it is unlocked can approve your sign-ins.'
    : lock.kind === 'pin'
      ? 'On, with a PIN: approving asks for your app PIN, and notifications offer only Reject.'
      : 'On, with the device’s screen lock (fingerprint, face or device PIN): approving asks for it, and notifications offer only Reject.';
  $('lock-pin').textContent = lock?.kind === 'pin' ? 'Change the PIN' : 'Set a PIN';
  show($('lock-off'), Boolean(lock));
  passkeyAvailable().then((yes) => show($('lock-passkey'), yes && lock?.kind !== 'passkey'));
}

export function wireLock() {
  const status = $('lock-status');
  const form = $('pin-form');
  const openForm = () => {
    show(form);
    show($('lock-buttons'), false);
    $('pin-new').value = '';
    $('pin-again').value = '';
    fieldError($('pin-error'), '');
    $('pin-new').focus();
  };
  const closeForm = () => {
    show(form, false);
    show($('lock-buttons'));
  };
  $('lock-pin').addEventListener('click', async () => {
    status.textContent = '';
    // Changing the PIN takes the current one first.
    if (state.lock?.kind === 'pin' && !(await unlock('change the app lock'))) return;
    openForm();
  });
  $('pin-cancel').addEventListener('click', () => {
    closeForm();
    $('lock-pin').focus();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pin = $('pin-new').value;
    const weak = weakPin(pin);
    if (weak) {
      fieldError($('pin-error'), weak);
      $('pin-new').focus();
      return;
    }
    if (pin !== $('pin-again').value) {
      fieldError($('pin-error'), 'The two PINs differ.');
      $('pin-again').focus();
      return;
    }
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    status.textContent = 'Saving…';
    try {
      await setPin(pin);
      status.textContent = 'The PIN is set. Approving now asks for it.';
    } catch (err) {
      status.textContent = err.message;
    } finally {
      btn.disabled = false;
      closeForm();
      $('lock-pin').focus();
    }
  });
  $('lock-passkey').addEventListener('click', async () => {
    status.textContent = '';
    if (state.lock && !(await unlock('change the app lock'))) return;
    try {
      await setPasskey();
      status.textContent = 'The lock now uses this device’s screen lock.';
    } catch (err) {
      status.textContent = `No passkey was made: ${err.message}`;
    }
  });
  $('lock-off').addEventListener('click', async () => {
    status.textContent = '';
    if (!(await unlock('turn the app lock off'))) return;
    try {
      await lockOff();
      status.textContent = 'The lock is off.';
    } catch (err) {
      status.textContent = err.message;
    }
    $('lock-pin').focus();
  });
}
