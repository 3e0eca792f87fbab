// Element helpers, announcements and the confirmation dialog. Every piece of
// data reaches the page through textContent or DOM attributes, never through
// innerHTML: el() is the only way the modules build markup.

export const $ = (id) => document.getElementById(id);

/** el('p', { class: 'x', text: 'y' }, child, …) — text always through textContent. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const show = (node, on = true) => {
  node.hidden = !on;
};

/** Tells screen readers at once (new requests, outcomes). */
export function announce(text) {
  const a = $('announce');
  a.textContent = '';
  // A fresh node each time, so the same words twice are read twice.
  setTimeout(() => (a.textContent = text), 50);
}

let toastTimer;
export function toast(message) {
  const t = $('toast');
  t.textContent = message;
  t.classList.add('visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('visible'), 5000);
}

/** Shows an error under a field and ties it to the field for screen readers. */
export function fieldError(node, message) {
  node.textContent = message || '';
  show(node, Boolean(message));
}

export function confirmDialog({ title, message, confirmLabel, danger = true }) {
  const d = $('confirm');
  const opener = document.activeElement;
  $('confirm-h').textContent = title;
  $('confirm-text').textContent = message;
  const ok = $('confirm-ok');
  ok.textContent = confirmLabel;
  ok.className = danger ? 'btn danger' : 'btn primary';
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener(
      'close',
      () => {
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve(d.returnValue === 'ok');
      },
      { once: true },
    );
    d.showModal();
    $('confirm-cancel').focus();
  });
}

/** "1:05" */
export const clock = (ms) => {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
/** "14:05:12" today, "Mon 3 Jun, 14:05" otherwise. */
export function when(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '';
  if (sameDay(d, new Date())) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toLocaleString([], { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
}

/** The host a person recognises in a server URL. */
export const hostOf = (url) => {
  try {
    return new URL(url).host;
  } catch {
    return String(url || '');
  }
};
