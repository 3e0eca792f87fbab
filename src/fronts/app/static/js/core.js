// What the page and the service worker share: the enrolments and settings in
// IndexedDB, request signing (an ES256 compact JWS made with the device's
// non-extractable WebCrypto key), the device API calls, and how a push becomes
// a notification.
//
// A classic script, not a module: the service worker loads it with
// importScripts (module service workers are not in every browser), the page
// with a plain <script> before its modules. It defines self.Countersign only.
'use strict';

(function (global) {
  // ---------------------------------------------------------------- bytes

  const enc = new TextEncoder();
  const utf8 = (s) => enc.encode(s);

  const b64u = {
    encode(bytes) {
      let s = '';
      for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
      return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    },
    decode(text) {
      const s = atob(String(text).replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '='));
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
      return out;
    },
  };
  const random = (n) => crypto.getRandomValues(new Uint8Array(n));

  /** Equal byte strings, in time that does not depend on where they differ. */
  function sameBytes(a, b) {
    const x = new Uint8Array(a);
    const y = new Uint8Array(b);
    let diff = x.length ^ y.length;
    for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
    return diff === 0;
  }

  // ---------------------------------------------------------------- storage

  // enrolments: { deviceId, user, server, name, key (CryptoKey, private, non-extractable),
  //               createdAt, protected, pushEndpoint, revoked }
  // settings:   { k: 'lock', … } (lock.js), { k: 'push', … } (what the last subscribe said)
  // answers:    what this browser answered, newest kept: { challengeId, user, deviceId,
  //               displayCode, client, ip, decision, reason, state, at }
  const DB_NAME = 'countersign';
  const DB_VERSION = 1;
  let dbPromise = null;

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB_NAME, DB_VERSION);
        req.onupgradeneeded = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('enrolments')) db.createObjectStore('enrolments', { keyPath: 'deviceId' });
          if (!db.objectStoreNames.contains('settings')) db.createObjectStore('settings', { keyPath: 'k' });
          if (!db.objectStoreNames.contains('answers')) db.createObjectStore('answers', { keyPath: 'challengeId' });
        };
        req.onsuccess = () => {
          const db = req.result;
          db.onversionchange = () => {
            db.close();
            dbPromise = null;
          };
          resolve(db);
        };
        req.onerror = () => {
          dbPromise = null;
          reject(req.error || new Error('cannot open the app’s storage'));
        };
      });
    }
    return dbPromise;
  }

  async function run(store, mode, fn) {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const t = db.transaction(store, mode);
      const req = fn(t.objectStore(store));
      t.oncomplete = () => resolve(req ? req.result : undefined);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error('storage transaction aborted'));
    });
  }

  const db = {
    get: (store, key) => run(store, 'readonly', (s) => s.get(key)),
    all: (store) => run(store, 'readonly', (s) => s.getAll()),
    put: (store, value) => run(store, 'readwrite', (s) => s.put(value)),
    delete: (store, key) => run(store, 'readwrite', (s) => s.delete(key)),
  };

  const enrolments = async () => (await db.all('enrolments')).sort((a, b) => a.createdAt - b.createdAt);
  const setting = async (k) => (await db.get('settings', k)) || null;
  /** The app lock (PIN or passkey), or null when approving needs no unlock. */
  const lock = () => setting('lock');

  const ANSWERS_KEPT = 50;
  async function remember(entry) {
    await db.put('answers', entry);
    const all = await db.all('answers');
    if (all.length > ANSWERS_KEPT) {
      all.sort((a, b) => b.at - a.at);
      for (const old of all.slice(ANSWERS_KEPT)) await db.delete('answers', old.challengeId);
    }
  }

  // ---------------------------------------------------------------- the server's clock

  // Signed requests must carry an iat within a minute of the server's clock. A phone whose clock
  // is off learns the server's time from the Date header of any answer and signs with that.
  let skewMs = 0;
  const serverNow = () => Date.now() + skewMs;
  function learnClock(res) {
    const at = Date.parse(res.headers.get('date') || '');
    if (Number.isNaN(at)) return;
    const off = at - Date.now();
    // The header has one-second resolution: only a clearly wrong clock is corrected.
    skewMs = Math.abs(off) > 5000 ? off : 0;
  }

  // ---------------------------------------------------------------- the device API

  /** The device API sits beside /app/ on the same server (also behind a path prefix). */
  const API = new URL('../device/v1/', global.location.href);

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  async function call(method, path, body) {
    let res;
    try {
      res = await fetch(new URL(path, API), {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'offline', 'Cannot reach the server. Check the connection and try again.');
    }
    learnClock(res);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new ApiError(res.status, data.error || `http_${res.status}`, data.message || `The server answered ${res.status}.`, data);
    return data;
  }

  /** A compact JWS for one request: header { alg, typ, kid }, claims { …, sub, iat, jti }. */
  async function sign(enrolment, type, claims = {}) {
    const header = { alg: 'ES256', typ: `countersign-${type}+jwt`, kid: enrolment.deviceId };
    const payload = { ...claims, sub: enrolment.user, iat: Math.floor(serverNow() / 1000), jti: b64u.encode(random(16)) };
    const input = `${b64u.encode(utf8(JSON.stringify(header)))}.${b64u.encode(utf8(JSON.stringify(payload)))}`;
    // WebCrypto's ECDSA signature is r||s, 64 bytes: exactly what JWS ES256 wants (no DER).
    const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, enrolment.key, utf8(input));
    return `${input}.${b64u.encode(sig)}`;
  }

  async function signed(enrolment, path, type, claims) {
    const once = async () => call('POST', path, { request: await sign(enrolment, type, claims) });
    try {
      return await once();
    } catch (err) {
      // A clock far off: the answer's Date header has just set the offset; sign again once.
      if (err.status === 401 && /clock/i.test(err.message) && skewMs !== 0) return once();
      throw err;
    }
  }

  const api = {
    /** The server's VAPID public key (base64url), or null when it sends no web push. */
    async webpushKey() {
      try {
        const r = await call('GET', 'webpush-key');
        return typeof r.publicKey === 'string' && r.publicKey ? r.publicKey : null;
      } catch (err) {
        if (err.status === 404 || err.status === 501 || err.status === 503) return null;
        throw err;
      }
    },
    enrol: (body) => call('POST', 'enrol', body),
    async pending(e) {
      const r = await signed(e, 'pending', 'poll');
      return Array.isArray(r.pending) ? r.pending : [];
    },
    answer: (e, challengeId, decision, extra = {}) => signed(e, 'answer', 'answer', { cid: challengeId, decision, ...extra }),
    history: (e) => signed(e, 'history', 'poll'),
    update: (e, claims) => signed(e, 'token', 'update', claims),
    async eventsUrl(e) {
      const u = new URL('events', API);
      u.searchParams.set('request', await sign(e, 'poll'));
      return u.href;
    },
  };

  /** The one sentence a person should read when a call failed. */
  function explain(err, view) {
    const code = err && err.code;
    const state = err && err.body && err.body.state;
    if (code === 'offline') return err.message;
    if (code === 'wrong_number') return 'That was not the number on the sign-in screen, so the sign-in was rejected to keep you safe. Start the sign-in again.';
    if (code === 'approve_on_phone') return 'This sign-in must be approved in the app itself.';
    if (code === 'device_unauthorized' && /not enrolled|revoked/i.test(err.message)) {
      return 'This device is no longer enrolled (it was removed on the server). Remove it in Settings and enrol again.';
    }
    if (code === 'not_found' || err.status === 404) return 'This sign-in no longer exists.';
    if (state || (code && /^challenge_/.test(code))) {
      const s = state || code.replace(/^challenge_/, '');
      return `This sign-in${view ? ` (ID ${view.displayCode})` : ''} was already ${s === 'pending' ? 'answered' : s}.`;
    }
    if (code === 'push_locked' || code === 'push_rate_limited') return err.message;
    return (err && err.message) || 'Something went wrong.';
  }

  // ---------------------------------------------------------------- push

  /** A push's fields (all strings) as the pending view the app shows; null when it is not ours. */
  function fromPush(d) {
    if (!d || d.type !== 'countersign.challenge' || typeof d.challengeId !== 'string' || typeof d.displayCode !== 'string') return null;
    return {
      challengeId: d.challengeId,
      displayCode: d.displayCode,
      user: String(d.user || ''),
      client: d.client || undefined,
      ip: d.ip || undefined,
      createdAt: Number(d.createdAt) || Date.now(),
      deadline: Number(d.deadline) || Date.now() + 120_000,
      watch: d.watch === 'reject-only' ? 'reject-only' : 'approve-reject',
      numberMatching: d.numberMatching === true || d.numberMatching === 'true',
      bindingMessage: d.bindingMessage || undefined,
    };
  }

  /** Whether a login may be approved straight from its notification: not when the app is locked, the server says the phone must approve, or a number must be typed. */
  const approveFromNotification = (view, locked) => !locked && view.watch === 'approve-reject' && !view.numberMatching;

  function notificationFor(view, { locked, icon, badge }) {
    const who = view.client || 'An app';
    const lines = [`${who} asks to sign in ${view.user || 'you'}${view.ip ? ` from ${view.ip}` : ''}.`];
    if (view.bindingMessage) lines.push(`“${view.bindingMessage}”`);
    const here = approveFromNotification(view, locked);
    if (here) lines.push('Approve only if the ID matches your sign-in screen.');
    else if (view.numberMatching) lines.push('Open Countersign and type the number from the sign-in screen to approve.');
    else lines.push('Open Countersign to approve.');
    return {
      title: `Sign-in request · ID ${view.displayCode}`,
      options: {
        body: lines.join('\n'),
        tag: view.challengeId,
        renotify: true,
        requireInteraction: true,
        timestamp: view.createdAt,
        lang: 'en',
        icon,
        badge,
        data: { view },
        actions: here
          ? [
              { action: 'approve', title: 'Approve' },
              { action: 'reject', title: 'Reject' },
            ]
          : [
              { action: 'reject', title: 'Reject' },
              { action: 'open', title: 'Open to approve' },
            ],
      },
    };
  }

  /** The subscription as the server keeps it (the pushToken): endpoint and keys, as JSON. */
  const pushToken = (sub) => JSON.stringify(sub.toJSON ? sub.toJSON() : sub);

  /**
   * This browser's push subscription for the server's current key, made when there is none
   * (needs notification permission). { state: 'on', sub } or { state: 'no-server-key' } or
   * { state: 'failed', detail }.
   */
  async function subscription(registration) {
    const key = await api.webpushKey();
    if (!key) return { state: 'no-server-key' };
    const want = b64u.decode(key);
    let sub = await registration.pushManager.getSubscription();
    const have = sub && sub.options && sub.options.applicationServerKey;
    if (sub && have && !sameBytes(have, want)) {
      // The server's key changed: a subscription for the old one cannot deliver.
      await sub.unsubscribe().catch(() => {});
      sub = null;
    }
    if (!sub) {
      try {
        sub = await withTimeout(registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: want }), 20_000);
      } catch (err) {
        return { state: 'failed', detail: (err && err.message) || String(err) };
      }
    }
    return { state: 'on', sub };
  }

  /**
   * Makes sure this browser has a push subscription (the one given, or its current one) and
   * tells every enrolment whose server knows another. Returns what subscription() does.
   */
  async function ensurePush(registration, given) {
    const r = given ? { state: 'on', sub: given } : await subscription(registration);
    if (r.state !== 'on') return r;
    const token = pushToken(r.sub);
    for (const e of await enrolments()) {
      if (e.revoked || e.pushEndpoint === r.sub.endpoint) continue;
      try {
        await api.update(e, { pushToken: token });
        await db.put('enrolments', { ...e, pushEndpoint: r.sub.endpoint });
      } catch {
        // the next start tries again
      }
    }
    return r;
  }

  function withTimeout(p, ms) {
    let t;
    return Promise.race([p, new Promise((_, reject) => (t = setTimeout(() => reject(new Error('the push service did not answer')), ms)))]).finally(() =>
      clearTimeout(t),
    );
  }

  /** Answers a login with the enrolment it came to (view.deviceId), or any of its user's, and records it. */
  async function answerFor(view, decision, extra = {}) {
    const mine = (await enrolments()).filter((e) => !e.revoked && (view.deviceId ? e.deviceId === view.deviceId : !view.user || e.user === view.user));
    if (!mine.length) throw new ApiError(401, 'device_unauthorized', 'this device is not enrolled (or was revoked)');
    let last;
    for (const e of mine) {
      try {
        const r = await api.answer(e, view.challengeId, decision, extra);
        await remember({
          challengeId: view.challengeId,
          user: e.user,
          deviceId: e.deviceId,
          displayCode: view.displayCode,
          client: view.client,
          ip: view.ip,
          decision,
          reason: extra.reason,
          state: r.state,
          at: Date.now(),
        }).catch(() => {});
        return r;
      } catch (err) {
        last = err;
        if (err.status !== 401) break; // another enrolment of the same user may still be live
      }
    }
    throw last;
  }

  global.Countersign = {
    b64u,
    utf8,
    random,
    sameBytes,
    db,
    enrolments,
    setting,
    lock,
    remember,
    serverNow,
    api,
    ApiError,
    explain,
    fromPush,
    approveFromNotification,
    notificationFor,
    pushToken,
    subscription,
    ensurePush,
    answerFor,
  };
})(self);
