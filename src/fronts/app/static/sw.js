// The Countersign web app's service worker (scope /app/). It shows each push
// as a notification (the login's ID and who asks), answers Reject and, where
// allowed, Approve straight from the notification with the device key kept in
// IndexedDB, renews the push subscription when the browser replaces it, and
// keeps a copy of the app's files so it opens without a network.
'use strict';

importScripts('js/core.js');

const C = self.Countersign;
const SHELL = 'countersign-app-1';
const FILES = [
  './',
  'app.css',
  'manifest.webmanifest',
  'js/core.js',
  'js/dom.js',
  'js/main.js',
  'js/state.js',
  'js/enrol.js',
  'js/requests.js',
  'js/history.js',
  'js/settings.js',
  'js/lock.js',
  'js/push.js',
  'icons/icon.svg',
  'icons/icon-192.png',
  'icons/badge-96.png',
];
const scoped = (path) => new URL(path, self.registration.scope).href;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((c) => c.addAll(FILES))
      .catch(() => {}) // offline at install: the next visit fills the cache
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== SHELL) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

// The app's own files: the network first (an update shows at once), the copy when offline.
// Nothing else is touched: the device API is outside the scope and never cached.
self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || !req.url.startsWith(self.registration.scope)) return;
  event.respondWith(
    (async () => {
      try {
        const res = await fetch(req);
        if (res.ok && res.type === 'basic') {
          const copy = res.clone();
          caches.open(SHELL).then((c) => c.put(req, copy)).catch(() => {});
        }
        return res;
      } catch (err) {
        const hit = (await caches.match(req, { ignoreSearch: true })) || (req.mode === 'navigate' ? await caches.match(scoped('./')) : undefined);
        if (hit) return hit;
        throw err;
      }
    })(),
  );
});

// ---------------------------------------------------------------- push

self.addEventListener('push', (event) => {
  event.waitUntil(onPush(event.data));
});

async function onPush(data) {
  let fields = null;
  try {
    fields = data ? data.json() : null;
  } catch {
    fields = null;
  }
  const view = C.fromPush(fields);
  if (!view) {
    // A push must show something; this one is not a login the app understands.
    await self.registration.showNotification('Countersign', { body: 'Open Countersign to see sign-in requests.', tag: 'countersign', icon: scoped('icons/icon-192.png') });
    return;
  }
  // Logins whose deadline passed are over: their notifications go.
  for (const n of await self.registration.getNotifications()) {
    const v = n.data && n.data.view;
    if (v && v.deadline < C.serverNow() && v.challengeId !== view.challengeId) n.close();
  }
  const locked = Boolean(await C.lock().catch(() => null));
  const { title, options } = C.notificationFor(view, { locked, icon: scoped('icons/icon-192.png'), badge: scoped('icons/badge-96.png') });
  await self.registration.showNotification(title, options);
  await tellPages({ type: 'countersign.push', view });
}

async function tellPages(message) {
  for (const c of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) c.postMessage(message);
}

// ---------------------------------------------------------------- notification actions

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const work = onNotificationClick(event.notification, event.action);
  try {
    event.waitUntil(work);
  } catch {
    // Only a browser-made event can be extended; one made by script (the tests) still runs its work.
  }
});

async function onNotificationClick(notification, action) {
  const view = notification.data && notification.data.view;
  if (!view || (action !== 'approve' && action !== 'reject')) return openApp();
  if (action === 'approve') {
    // Checked again here: the lock may have been turned on since the notification was shown.
    const locked = Boolean(await C.lock().catch(() => null));
    if (!C.approveFromNotification(view, locked)) return openApp();
  }
  try {
    const r = await C.answerFor(view, action, { via: 'phone' });
    await tellPages({ type: 'countersign.answered', challengeId: view.challengeId, state: r.state });
  } catch (err) {
    await self.registration.showNotification(`Could not ${action} ID ${view.displayCode}`, {
      body: C.explain(err, view),
      tag: view.challengeId,
      icon: scoped('icons/icon-192.png'),
      badge: scoped('icons/badge-96.png'),
      data: { view: null },
    });
  }
}

async function openApp() {
  const url = scoped('./#requests');
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const open = windows.find((w) => w.url.startsWith(self.registration.scope));
  if (open) {
    open.postMessage({ type: 'countersign.open' });
    return open.focus();
  }
  return self.clients.openWindow(url);
}

// ---------------------------------------------------------------- subscription renewal

self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(C.ensurePush(self.registration, event.newSubscription || null).catch(() => {}));
});
