import { parseArgs } from 'node:util';
import { AdminClient, CliError } from './client.js';

// Only what every client command needs is imported up front: a command's own heavier modules
// (qrcode, jose through the authenticator) load when it runs, and the server only for `serve`.
// bin/countersign.js may run this file from a transpiled copy, so the server module comes from
// the caller, which knows where the server's code really is.
export type LoadServer = () => Promise<typeof import('./serve.js')>;

const USAGE = `countersign — second-factor server

Server:
  countersign serve                          run the server (config: COUNTERSIGN_CONFIG or config/countersign.json, env overrides)

Users (talk to a running server: COUNTERSIGN_URL, COUNTERSIGN_ADMIN_TOKEN):
  countersign user add NAME [--password-stdin] [--display-name N] [--email E]
  countersign user list [--prefix P] [--limit N]
  countersign user show NAME
  countersign user delete NAME
  countersign user enable NAME... --otp|--push [--hotp]   (enabling OTP prints the otpauth:// URI and a QR code)
  countersign user enable --group G [--directory D] --otp|--push   every member of a directory group (nested)
  countersign user disable NAME... --otp|--push
  countersign user otp NAME [--hotp]         enrol OTP again with a new seed
  countersign user unlock NAME               clear an OTP lockout
  countersign user set-password NAME --password-stdin
  countersign user devices NAME              list enrolled devices
  countersign user device-rename NAME ID NEW_NAME
  countersign user device-revoke NAME ID

RADIUS clients (NASes):
  countersign radius-client add NAME --address CIDR --secret-stdin [--mode push-wait|append|challenge]
                                     [--second-factor-only] [--no-message-authenticator] [--delimiter C]
                                     [--upstream NAME]  (first factor by radius.upstreams NAME)
  countersign radius-client list
  countersign radius-client delete NAME

OpenID Connect relying parties:
  countersign oidc-client add CLIENT_ID --redirect-uri URI [--redirect-uri URI…] [--name N]
                                   [--no-factor allow|deny] [--public]    prints the client secret once
  countersign oidc-client list
  countersign oidc-client delete CLIENT_ID

Windows logon bridge:
  countersign bridge-credential add NAME [--workstation] [--workstations W1,PC-*]
                                             prints the API token once. --workstation: bound to one
                                             workstation (NAME, or the one name given); otherwise a fleet
                                             bound to the names or patterns given (default: any)
  countersign bridge-credential list
  countersign bridge-credential revoke NAME

Directories (Active Directory, LDAP, the local one):
  countersign directory list                 reachable or not, realms, last sync
  countersign directory sync NAME            records for every user now; users gone from the directory are marked removed

Invitations (an e-mailed, single-use link to the self-service portal, /account/):
  countersign invite NAME...                 one line per user as it is sent (sent to ADDRESS, or why not)
  countersign invite --group G [--directory D]   every member of a directory group (nested)

Push enrolment:
  countersign enrol NAME                     one-time enrolment link (10 minutes) as a URI and a QR code, and the web app's link

Reference authenticator (acts as a phone; keeps its key in --key-file, default countersign-device.json):
  countersign device enrol LINK [--name N] [--platform android|ios] [--push-token T] [--protected]
  countersign device pending
  countersign device approve ID [--number N] [--watch]     ID: the display ID on the login screen
  countersign device reject ID [--not-me]
  countersign device watch [--approve|--reject|--not-me] [--number N] [--once] [--interval MS] [--seconds S]
  countersign device set-token [TOKEN]       replace (or with none, drop) the push token

Logins:
  countersign challenge open USER [--password-stdin]
  countersign challenge show ID
  countersign challenge wait ID [--timeout S]
                                             waits until the login is decided or expires: exits 0 when
                                             approved, 1 when rejected, expired or cancelled, 2 when still
                                             pending after S seconds (no limit without --timeout)
  countersign challenge otp ID CODE
  countersign challenge approve|reject|cancel ID
  countersign otp verify USER CODE
  countersign audit [--user U] [--front F] [--outcome O] [--type T] [--stream security|activity] [--limit N]

Add --json to any client command for the raw answer.`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new CliError('--password-stdin reads the password from standard input; pipe it in');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

