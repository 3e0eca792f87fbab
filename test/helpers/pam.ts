import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand } from './peers.js';

/**
 * Linux-PAM with Debian's pam_radius_auth as the NAS, driven by pamtester: a PAM service file
 * with a unique name in /etc/pam.d (removed again) whose auth step is pam_radius_auth with a
 * config file in a temp dir. Needs root (or a writable /etc/pam.d).
 */

const MODULE_DIRS = ['/lib/x86_64-linux-gnu/security', '/usr/lib/x86_64-linux-gnu/security', '/lib/aarch64-linux-gnu/security', '/usr/lib/aarch64-linux-gnu/security', '/lib/security', '/usr/lib/security'];
export const PAM_RADIUS = MODULE_DIRS.map((d) => join(d, 'pam_radius_auth.so')).find((p) => existsSync(p));

/** What is missing for the PAM tests, or null. */
export function pamMissing(): string | null {
  if (!hasCommand('pamtester')) return 'pamtester';
  if (!PAM_RADIUS) return 'pam_radius_auth.so (libpam-radius-auth)';
  try {
    accessSync('/etc/pam.d', constants.W_OK);
  } catch {
    return 'a writable /etc/pam.d (run as root)';
  }
  return null;
}

export interface PamService {
  /** The service name pamtester is given (the file's name in /etc/pam.d). */
  name: string;
  remove(): void;
}

/**
 * A PAM service whose only auth step is pam_radius_auth against one RADIUS server:
 * `127.0.0.1:port secret timeout [sourceIp]` in its own pam_radius.conf (mode 0600, as the
 * module's documentation asks).
 */
export function pamRadiusService(o: { port: number; secret: string; sourceIp?: string; timeoutSeconds?: number }): PamService {
  const dir = mkdtempSync(join(tmpdir(), 'cs-pam-'));
  const conf = join(dir, 'pam_radius.conf');
  writeFileSync(conf, `127.0.0.1:${o.port} ${o.secret} ${o.timeoutSeconds ?? 3}${o.sourceIp ? ` ${o.sourceIp}` : ''}\n`, { mode: 0o600 });
  const name = `countersign-test-${randomBytes(6).toString('hex')}`;
  const file = join('/etc/pam.d', name);
  writeFileSync(file, `# Countersign test service; removed by the test that wrote it.\nauth required ${PAM_RADIUS} conf=${conf} client_id=${name}\naccount required pam_permit.so\n`, { mode: 0o644 });
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    rmSync(file, { force: true });
    rmSync(dir, { recursive: true, force: true });
    process.off('exit', remove);
  };
  process.once('exit', remove);
  return { name, remove };
}

export interface PamResult {
  /** pamtester's exit status (0: authenticated), or null when it was killed at the timeout. */
  code: number | null;
  output: string;
}

/** `pamtester -v <service> <user> authenticate`, the conversation's answers on stdin, one a line. */
export function pamtester(service: string, user: string, answers: string[], timeoutMs = 20_000): Promise<PamResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('pamtester', ['-v', service, user, 'authenticate'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(answers.map((a) => `${a}\n`).join(''));
    child.on('close', (code) => resolve({ code, output }));
  });
}
