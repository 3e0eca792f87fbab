#!/usr/bin/env node
// Starts the CLI. A client command (anything but `serve`) only talks HTTP to a running server,
// so it should cost little more than Node's own start-up: neither the server's modules nor a
// TypeScript loader. Which code runs depends on what is there:
//
// - No src/ (the Docker image): the compiled dist/, the only code there is.
// - A source checkout: never dist/, which may be older than src/. A client command runs a copy
//   of src/cli/main.ts and the modules it imports, transpiled by TypeScript (a dev dependency)
//   into node_modules/.cache/countersign-cli/<key>/, where the key hashes the contents of every
//   copied source and of this file. An edited source changes the key and is transpiled again on
//   the next run (a few hundred ms, once), so a stale copy never runs. Registering tsx alone
//   takes longer than a whole bare `node -e 0`, and each module then goes through its loader
//   thread.
//   `serve`, and client code the copy cannot stand in for, run the source through tsx.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const ENTRY = 'src/cli/main.ts';
const cacheDir = join(root, 'node_modules/.cache/countersign-cli');
const load = (file) => import(pathToFileURL(file).href);
const viaTsx = async (file) => {
  const { register } = await import('tsx/esm/api');
  register();
  return load(file);
};
const asJs = (file) => file.replace(/\.ts$/, '.js');

if (!existsSync(join(root, ENTRY))) {
  const dist = join(root, 'dist/src/cli');
  (await load(join(dist, 'main.js'))).run(() => load(join(dist, 'serve.js')));
} else {
  const serve = join(root, 'src/cli/serve.ts');
  const copy = cachedClient();
  if (copy) (await load(copy)).run(() => viaTsx(serve));
  else (await viaTsx(join(root, ENTRY))).run(() => load(serve));
}

/** The transpiled entry point, or null when only tsx can run the client. */
function cachedClient() {
  try {
    const { files } = JSON.parse(readFileSync(join(cacheDir, 'manifest.json'), 'utf8'));
    const entry = join(cacheDir, keyOf(files.map((f) => [f, readFileSync(join(root, f))])), asJs(ENTRY));
    if (existsSync(entry)) return entry;
  } catch {
    // No copy yet, or one of its sources is gone: transpile what the entry imports now.
  }
  try {
    return transpileClient();
  } catch {
    return null; // no TypeScript, or node_modules not writable
  }
}

function keyOf(sources) {
  const hash = createHash('sha256').update(readFileSync(self));
  for (const [file, text] of sources) hash.update(`\0${file}\0`).update(text);
  return hash.digest('hex').slice(0, 32);
}

function transpileClient() {
  const ts = createRequire(import.meta.url)('typescript');
  const compilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022, removeComments: true };
  const sources = new Map();
  const output = new Map();
  const queue = [ENTRY];
  while (queue.length) {
    const file = queue.shift();
    if (output.has(file)) continue;
    const text = readFileSync(join(root, file));
    const r = ts.transpileModule(text.toString('utf8'), { fileName: file, compilerOptions, reportDiagnostics: true });
    // A syntax error: tsx reports it against the source.
    if (r.diagnostics?.length) return null;
    // The copy lives elsewhere, so code that finds files next to itself would look in the cache.
    if (r.outputText.includes('import.meta')) return null;
    sources.set(file, text);
    output.set(file, r.outputText);
    // Imports left after type erasure, static and dynamic: packages resolve from the copy too
    // (it sits in node_modules), relative ones are copied alongside.
    for (const { fileName } of ts.preProcessFile(r.outputText, true, true).importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const dep = join(dirname(file), fileName.replace(/\.js$/, '.ts'));
      if (!fileName.endsWith('.js') || !existsSync(join(root, dep))) return null;
      queue.push(dep);
    }
  }
  const key = keyOf(sources);
  const dir = join(cacheDir, key);
  if (!existsSync(dir)) {
    // Written aside and renamed: a concurrent run sees the whole copy or none of it.
    const tmp = join(cacheDir, `tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    for (const [file, js] of output) {
      mkdirSync(dirname(join(tmp, file)), { recursive: true });
      writeFileSync(join(tmp, asJs(file)), js);
    }
    // Inside node_modules no package.json of ours is in scope to say these are ES modules.
    writeFileSync(join(tmp, 'package.json'), '{ "type": "module" }\n');
    try {
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(dir)) throw err;
    }
  }
  const manifest = join(cacheDir, `manifest-${process.pid}.json`);
  writeFileSync(manifest, JSON.stringify({ files: [...sources.keys()] }));
  renameSync(manifest, join(cacheDir, 'manifest.json'));
  // Copies of older sources, left an hour for commands still running from them.
  for (const name of readdirSync(cacheDir)) {
    if (name === key || name === 'manifest.json') continue;
    const path = join(cacheDir, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > 3_600_000) rmSync(path, { recursive: true, force: true });
    } catch {
      // another run pruned it first
    }
  }
  return join(dir, asJs(ENTRY));
}
