// What the page knows right now; the modules read and update it. The lasting
// state (enrolments, keys, the lock) is in IndexedDB (core.js).

export const C = self.Countersign;

export const state = {
  /** Enrolments on this browser, oldest first. */
  enrolments: [],
  /** The app lock (PIN or passkey), or null. */
  lock: null,
  /** The service worker registration, or null where there is none. */
  registration: null,
  /** Why notifications do or do not reach this device: { state, reason?, detail? } (push.js). */
  push: { state: 'checking' },
  /** The browser's install prompt, when it offered one. */
  installPrompt: null,
};

export async function reload() {
  state.enrolments = await C.enrolments();
  state.lock = await C.lock();
}

/** Every module that shows state registers here; main.js calls them after a change. */
const renderers = new Set();
export const onChange = (fn) => renderers.add(fn);
export const changed = () => {
  for (const fn of renderers) fn();
};
