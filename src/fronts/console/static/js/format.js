// Text for people: numbers, times and durations in the browser's locale.

export const cap = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : s);
export const sentence = (s) => { const t = cap(String(s ?? '').trim()); return t && !/[.!?…]$/.test(t) ? `${t}.` : t; };
const nf = new Intl.NumberFormat();
export const num = (n) => nf.format(n);
export const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
export const fmtTime = (ms) => (ms ? timeFmt.format(new Date(ms)) : '—');
export const fmtDateTime = (ms) => (ms ? dateTimeFmt.format(new Date(ms)) : '—');
export const fmtAgo = (ms) => {
  if (!ms) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return fmtDateTime(ms);
};
export const fmtDuration = (ms) => {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
};
export const factorName = (f) => (f === 'otp' ? 'OTP' : f === 'push' ? 'push' : f);
/** A directory account's state, for people ("must_change_password" → "must change password"). */
export const accountState = (s) => String(s || 'active').replace(/_/g, ' ');
