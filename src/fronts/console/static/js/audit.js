// The audit page: the latest events as a table, and the last hour of logins
// as three small SVG charts, each with a text summary for screen readers.

import { $, badge, clear, el, show, svg } from './dom.js';
import { fmtDuration, fmtTime, num, plural } from './format.js';
import { api, ApiError, enc, showError } from './api.js';

let auditSeq = 0;

function auditFilters() {
  const q = new URLSearchParams();
  const user = $('af-user').value.trim();
  const front = $('af-front').value.trim();
  const outcome = $('af-outcome').value;
  if (user) q.set('user', user);
  if (front) q.set('front', front);
  if (outcome) q.set('outcome', outcome);
  return q;
}

export async function loadAudit() {
  const seq = ++auditSeq;
  const base = auditFilters();
  const tableQ = new URLSearchParams(base);
  tableQ.set('limit', '200');
  const hourAgo = Date.now() - 3_600_000;
  const chartQ = new URLSearchParams(base);
  chartQ.set('since', String(hourAgo));
  chartQ.set('limit', '1000');
  $('audit-table').setAttribute('aria-busy', 'true');
  try {
    const [t, c] = await Promise.all([api('GET', `/api/v1/audit?${tableQ}`), api('GET', `/api/v1/audit?${chartQ}`)]);
    if (seq !== auditSeq) return;
    renderAuditTable(t.events);
    const logins = c.events.filter((e) => e.type === 'login');
    drawRate(logins, hourAgo);
    drawOutcomes(logins);
    drawLatency(logins.filter((e) => e.outcome === 'approved' && typeof e.durationMs === 'number'));
    const note = $('chart-note');
    note.textContent = c.events.length >= 1000 ? 'The charts show the latest 1,000 events of the last hour only (the API returns at most 1,000 at a time).' : '';
    show(note, c.events.length >= 1000);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    showError(err);
  } finally {
    if (seq === auditSeq) $('audit-table').removeAttribute('aria-busy');
  }
}

$('audit-filters').addEventListener('submit', (e) => {
  e.preventDefault();
  loadAudit();
});
$('af-reset').addEventListener('click', () => {
  $('af-user').value = '';
  $('af-front').value = '';
  $('af-outcome').value = '';
  loadAudit();
});

const outcomeKind = (o) => ({ approved: 'ok', rejected: 'bad', expired: 'warn', cancelled: 'off' })[o] || 'off';

function renderAuditTable(events) {
  const tbody = $('audit-table').tBodies[0];
  clear(tbody);
  for (const e of events) {
    const detailText = [
      ...(e.detail
        ? Object.entries(e.detail)
            .filter(([k]) => k !== 'actorRole')
            .map(([k, v]) => (k === 'action' ? String(v) : `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`))
        : []),
      e.actor ? `by ${e.actor}${e.detail && e.detail.actorRole ? ` (${e.detail.actorRole})` : ''}` : '',
    ]
      .filter(Boolean)
      .join(' · ');
    tbody.append(
      el(
        'tr',
        {},
        el('td', { class: 'nowrap', text: fmtTime(e.at), title: new Date(e.at).toISOString() }),
        el('td', { text: e.type }),
        el('td', { class: 'name' }, e.user ? el('a', { href: `#/users/${enc(e.user)}`, text: e.user }) : '—'),
        el('td', { text: e.front || '—' }),
        el('td', { class: 'nowrap', text: e.client || '—' }),
        el('td', { class: 'mono', text: e.ip || '—' }),
        el('td', { text: e.method || '—' }),
        el('td', {}, e.outcome ? badge(e.outcome, outcomeKind(e.outcome)) : '—'),
        el('td', { class: 'num', text: e.durationMs !== undefined ? fmtDuration(e.durationMs) : '—' }),
        el('td', { class: 'detail', text: detailText || '—' }),
      ),
    );
  }
  show($('audit-empty'), events.length === 0);
  $('audit-count').textContent = `${plural(events.length, 'event')}${events.length >= 200 ? ' (the latest 200)' : ''}`;
}

// ── charts ──

/** A chart's frame: an <svg role="img"> labelled by the card heading and a text summary. */
function chartFrame(hostId, headingId, width, height, summary) {
  const host = $(hostId);
  clear(host);
  const descId = `${hostId}-desc`;
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-labelledby': headingId,
    'aria-describedby': descId,
    preserveAspectRatio: 'xMidYMid meet',
  });
  host.append(root, el('p', { id: descId, class: 'chart-summary', text: summary }));
  return root;
}

