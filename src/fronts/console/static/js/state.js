// What the modules share: who is signed in, and which view is on screen.
// Only main.js changes them.

/** @type {{user: string|null, role: string|null, csrf: string|null}} */
export const session = { user: null, role: null, csrf: null };

export const isAdmin = () => session.role === 'admin';

/** The view on screen: 'signin', 'users', 'user', 'directories', 'live', 'clients' or 'audit'. */
export const current = { view: null };
