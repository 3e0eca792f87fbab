// Notifications: the service worker, permission, the push subscription, and
// the words that say why requests do or do not reach this device when the app
// is closed.

import { C, state, changed, reload } from './state.js';

/** What kind of device this is, for the advice the app gives. */
export function device() {
  const ua = navigator.userAgent;
  const ios = /iPhone|iPad|iPod/.test(ua) || (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
  const standalone = matchMedia('(display-mode: standalone)').matches || navigator.standalone === true;
  return { ios, android: /Android/.test(ua), standalone };
}

/** A default name for this device: "Chrome on Android", "Safari on iPhone". */
export function defaultName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\/|FxiOS/.test(ua)
      ? 'Firefox'
      : /Chrome\/|CriOS/.test(ua)
        ? 'Chrome'
        : /Safari\//.test(ua)
          ? 'Safari'
          : 'Browser';
  const os = /iPhone/.test(ua)
    ? 'iPhone'
    : /iPad/.test(ua) || (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1)
      ? 'iPad'
      : /Android/.test(ua)
        ? 'Android'
        : /Windows/.test(ua)
          ? 'Windows'
          : /Mac OS X/.test(ua)
            ? 'Mac'
            : /CrOS/.test(ua)
              ? 'ChromeOS'
              : /Linux/.test(ua)
                ? 'Linux'
                : '';
  return os ? `${browser} on ${os}` : browser;
}

let registering = null;
/** Registers the worker (scope /app/) once and waits until it is active, at most 15 s. */
export function registerWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  registering ??= (async () => {
    try {
      await navigator.serviceWorker.register('sw.js', { scope: './' });
      let t;
      state.registration = await Promise.race([navigator.serviceWorker.ready, new Promise((r) => (t = setTimeout(() => r(null), 15_000)))]);
      clearTimeout(t);
    } catch {
      state.registration = null; // private windows of some browsers, or storage turned off
    }
    if (!state.registration) registering = null; // try again next time
    return state.registration;
  })();
  return registering;
}

/**
 * Why this browser cannot get pushes before anything is asked: null when it can try,
 * else a reason. Synchronous, so a click handler can still ask for permission at once
 * (Safari grants it only inside the user's gesture).
 */
export function blocker() {
  const d = device();
  if (d.ios && !d.standalone) return 'ios-not-installed';
  if (!('serviceWorker' in navigator) || !('PushManager' in self) || !('Notification' in self)) return d.ios ? 'ios-old' : 'unsupported';
  if (Notification.permission === 'denied') return 'denied';
  if (Notification.permission === 'default') return 'ask';
  return null;
}

/**
 * Finds out whether requests reach this device as notifications, asking for permission when
 * `ask` (call it straight from a click), and makes or renews the subscription. Updates
 * state.push: { state: 'on' } or { state: 'off', reason, detail? }.
 */
export async function refreshPush({ ask = false } = {}) {
  let why = blocker();
  if (why === 'ask' && ask) {
    const answer = await Notification.requestPermission();
    why = answer === 'granted' ? null : answer === 'denied' ? 'denied' : 'ask';
  }
  if (!why && !state.registration) why = 'unsupported';
  if (why) {
    state.push = { state: 'off', reason: why };
  } else {
    try {
      const r = state.enrolments.length ? await C.ensurePush(state.registration) : await C.subscription(state.registration);
      state.push = r.state === 'on' ? { state: 'on' } : { state: 'off', reason: r.state, detail: r.detail };
      if (r.state === 'on') await reload(); // the enrolments now know the subscription
    } catch (err) {
      state.push = { state: 'off', reason: 'failed', detail: C.explain(err) };
    }
  }
  changed();
  return state.push;
}

/** The subscription to send when enrolling, or why there is none (permission already asked). */
export async function subscriptionForEnrolment() {
  if (!state.registration) await registerWorker(); // a tap right after the page opened
  const why = blocker();
  if (why || !state.registration) {
    state.push = { state: 'off', reason: why || 'unsupported' };
    return null;
  }
  try {
    const r = await C.subscription(state.registration);
    state.push = r.state === 'on' ? { state: 'on' } : { state: 'off', reason: r.state, detail: r.detail };
    return r.state === 'on' ? r.sub : null;
  } catch (err) {
    state.push = { state: 'off', reason: 'failed', detail: C.explain(err) };
    return null;
  }
}

/**
 * What to tell the person: { text, action?: 'ask' | 'retry', short } — `short` for the
 * banner above the requests, `text` in Settings.
 */
export function pushAdvice(p = state.push) {
  const live = 'Until then, requests show only while Countersign is open.';
  if (p.state === 'checking') return { text: 'Checking whether notifications can reach this device…', short: '' };
  if (p.state === 'on') return { text: 'On: sign-in requests reach this device as notifications, also when Countersign is closed.', short: '' };
  switch (p.reason) {
    case 'ask':
      return {
        text: `Off: Countersign has not been allowed to show notifications, so requests show only while it is open. Turn them on so sign-ins reach you when it is closed.`,
        short: 'Notifications are off: requests show only while Countersign is open.',
        action: 'ask',
      };
    case 'denied':
      return {
        text: `Blocked: notifications for this site were turned off in the browser, so requests show only while Countersign is open. To allow them, open the site’s settings (the icon beside the address, or the app’s info on Android), allow Notifications, and come back.`,
        short: 'Notifications are blocked for this site: requests show only while Countersign is open.',
        action: 'retry',
      };
    case 'ios-not-installed':
      return {
        text: `On iPhone and iPad, notifications only reach apps on the Home Screen (iOS and iPadOS 16.4 or later). Tap Share, then Add to Home Screen, and use Countersign from there. ${live}`,
        short: 'Add Countersign to your Home Screen to get notifications (Share → Add to Home Screen).',
      };
    case 'ios-old':
      return {
        text: `Notifications need iOS or iPadOS 16.4 or later, with Countersign on the Home Screen. ${live}`,
        short: 'This iOS version cannot show web notifications: requests show only while Countersign is open.',
      };
    case 'unsupported':
      return {
        text: `This browser cannot receive web push notifications here (a private window, or a browser without web push). ${live}`,
        short: 'This browser cannot get notifications here: requests show only while Countersign is open.',
      };
    case 'no-server-key':
      return {
        text: `The server does not send web push notifications (no web push key is set up), so requests show only while Countersign is open. Ask your administrator to turn web push on.`,
        short: 'The server sends no web push: requests show only while Countersign is open.',
        action: 'retry',
      };
    default:
      return {
        text: `The browser’s push service could not be reached${p.detail ? ` (${p.detail})` : ''}, so requests show only while Countersign is open. Try again later, or on another network.`,
        short: 'No connection to the browser’s push service: requests show only while Countersign is open.',
        action: 'retry',
      };
  }
}
