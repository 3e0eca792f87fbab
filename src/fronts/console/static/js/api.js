// The one way to the server: the console API (/console/api) and the admin API
// (/api/v1), with the CSRF token on changes, and how failures reach the page.

import { $, show } from './dom.js';
import { sentence } from './format.js';
import { session } from './state.js';

/**
 * Called when the admin API answers 401 while signed in: the session has
 * expired or its cookie is gone. main.js owns the sign-in and sets it.
 * @type {(err: ApiError) => void}
 */
let sessionEnded = () => {};
export const onSessionEnded = (fn) => {
  sessionEnded = fn;
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One call to the console or admin API. The session cookie goes along
 * (same origin); every change carries the CSRF token. A 401 from the
 * admin API means the session is gone: back to the sign-in.
 */
export async function api(method, path, body, { signal } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['x-csrf-token'] = session.csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(
      res.status,
      (data && data.error) || `http_${res.status}`,
      sentence((data && data.message) || `The server answered ${res.status} ${res.statusText}`),
    );
    if (res.status === 401 && path.startsWith('/api/') && session.user) sessionEnded(err);
    throw err;
  }
  return data;
}

export const enc = encodeURIComponent;
export const userPath = (name) => `/api/v1/users/${enc(name)}`;

/** Runs an action from a button: disables it meanwhile and shows any error. */
export async function act(button, fn) {
  if (button) button.disabled = true;
  hideError();
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return undefined; // handled by sessionEnded
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** The alert above the views: it stays until dismissed, or until the next action or page. */
export function showError(err) {
  const message = err instanceof ApiError ? err.message : sentence(err && err.message ? err.message : String(err));
  $('alert-text').textContent = message;
  show($('alert'));
}
export const hideError = () => show($('alert'), false);
$('alert-close').addEventListener('click', hideError);
