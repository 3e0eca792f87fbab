// `countersign serve`, kept apart from the client commands: this is the only CLI module that
// imports the server (oidc-provider, express, ioredis, the config loader), and main.ts loads it
// only for `serve`, so a client command starts in the time Node itself takes.
import { loadConfig } from '../config/load.js';
import { seedDemo } from '../demo.js';
import { startServer } from '../main.js';

export async function serve(): Promise<void> {
  const config = loadConfig();
  // The development server is reached as localhost, not 127.0.0.1: browsers refuse an IP
  // address as a passkey's relying party, and localhost counts as a secure context.
  const loopback = ['127.0.0.1', '::1', '::', '0.0.0.0', 'localhost'].includes(config.http.host);
  if (config.mode === 'development' && config.demo && !config.http.publicUrl && config.http.port !== 0 && loopback) {
    config.http.publicUrl = `http://localhost:${config.http.port}`;
  }
  const running = await startServer(config);
  if (config.mode === 'development' && config.demo) process.stderr.write(`${await seedDemo(running)}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    running.ctx.log.info({ signal }, 'stopping');
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
