// Builds the Dockerfile's stages without Docker, the way the Dockerfile says: each stage gets
// a directory standing for its filesystem, and FROM, WORKDIR, ENV, COPY (from the build
// context or --from an earlier stage), RUN, USER, VOLUME, EXPOSE, HEALTHCHECK, ENTRYPOINT and
// CMD are carried out or recorded in order. RUN commands run on this machine with the host's
// Node (the base image's is recorded, not fetched), with the image's own absolute paths
// (WORKDIR, VOLUME, paths in ENV) mapped into the stage's directory. A Dockerfile whose
// commands fail, or that copies what is not there, fails here too.
//
//   node scripts/image-stages.mjs [--out DIR]     builds and prints the runtime stage as JSON
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The official node images' unprivileged user. */
const USERS = { root: 0, node: 1000 };

/** Dockerfile lines, continuations joined and comments dropped. */
export function parseDockerfile(text) {
  const out = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && !cur) continue;
    cur += line.replace(/\\\s*$/, ' ');
    if (/\\\s*$/.test(line)) continue;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(cur.trim());
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    cur = '';
  }
  return out;
}

const jsonOrShell = (args) => (args.startsWith('[') ? JSON.parse(args) : ['/bin/sh', '-c', args]);
const envPairs = (args) => {
  const pairs = {};
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) pairs[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  return pairs;
};

export function buildImage({ dockerfile, context, out = mkdtempSync(join(tmpdir(), 'cs-image-')), log = () => {} }) {
  mkdirSync(out, { recursive: true });
  chmodSync(out, 0o755); // the image's user must reach its files
  const steps = parseDockerfile(readFileSync(dockerfile, 'utf8'));
  // Absolute paths that belong to the image rather than the host: mapped into the stage.
  const owned = new Set();
  for (const s of steps) {
    if (s.op === 'WORKDIR') owned.add(s.args);
    if (s.op === 'VOLUME') for (const v of s.args.startsWith('[') ? JSON.parse(s.args) : s.args.split(/\s+/)) owned.add(v);
    if (s.op === 'ENV') for (const v of Object.values(envPairs(s.args))) if (v.startsWith('/') && !existsSync(v)) owned.add(v);
  }
  const stages = [];
  let stage;
  for (const { op, args } of steps) {
    if (op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stage = { name: m[2] ?? String(stages.length), base: m[1], root: join(out, `stage-${stages.length}`), workdir: '/', env: {}, user: 0, expose: [], volumes: [] };
      mkdirSync(stage.root, { recursive: true, mode: 0o755 });
      stages.push(stage);
      continue;
    }
    if (!stage) throw new Error(`${op} before FROM`);
    const map = (p) => {
      for (const o of owned) if (p === o || p.startsWith(`${o}/`)) return join(stage.root, p);
      return p;
    };
    const inImage = (p) => join(stage.root, posix.isAbsolute(p) ? p : posix.join(stage.workdir, p));
    const mapWords = (cmd) => cmd.replace(/(^|[\s=:'"])(\/[^\s'";&|]+)/g, (all, pre, p) => `${pre}${map(p)}`);
    log(`${stage.name}: ${op} ${args}`);
    switch (op) {
      case 'WORKDIR':
        stage.workdir = posix.isAbsolute(args) ? args : posix.join(stage.workdir, args);
        mkdirSync(inImage('.'), { recursive: true, mode: 0o755 });
        break;
      case 'ENV':
        Object.assign(stage.env, envPairs(args));
        break;
      case 'COPY': {
        const words = args.split(/\s+/);
        const from = words[0].startsWith('--from=') ? stages.find((s) => s.name === words.shift().slice(7)) : null;
        if (from === undefined) throw new Error(`COPY --from names no earlier stage: ${args}`);
        const dest = words.pop();
        for (const src of words) {
          const source = from ? join(from.root, posix.isAbsolute(src) ? src : posix.join(from.workdir, src)) : join(context, src);
          if (!existsSync(source)) throw new Error(`COPY: ${src} does not exist${from ? ` in stage ${from.name}` : ' in the build context'}`);
          const target = inImage(dest);
          const into = dest.endsWith('/') || words.length > 1 ? join(target, posix.basename(src)) : target;
          mkdirSync(dirname(into), { recursive: true, mode: 0o755 });
          cpSync(source, into, { recursive: true });
        }
        break;
      }
      case 'RUN': {
        const env = { ...process.env, ...Object.fromEntries(Object.entries(stage.env).map(([k, v]) => [k, mapWords(v)])) };
        const r = spawnSync('/bin/sh', ['-c', mapWords(args)], { cwd: inImage('.'), env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`RUN failed (${r.status}) in stage ${stage.name}: ${args}\n${r.stdout}${r.stderr}`);
        break;
      }
      case 'USER':
        if (!(args in USERS) && !/^\d+$/.test(args)) throw new Error(`USER ${args}: unknown user`);
        stage.user = args in USERS ? USERS[args] : Number(args);
        break;
      case 'VOLUME':
        stage.volumes.push(...(args.startsWith('[') ? JSON.parse(args) : args.split(/\s+/)));
        break;
      case 'EXPOSE':
        stage.expose.push(...args.split(/\s+/));
        break;
      case 'HEALTHCHECK':
        stage.healthcheck = jsonOrShell(args.replace(/^(--\S+\s+)*CMD\s+/, ''));
        break;
      case 'ENTRYPOINT':
        stage.entrypoint = jsonOrShell(args);
        break;
      case 'CMD':
        stage.cmd = jsonOrShell(args);
        break;
      case 'ARG':
      case 'LABEL':
        break;
      default:
        throw new Error(`unsupported Dockerfile instruction ${op}`);
    }
  }
  const last = stages.at(-1);
  const map = (p) => {
    for (const o of owned) if (p === o || p.startsWith(`${o}/`)) return join(last.root, p);
    return p;
  };
  return {
    base: last.base,
    root: last.root,
    workdir: join(last.root, last.workdir),
    env: Object.fromEntries(Object.entries(last.env).map(([k, v]) => [k, map(v)])),
    user: last.user,
    volumes: last.volumes.map(map),
    expose: last.expose,
    healthcheck: last.healthcheck,
    command: [...(last.entrypoint ?? []), ...(last.cmd ?? [])],
    stages: stages.map((s) => s.name),
  };
}

/** Runs a command as the image's user (setpriv from util-linux), the way the container would. */
export function asImageUser(image, command) {
  if (image.user === 0 || process.getuid?.() !== 0) return command;
  return ['setpriv', `--reuid=${image.user}`, `--regid=${image.user}`, '--clear-groups', '--', ...command];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const i = process.argv.indexOf('--out');
  const image = buildImage({ dockerfile: join(root, 'Dockerfile'), context: root, out: i > 0 ? process.argv[i + 1] : undefined, log: (l) => console.error(l) });
  console.log(JSON.stringify(image, null, 2));
}