const out = (s: string) => process.stdout.write(`${s}\n`);

async function terminalQr(text: string): Promise<string> {
  const { default: QRCode } = await import('qrcode');
  return QRCode.toString(text, { type: 'terminal', small: true });
}

async function printEnrolment(name: string, otp: { uri: string }) {
  out(`${name}: ${otp.uri}`);
  out(await terminalQr(otp.uri));
}

const describeUser = (u: any) => {
  const at = (t: number) => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');
  const p = u.push;
  // The allowance comes with one user's view only (show, unlock), not with a list.
  const sent = p.limit === undefined ? '' : `${p.sent}/${p.limit} sent in this window`;
  const push = !p.enabled
    ? 'off'
    : p.lockedUntil
      ? `held back until ${at(p.lockedUntil)} (${p.lockReason ?? 'locked'})`
      : p.rateLimitedUntil
        ? `rate-limited until ${at(p.rateLimitedUntil)} (${sent})`
        : `on${sent ? ` (${sent})` : ''}`;
  return `${u.name}${u.displayName ? ` (${u.displayName})` : ''}  otp: ${u.otp.enabled ? (u.otp.lockedUntil ? 'locked' : 'on') : 'off'}  push: ${push}`;
};

/** `user show`: the one-line summary, then what a help desk asks about. */
const describeUserInFull = (u: any) => {
  const lines = [describeUser(u)];
  if (u.email) lines.push(`  email: ${u.email}`);
  if (u.role) lines.push(`  console: ${u.role}`);
  lines.push(`  password: ${u.hasPassword ? 'set' : 'none (first factor from elsewhere)'}`);
  if (u.otp.enrolled) {
    const o = u.otp;
    lines.push(`  otp: ${o.type ?? 'totp'} ${o.algorithm ?? 'SHA1'} ${o.digits ?? 6} digits, ${o.failures} wrong in a row${o.lockedUntil ? `, locked until ${new Date(o.lockedUntil).toISOString()}` : ''}`);
  }
  if (u.push.numberMatching !== undefined) lines.push(`  number matching: ${u.push.numberMatching ? 'on' : 'off'} for this user`);
  return lines.join('\n');
};

const describeChallenge = (c: any) =>
  `${c.id}  ${c.state}  user ${c.user}  ID ${c.displayCode}  factors ${c.factors.join(',') || '-'}${
    c.state === 'pending' ? `  ${c.secondsLeft}s left` : c.method ? `  via ${c.method}${c.reason ? ` (${c.reason})` : ''}` : ''
  }`;

