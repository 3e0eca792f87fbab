// Element helpers, the toast and the two dialogs. Every piece of data reaches
// the page through textContent or DOM attributes, never through innerHTML:
// el() and svg() are the only ways the modules build markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

/** el('td', {class: 'x', text: 'y'}, child, …) — text always through textContent. */
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

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') node.textContent = String(v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

export const clear = (node) => node.replaceChildren();
export const show = (node, on = true) => { node.hidden = !on; };

export function badge(text, kind = '') {
  return el('span', { class: `badge ${kind}`.trim(), text });
}

let toastTimer;
export function toast(message) {
  const t = $('toast');
  t.textContent = message;
  t.classList.add('visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('visible'), 5000);
}

export function confirmDialog({ title, message, confirmLabel, danger = false }) {
  const d = $('confirm');
  const opener = document.activeElement;
  $('confirm-h').textContent = title;
  $('confirm-text').textContent = message;
  const ok = $('confirm-ok');
  ok.textContent = confirmLabel;
  ok.className = `btn ${danger ? 'danger' : 'primary'}`;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener(
      'close',
      () => {
        resolve(d.returnValue === 'ok');
        if (opener && opener.isConnected) opener.focus();
      },
      { once: true },
    );
    d.showModal();
    $('confirm-cancel').focus();
  });
}

export function promptRename(current) {
  const d = $('rename');
  const opener = document.activeElement;
  const input = $('rename-input');
  input.value = current;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener(
      'close',
      () => {
        const v = input.value.trim();
        resolve(d.returnValue === 'ok' && v ? v : null);
        if (opener && opener.isConnected) opener.focus();
      },
      { once: true },
    );
    d.showModal();
    input.select();
  });
}