function niceMax(v) {
  if (v <= 4) return Math.max(1, v);
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawRate(logins, start) {
  const W = 360;
  const H = 170;
  const pad = { l: 30, r: 8, t: 10, b: 24 };
  const buckets = Array.from({ length: 60 }, () => ({ ok: 0, bad: 0 }));
  for (const e of logins) {
    const i = Math.floor((e.at - start) / 60_000);
    if (i < 0 || i > 59) continue;
    if (e.outcome === 'approved') buckets[i].ok++;
    else buckets[i].bad++;
  }
  const totals = buckets.map((b) => b.ok + b.bad);
  const sum = totals.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...totals);
  const peakAt = totals.indexOf(peak);
  const summary = sum
    ? `${plural(sum, 'login')} in the last hour; at most ${num(peak)} in one minute (${fmtTime(start + peakAt * 60_000).slice(0, 5)}).`
    : 'No logins in the last hour.';
  const root = chartFrame('chart-rate', 'chart-rate-h', W, H, summary);
  const max = niceMax(peak);
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const y = (v) => pad.t + ih - (ih * v) / max;
  for (const v of [0, max / 2, max]) {
    root.append(svg('line', { class: 'grid-line', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
    root.append(svg('text', { class: 'axis', x: pad.l - 5, y: y(v) + 3.5, 'text-anchor': 'end', text: Number.isInteger(v) ? v : v.toFixed(1) }));
  }
  const bw = iw / 60;
  buckets.forEach((b, i) => {
    const x = pad.l + i * bw + 0.6;
    const w = Math.max(1, bw - 1.2);
    const t = b.ok + b.bad;
    if (!t) return;
    const label = `${fmtTime(start + i * 60_000).slice(0, 5)}: ${b.ok} approved, ${b.bad} not approved`;
    const g = svg('g', {}, svg('title', { text: label }));
    if (b.ok) g.append(svg('rect', { class: 'bar-ok', x, width: w, y: y(b.ok), height: y(0) - y(b.ok) }));
    if (b.bad) g.append(svg('rect', { class: 'bar-bad', x, width: w, y: y(t), height: y(b.ok) - y(t) }));
    root.append(g);
  });
  root.append(svg('line', { class: 'axis-line', x1: pad.l, x2: W - pad.r, y1: y(0), y2: y(0) }));
  for (const [i, label, anchor] of [[0, '−60 min', 'start'], [30, '−30 min', 'middle'], [60, 'now', 'end']]) {
    root.append(svg('text', { class: 'axis', x: pad.l + i * bw, y: H - 6, 'text-anchor': anchor, text: label }));
  }
  if (!sum) root.append(svg('text', { class: 'empty-text', x: pad.l + iw / 2, y: pad.t + ih / 2, 'text-anchor': 'middle', text: 'No logins in the last hour' }));
}

function drawOutcomes(logins) {
  const order = ['approved', 'rejected', 'expired', 'cancelled'];
  const counts = new Map(order.map((o) => [o, 0]));
  for (const e of logins) counts.set(e.outcome || 'unknown', (counts.get(e.outcome || 'unknown') || 0) + 1);
  const rows = [...counts].filter(([o, n]) => order.includes(o) || n > 0);
  const total = logins.length;
  const summary = total ? rows.map(([o, n]) => `${o} ${num(n)} (${Math.round((100 * n) / total)}%)`).join(', ') + '.' : 'No logins in the last hour.';
  const W = 360;
  const H = 170;
  const rowH = Math.min(38, (H - 16) / Math.max(1, rows.length));
  const root = chartFrame('chart-outcomes', 'chart-outcomes-h', W, H, summary);
  const lx = 78;
  const rw = W - lx - 86;
  const max = Math.max(1, ...rows.map(([, n]) => n));
  rows.forEach(([o, n], i) => {
    const mid = 8 + i * rowH + rowH / 2; // the row's vertical centre
    const bh = Math.min(20, rowH - 10);
    root.append(svg('text', { class: 'label', x: lx - 8, y: mid + 4, 'text-anchor': 'end', text: o }));
    root.append(svg('rect', { class: 'bar-track', x: lx, y: mid - bh / 2, width: rw, height: bh, rx: 3 }));
    if (n) {
      root.append(
        svg('rect', { class: `bar-${outcomeKind(o)}`, x: lx, y: mid - bh / 2, width: Math.max(2, (rw * n) / max), height: bh, rx: 3 }, svg('title', { text: `${o}: ${n}` })),
      );
    }
    root.append(svg('text', { class: 'value', x: lx + rw + 8, y: mid + 4, text: total ? `${num(n)} · ${Math.round((100 * n) / total)}%` : '0' }));
  });
}

function drawLatency(approved) {
  const edges = [0, 1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000, Infinity];
  const labels = ['<1s', '1–2s', '2–5s', '5–10s', '10–20s', '20–30s', '30–60s', '>60s'];
  const counts = labels.map(() => 0);
  for (const e of approved) {
    const i = edges.findIndex((edge, k) => e.durationMs >= edge && e.durationMs < edges[k + 1]);
    if (i >= 0) counts[i]++;
  }
  const sorted = approved.map((e) => e.durationMs).sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  const summary = sorted.length
    ? `${plural(sorted.length, 'approved login')}: median ${fmtDuration(q(0.5))}, 90th percentile ${fmtDuration(q(0.9))}.`
    : 'No approved logins in the last hour.';
  const W = 360;
  const H = 170;
  const pad = { l: 30, r: 8, t: 10, b: 24 };
  const root = chartFrame('chart-latency', 'chart-latency-h', W, H, summary);
  const max = niceMax(Math.max(0, ...counts));
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const y = (v) => pad.t + ih - (ih * v) / max;
  for (const v of [0, max / 2, max]) {
    root.append(svg('line', { class: 'grid-line', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
    root.append(svg('text', { class: 'axis', x: pad.l - 5, y: y(v) + 3.5, 'text-anchor': 'end', text: Number.isInteger(v) ? v : v.toFixed(1) }));
  }
  const bw = iw / labels.length;
  labels.forEach((label, i) => {
    const x = pad.l + i * bw;
    if (counts[i]) {
      root.append(svg('rect', { class: 'bar-accent', x: x + 4, width: bw - 8, y: y(counts[i]), height: y(0) - y(counts[i]), rx: 2 }, svg('title', { text: `${label}: ${counts[i]}` })));
    }
    root.append(svg('text', { class: 'axis', x: x + bw / 2, y: H - 6, 'text-anchor': 'middle', text: label }));
  });
  root.append(svg('line', { class: 'axis-line', x1: pad.l, x2: W - pad.r, y1: y(0), y2: y(0) }));
  if (!sorted.length) root.append(svg('text', { class: 'empty-text', x: pad.l + iw / 2, y: pad.t + ih / 2, 'text-anchor': 'middle', text: 'No approved logins' }));
}
