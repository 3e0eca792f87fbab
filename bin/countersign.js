#!/usr/bin/env node
// Runs the compiled CLI when built (the Docker image), the TypeScript source otherwise.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = `${root}dist/src/cli/main.js`;
if (!existsSync(built)) {
  const { register } = await import('tsx/esm/api');
  register();
}
const cli = await import(existsSync(built) ? pathToFileURL(built).href : pathToFileURL(`${root}src/cli/main.ts`).href);
cli.run();
