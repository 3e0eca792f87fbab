import type { Config } from '../../src/config/schema.js';
import { spawn } from 'node:child_process';

export interface RadResult {
  code: 'Access-Accept' | 'Access-Reject' | 'Access-Challenge' | 'Accounting-Response' | 'timeout' | string;
  attributes: Record<string, string>;
  output: string;
}

/**
 * Debian's radclient as the NAS. `attrs` are radclient input lines
 * ("User-Name = alice"); Message-Authenticator is added unless told not to.
 * `type` is radclient's packet type: auth (Access-Request, the default), acct
 * (Accounting-Request) or status (Status-Server).
 */
export function radclient(
  port: number,
  secret: string,
  attrs: Record<string, string>,
  opts: { messageAuthenticator?: boolean; timeout?: number; retries?: number; host?: string; type?: 'auth' | 'acct' | 'status' } = {},
): Promise<RadResult> {
  const lines = Object.entries(attrs).map(([k, v]) => `${k} = ${v}`);
  if (opts.messageAuthenticator !== false) lines.push('Message-Authenticator = 0x00');
  const args = ['-x', '-t', String(opts.timeout ?? 3), '-r', String(opts.retries ?? 1), `${opts.host ?? '127.0.0.1'}:${port}`, opts.type ?? 'auth', secret];
  return new Promise((resolve, reject) => {
    const child = spawn('radclient', args);
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.stdin.end(`${lines.join(', ')}\n`);
    child.on('close', () => {
      const m = /Received ((?:Access|Accounting)-\w+) Id/.exec(output);
      const attributes: Record<string, string> = {};
      if (m) {
        const after = output.slice(output.indexOf(m[0]));
        for (const line of after.split('\n').slice(1)) {
          const a = /^\s+([\w-]+) = (.*)$/.exec(line);
          if (!a) break;
          attributes[a[1]!] = a[2]!.replace(/^"|"$/g, '');
        }
      }
      resolve({ code: m ? m[1]! : /No reply from server/.test(output) ? 'timeout' : 'error', attributes, output });
    });
  });
}

/** radclient input quoting for a string value. */
export const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

type RadiusClientConfig = Config['radius']['clients'][number];
/** A NAS as the config file declares it, with the defaults an operator gets. */
export const nasConfig = (secret: string, over: Partial<RadiusClientConfig> & Pick<RadiusClientConfig, 'name' | 'address'>): RadiusClientConfig => ({
  secret,
  mode: 'append',
  secondFactorOnly: false,
  requireMessageAuthenticator: true,
  appendDelimiter: ',',
  acceptAttributes: [],
  ...over,
});