export async function main(argv: string[], loadServer: LoadServer): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'password-stdin': { type: 'boolean' },
      'display-name': { type: 'string' },
      email: { type: 'string' },
      otp: { type: 'boolean' },
      push: { type: 'boolean' },
      hotp: { type: 'boolean' },
      group: { type: 'string' },
      directory: { type: 'string' },
      prefix: { type: 'string' },
      limit: { type: 'string' },
      timeout: { type: 'string' },
      user: { type: 'string' },
      front: { type: 'string' },
      outcome: { type: 'string' },
      type: { type: 'string' },
      stream: { type: 'string' },
      json: { type: 'boolean' },
      'key-file': { type: 'string' },
      address: { type: 'string' },
      mode: { type: 'string' },
      'secret-stdin': { type: 'boolean' },
      'second-factor-only': { type: 'boolean' },
      'no-message-authenticator': { type: 'boolean' },
      delimiter: { type: 'string' },
      upstream: { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'no-factor': { type: 'string' },
      public: { type: 'boolean' },
      workstation: { type: 'boolean' },
      workstations: { type: 'string' },
      name: { type: 'string' },
      platform: { type: 'string' },
      'push-token': { type: 'string' },
      protected: { type: 'boolean' },
      number: { type: 'string' },
      watch: { type: 'boolean' },
      'not-me': { type: 'boolean' },
      approve: { type: 'boolean' },
      reject: { type: 'boolean' },
      once: { type: 'boolean' },
      interval: { type: 'string' },
      seconds: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, ...args] = positionals;
  if (o.help || !cmd || cmd === 'help') {
    out(USAGE);
    return cmd || o.help ? 0 : 2;
  }
  if (cmd === 'serve') {
    await (await loadServer()).serve();
    return -1; // keep running
  }

  const show = (data: unknown, human: () => string) => out(o.json ? JSON.stringify(data, null, 2) : human());
  if (cmd === 'device') return deviceCommand(sub, args, o, show);

  const api = new AdminClient();
  const need = (n: number, what: string) => {
    if (args.length < n) throw new CliError(`missing ${what}; see countersign --help`);
  };
  const factor = () => {
    if (Boolean(o.otp) === Boolean(o.push)) throw new CliError('say which factor: --otp or --push');
    return o.otp ? 'otp' : 'push';
  };
  const enc = encodeURIComponent;

  if (cmd === 'user') {
    switch (sub) {
      case 'add': {
        need(1, 'NAME');
        const password = o['password-stdin'] ? await readStdin() : undefined;
        const u = await api.call('POST', '/users', { name: args[0], password, displayName: o['display-name'], email: o.email });
        show(u, () => `created ${describeUser(u)}`);
        return 0;
      }
      case 'list': {
        const q = new URLSearchParams({ limit: o.limit ?? '100', ...(o.prefix ? { prefix: o.prefix } : {}) });
        const page = await api.call('GET', `/users?${q}`);
        show(page, () => [...page.users.map(describeUser), `(${page.users.length} of ${page.total})`].join('\n'));
        return 0;
      }
      case 'show': {
        need(1, 'NAME');
        const u = await api.call('GET', `/users/${enc(args[0]!)}`);
        show(u, () => describeUserInFull(u));
        return 0;
      }
      case 'delete': {
        need(1, 'NAME');
        await api.call('DELETE', `/users/${enc(args[0]!)}`);
        show({ ok: true }, () => `deleted ${args[0]}`);
        return 0;
      }
      case 'set-password': {
        need(1, 'NAME');
        if (!o['password-stdin']) throw new CliError('pass the new password on standard input with --password-stdin');
        const u = await api.call('PATCH', `/users/${enc(args[0]!)}`, { password: await readStdin() });
        show(u, () => `password set for ${u.name}`);
        return 0;
      }
      case 'enable':
      case 'disable': {
        if (!o.group) need(1, 'NAME (or --group G)');
        else if (args.length) throw new CliError('give user names or --group, not both');
        const r = await api.call('POST', '/users/factors', {
          ...(o.group ? { group: o.group, ...(o.directory ? { directory: o.directory } : {}) } : { users: args }),
          factor: factor(),
          enabled: sub === 'enable',
          ...(o.hotp ? { otp: { type: 'hotp' } } : {}),
        });
        if (o.json) show(r, () => '');
        else {
          for (const x of r.results) {
            if (!x.ok) out(`${x.name}: ${x.error}`);
            else if (x.otp) await printEnrolment(x.name, x.otp);
          }
          out(`${sub}d ${factor()} for ${r.succeeded} user(s)${r.failed ? `, ${r.failed} failed` : ''}`);
        }
        return r.failed ? 1 : 0;
      }
      case 'otp': {
        need(1, 'NAME');
        const e = await api.call('POST', `/users/${enc(args[0]!)}/otp`, o.hotp ? { type: 'hotp' } : {});
        if (o.json) show(e, () => '');
        else await printEnrolment(args[0]!, e);
        return 0;
      }
      case 'devices': {
        need(1, 'NAME');
        const r = await api.call('GET', `/users/${enc(args[0]!)}/devices`);
        show(r, () =>
          r.devices.length
            ? r.devices
                .map((d: any) => `${d.id}  ${d.name}  ${d.platform}${d.push ? '' : d.stale ? ' (stale token)' : ' (poll only)'}${d.protected ? '  PIN' : ''}`)
                .join('\n')
            : `${args[0]} has no devices`,
        );
        return 0;
      }
      case 'device-rename': {
        need(3, 'NAME ID NEW_NAME');
        const d = await api.call('PATCH', `/users/${enc(args[0]!)}/devices/${enc(args[1]!)}`, { name: args[2] });
        show(d, () => `renamed ${d.id} to ${d.name}`);
        return 0;
      }
      case 'device-revoke': {
        need(2, 'NAME ID');
        await api.call('DELETE', `/users/${enc(args[0]!)}/devices/${enc(args[1]!)}`);
        show({ ok: true }, () => `revoked ${args[1]}`);
        return 0;
      }
      case 'unlock': {
        need(1, 'NAME');
        const u = await api.call('POST', `/users/${enc(args[0]!)}/unlock`);
        show(u, () => `unlocked ${describeUser(u)}`);
        return 0;
      }
    }
  }
  if (cmd === 'challenge') {
    need(1, sub === 'open' ? 'USER' : 'ID');
    const id = enc(args[0]!);
    let c: any;
    switch (sub) {
      case 'open':
        c = await api.call('POST', '/challenges', {
          user: args[0],
          ...(o['password-stdin'] ? { password: await readStdin() } : {}),
          origin: { client: 'countersign-cli' },
        });
        break;
      case 'show':
        c = await api.call('GET', `/challenges/${id}`);
        break;
      case 'wait': {
        const limit = o.timeout === undefined ? undefined : Number(o.timeout);
        if (limit !== undefined && !(limit >= 0)) throw new CliError('--timeout is a number of seconds');
        c = await waitForDecision(api, id, limit);
        show(c, () => describeChallenge(c));
        return c.state === 'approved' ? 0 : c.state === 'pending' ? WAIT_TIMED_OUT : 1;
      }
      case 'otp':
        need(2, 'CODE');
        c = await api.call('POST', `/challenges/${id}/otp`, { code: args[1] });
        break;
      case 'approve':
      case 'reject':
      case 'cancel':
        c = await api.call('POST', `/challenges/${id}/${sub}`, {});
        break;
      default:
        throw new CliError(`unknown command: challenge ${sub ?? ''}; see countersign --help`);
    }
    show(c, () => describeChallenge(c));
    return c.state === 'approved' || c.state === 'pending' ? 0 : 1;
  }
  if (cmd === 'radius-client') {
    switch (sub) {
      case 'add': {
        need(1, 'NAME');
        if (!o.address) throw new CliError('say which addresses may send requests: --address IP or CIDR');
        if (!o['secret-stdin']) throw new CliError('pass the shared secret on standard input with --secret-stdin');
        const c = await api.call('POST', '/radius-clients', {
          name: args[0],
          address: o.address,
          secret: await readStdin(),
          ...(o.mode ? { mode: o.mode } : {}),
          ...(o['second-factor-only'] ? { secondFactorOnly: true } : {}),
          ...(o['no-message-authenticator'] ? { requireMessageAuthenticator: false } : {}),
          ...(o.delimiter !== undefined ? { appendDelimiter: o.delimiter } : {}),
          ...(o.upstream !== undefined ? { upstream: o.upstream } : {}),
        });
        show(c, () => `added RADIUS client ${c.name} (${c.address}, ${c.mode}${c.secondFactorOnly ? ', second factor only' : ''}${c.upstream ? `, first factor by upstream ${c.upstream}` : ''})`);
        // One line on standard error (--json output stays one document): a client whose requests
        // are all dropped looks like a dead server from the NAS, so say so now.
        process.stderr.write(
          c.requireMessageAuthenticator === false
            ? `warning: ${c.name} may send requests without Message-Authenticator (BlastRADIUS, CVE-2024-3596): only for gear that cannot send one; keep its --address narrow\n`
            : `note: pam_radius (before 3.0), OpenVPN's radiusplugin and radsecproxy (before 1.11) send no Message-Authenticator; their requests are dropped unless the client is added with --no-message-authenticator\n`,
        );
        return 0;
      }
      case 'list': {
        const r = await api.call('GET', '/radius-clients');
        show(r, () =>
          r.clients
            .map(
              (c: any) =>
                `${c.name}  ${c.address}  ${c.mode}${c.secondFactorOnly ? ' second-factor-only' : ''}${c.upstream ? ` upstream:${c.upstream}` : ''}${c.requireMessageAuthenticator ? '' : ' NO-MESSAGE-AUTHENTICATOR'}  (${c.source})`,
            )
            .join('\n') || 'no RADIUS clients',
        );
        return 0;
      }
      case 'delete': {
        need(1, 'NAME');
        await api.call('DELETE', `/radius-clients/${enc(args[0]!)}`);
        show({ ok: true }, () => `deleted RADIUS client ${args[0]}`);
        return 0;
      }
    }
  }
  if (cmd === 'oidc-client') {
    switch (sub) {
      case 'add': {
        need(1, 'CLIENT_ID');
        const uris = (o['redirect-uri'] as string[] | undefined) ?? [];
        if (uris.length === 0) throw new CliError('give at least one --redirect-uri');
        const c = await api.call('POST', '/oidc-clients', {
          client_id: args[0],
          redirect_uris: uris,
          grant_types: ['authorization_code', 'refresh_token'],
          ...(o.name ? { client_name: o.name } : {}),
          ...(o['no-factor'] ? { countersign_no_factor: o['no-factor'] } : {}),
          ...(o.public ? { token_endpoint_auth_method: 'none' } : {}),
        });
        show(c, () => `registered ${c.client_id}${c.client_secret ? `\nclient secret (shown once): ${c.client_secret}` : ' (public client: use PKCE, no secret)'}`);
        return 0;
      }
      case 'list': {
        const r = await api.call('GET', '/oidc-clients');
        show(r, () => r.clients.map((c: any) => `${c.client_id}  ${(c.redirect_uris ?? []).join(' ')}  (${c.source})`).join('\n') || 'no OpenID clients');
        return 0;
      }
      case 'delete': {
        need(1, 'CLIENT_ID');
        await api.call('DELETE', `/oidc-clients/${enc(args[0]!)}`);
        show({ ok: true }, () => `deleted ${args[0]}`);
        return 0;
      }
    }
  }
  if (cmd === 'bridge-credential') {
    switch (sub) {
      case 'add': {
        need(1, 'NAME');
        const workstations = o.workstations?.split(',').map((w) => w.trim()).filter(Boolean);
        const c = await api.call('POST', '/bridge-credentials', { name: args[0], scope: o.workstation ? 'workstation' : 'fleet', workstations });
        show(c, () => `created ${c.scope} credential ${c.name} for ${c.workstations.join(', ')}\ntoken (shown once): ${c.token}`);
        return 0;
      }
      case 'list': {
        const r = await api.call('GET', '/bridge-credentials');
        show(r, () => r.credentials.map((c: any) => `${c.name}  ${c.scope}  ${c.workstations.join(',')}  since ${new Date(c.createdAt).toISOString()}`).join('\n') || 'no bridge credentials');
        return 0;
      }
      case 'revoke': {
        need(1, 'NAME');
        await api.call('DELETE', `/bridge-credentials/${enc(args[0]!)}`);
        show({ ok: true }, () => `revoked ${args[0]}`);
        return 0;
      }
    }
  }
  if (cmd === 'enrol') {
    if (!sub) throw new CliError('missing NAME; see countersign --help');
    const link = await api.call('POST', `/users/${enc(sub)}/enrolments`);
    if (o.json) show(link, () => '');
    else {
      out(`Scan with the authenticator app (valid until ${new Date(link.expiresAt).toISOString()}, once):`);
      out(link.uri);
      out(await terminalQr(link.uri));
      if (link.appUrl) out(`Or open the web app: ${link.appUrl}`);
    }
    return 0;
  }
  if (cmd === 'invite') {
    const names = [sub, ...args].filter((n): n is string => Boolean(n));
    if (o.group ? names.length : !names.length) throw new CliError('give user names or --group G (not both); see countersign --help');
    // A list goes in batches, so a long one shows progress; a group is resolved by the server.
    const batches = o.group ? [null] : Array.from({ length: Math.ceil(names.length / 20) }, (_, i) => names.slice(i * 20, i * 20 + 20));
    const results: any[] = [];
    for (const batch of batches) {
      const r = await api.call('POST', '/invitations', batch ? { users: batch } : { group: o.group, ...(o.directory ? { directory: o.directory } : {}) });
      for (const x of r.results) {
        results.push(x);
        if (!o.json) out(`${x.name}: ${x.ok ? `sent to ${x.email}` : x.error}${batch ? `  (${results.length}/${names.length})` : ''}`);
      }
    }
    const failed = results.filter((x) => !x.ok).length;
    if (o.json) show({ results, sent: results.length - failed, failed }, () => '');
    else out(`invited ${results.length - failed} user(s)${failed ? `, ${failed} failed` : ''}`);
    return failed ? 1 : 0;
  }
  if (cmd === 'otp' && sub === 'verify') {
    need(2, 'USER CODE');
    const r = await api.call('POST', '/otp/verify', { user: args[0], code: args[1] });
    show(r, () => 'code accepted');
    return 0;
  }
  if (cmd === 'directory') {
    switch (sub) {
      case 'list': {
        const r = await api.call('GET', '/directories');
        show(r, () =>
          r.directories
            .map((d: any) => {
              const last = d.lastSync ? `last sync ${new Date(d.lastSync.at).toISOString()}: ${d.lastSync.users} users, ${d.lastSync.removed.length} removed` : d.local ? '' : 'never synced';
              return `${d.name}  ${d.reachable ? 'reachable' : 'UNREACHABLE'}${d.detail ? ` (${d.detail})` : ''}${d.realms.length ? `  realms ${d.realms.join(',')}` : ''}  ${last}`;
            })
            .join('\n'),
        );
        return r.directories.every((d: any) => d.reachable) ? 0 : 1;
      }
      case 'sync': {
        need(1, 'NAME');
        const r = await api.call('POST', `/directories/${enc(args[0]!)}/sync`, {});
        show(r, () => `synchronised ${r.directory}: ${r.users} users (${r.inactive} not active), ${r.removed.length} removed${r.removed.length ? `: ${r.removed.join(', ')}` : ''}, in ${r.tookMs} ms`);
        return 0;
      }
      default:
        throw new CliError(`unknown command: directory ${sub ?? ''}; see countersign --help`);
    }
  }
  if (cmd === 'audit') {
    const q = new URLSearchParams({ limit: o.limit ?? '50' });
    for (const k of ['user', 'front', 'outcome', 'type', 'stream'] as const) if (o[k]) q.set(k, o[k]!);
    const r = await api.call('GET', `/audit?${q}`);
    show(r, () =>
      r.events
        .map(
          (e: any) =>
            `${new Date(e.at).toISOString()}  ${e.type}  ${e.user ?? '-'}  ${e.front ?? ''} ${e.client ?? ''} ${e.ip ?? ''}  ${
              e.outcome ?? e.detail?.action ?? ''
            }${e.durationMs !== undefined ? ` ${e.durationMs}ms` : ''}`,
        )
        .join('\n'),
    );
    return 0;
  }
  throw new CliError(`unknown command: ${[cmd, sub].filter(Boolean).join(' ')}; see countersign --help`);
}

