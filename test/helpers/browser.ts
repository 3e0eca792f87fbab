import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium; the tests never download a browser of their own. */
export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
/** Headless, with the flags this machine needs: its closed network refuses Chromium's background requests. */
export const launchChromium = (): Promise<Browser> =>
  chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });

/** A scripted browser for HTTP-level tests: a cookie jar and manual redirects. */
export class ScriptedBrowser {
  private cookies = new Map<string, string>();
  /** Extra headers on every request (a benchmark's X-Forwarded-For). */
  headers: Record<string, string> = {};

  private store(res: Response) {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1);
      if (/max-age=0|expires=Thu, 01 Jan 1970/i.test(c) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const res = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      redirect: 'manual',
      headers: {
        ...this.headers,
        cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: init.form ? new URLSearchParams(init.form).toString() : undefined,
    });
    this.store(res);
    return res;
  }

  /** Follows redirects until a page answers or `stopAt` matches the next location. */
  async follow(url: string, init: { method?: string; form?: Record<string, string> } = {}, stopAt?: (u: string) => boolean) {
    let res = await this.request(url, init);
    let at = url;
    for (let i = 0; i < 10 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, at).toString();
      if (stopAt?.(next)) return { url: next, res, body: '' };
      at = next;
      res = await this.request(next);
    }
    return { url: at, res, body: await res.text() };
  }
}

export const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';
export const formAction = (html: string, path: string) => new RegExp(`action="([^"]*${path})"`).exec(html)?.[1];