/** `challenge wait` gave up at its --timeout with the login still pending. */
const WAIT_TIMED_OUT = 2;
/** One long-poll: within the server's 60 s limit and under common proxy idle timeouts. */
const POLL_SECONDS = 25;

/**
 * Long-polls until the challenge leaves `pending` (the server answers `expired` itself at the
 * deadline) or `limitSeconds` pass; the challenge as last seen.
 */
async function waitForDecision(api: AdminClient, id: string, limitSeconds?: number): Promise<any> {
  const until = limitSeconds === undefined ? Infinity : Date.now() + limitSeconds * 1000;
  for (;;) {
    const seconds = Math.ceil(Math.min(POLL_SECONDS, Math.max(0, until - Date.now()) / 1000) * 10) / 10;
    const asked = Date.now();
    const c = await api.call('GET', `/challenges/${id}/wait?timeout=${seconds}`);
    if (c.state !== 'pending' || Date.now() >= until) return c;
    // Something between us and the server answered before the wait was over: no busy loop.
    if (Date.now() - asked < seconds * 500) await new Promise((r) => setTimeout(r, Math.min(250, until - Date.now())));
  }
}

type Options = Record<string, string | string[] | boolean | undefined>;

const describePending = (p: any) =>
  `ID ${p.displayCode}  ${p.user}  ${p.client ?? '-'} from ${p.ip ?? '-'}  ${Math.max(0, Math.ceil((p.deadline - Date.now()) / 1000))}s left${
    p.numberMatching ? '  (type the number from the login screen)' : ''
  }${p.bindingMessage ? `  “${p.bindingMessage}”` : ''}`;

/** The reference authenticator: `countersign device …` acts as a phone. */
async function deviceCommand(sub: string | undefined, args: string[], o: Options, show: (d: unknown, h: () => string) => void) {
  const { Authenticator } = await import('./authenticator.js');
  const keyFile = (o['key-file'] as string | undefined) ?? 'countersign-device.json';
  const answerExtra = () => ({
    ...(o.number ? { number: String(o.number) } : {}),
    ...(o.watch ? { via: 'watch' as const } : {}),
  });
  switch (sub) {
    case 'enrol': {
      if (!args[0]) throw new CliError('missing LINK (countersign://enrol?…); see countersign --help');
      const platform = (o.platform as string | undefined) ?? 'android';
      if (platform !== 'android' && platform !== 'ios') throw new CliError('--platform is android or ios');
      const a = await Authenticator.enrol(args[0], {
        name: o.name as string | undefined,
        platform,
        pushToken: o['push-token'] as string | undefined,
        protected: Boolean(o.protected),
      });
      a.save(keyFile);
      show({ deviceId: a.file.deviceId, user: a.file.user, keyFile }, () => `enrolled device ${a.file.deviceId} for ${a.file.user}; key saved in ${keyFile}`);
      return 0;
    }
    case 'pending': {
      const pending = await Authenticator.load(keyFile).pending();
      show({ pending }, () => (pending.length ? pending.map(describePending).join('\n') : 'no pending logins'));
      return 0;
    }
    case 'approve':
    case 'reject': {
      if (!args[0]) throw new CliError('missing ID (the display ID on the login screen)');
      const a = Authenticator.load(keyFile);
      const p = await a.findByDisplayCode(args[0]);
      const r = await a.answer(p.challengeId, sub, sub === 'reject' ? { ...(o['not-me'] ? { reason: 'not-me' } : {}) } : answerExtra());
      show(r, () => `${sub === 'approve' ? 'approved' : 'rejected'} login ID ${p.displayCode} (${r.state})`);
      return 0;
    }
    case 'set-token': {
      await Authenticator.load(keyFile).setPushToken(args[0]);
      show({ ok: true }, () => (args[0] ? 'push token replaced' : 'push token removed (poll only)'));
      return 0;
    }
    case 'watch': {
      const a = Authenticator.load(keyFile);
      const decision = o.reject || o['not-me'] ? 'reject' : o.approve ? 'approve' : null;
      const interval = Number(o.interval ?? 500);
      const until = o.seconds ? Date.now() + Number(o.seconds) * 1000 : Infinity;
      const seen = new Set<string>();
      out(`watching for logins of ${a.file.user}${decision ? ` (answering ${decision})` : ''}…`);
      while (Date.now() < until) {
        for (const p of await a.pending()) {
          if (seen.has(p.challengeId)) continue;
          seen.add(p.challengeId);
          out(describePending(p));
          if (!decision) continue;
          const r = await a
            .answer(p.challengeId, decision, decision === 'reject' ? (o['not-me'] ? { reason: 'not-me' } : {}) : answerExtra())
            .catch((err: Error) => ({ state: `refused: ${err.message}` }));
          out(`  ${decision === 'approve' ? 'approved' : 'rejected'}: ${r.state}`);
          if (o.once) return 0;
        }
        await new Promise((r) => setTimeout(r, interval));
      }
      return o.once ? 1 : 0;
    }
    default:
      throw new CliError(`unknown command: device ${sub ?? ''}; see countersign --help`);
  }
}

export function run(loadServer: LoadServer): void {
  main(process.argv.slice(2), loadServer).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err) => {
      // ConfigError and StartError by name: importing their classes here would load the server.
      if (err instanceof CliError || ['ConfigError', 'StartError'].includes((err as Error).name)) process.stderr.write(`countersign: ${err.message}\n`);
      else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) process.stderr.write(`countersign: ${(err as Error).message}\n`);
      else process.stderr.write(`countersign: ${(err as Error).stack ?? err}\n`);
      process.exitCode = process.exitCode || 1;
    },
  );
}
