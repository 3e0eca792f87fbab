import { BlockList, isIP } from 'node:net';
import { addressBlockProblem, radiusClientSchema, type RadiusClientConfig } from '../../config/schema.js';
import { badRequest, conflict, notFound } from '../../core/errors.js';
import type { SecretBox } from '../../core/secretbox.js';
import type { Store } from '../../core/store.js';
import { replyAttribute } from './packet.js';

const KIND = 'radius-client';

export interface RadiusClient extends RadiusClientConfig {
  source: 'config' | 'api';
}

interface Compiled {
  client: RadiusClient;
  match: BlockList;
  prefix: number;
}

/** IPv4 clients arrive on a dual-stack socket as ::ffff:a.b.c.d. */
export const normalizeAddress = (a: string) => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);

function compile(client: RadiusClient): Compiled {
  const problem = addressBlockProblem(client.address);
  if (problem) throw badRequest('invalid_address', problem);
  const [addr, bits] = client.address.split('/');
  const family = isIP(addr!);
  const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
  for (const [name, value] of client.acceptAttributes) {
    try {
      replyAttribute(name, value);
    } catch (err) {
      throw badRequest('invalid_attribute', `client ${client.name}: ${(err as Error).message}`);
    }
  }
  const match = new BlockList();
  match.addSubnet(addr!, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return { client, match, prefix };
}

/**
 * The NASes allowed to talk to us: from the config file and from the admin
 * API (kept in the store with the secret sealed, so every instance sees
 * them). A request is matched to the most specific address block.
 */
export class RadiusClients {
  private compiled: Compiled[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private store: Store,
    private box: SecretBox,
    private fromConfig: RadiusClientConfig[],
  ) {
    this.compiled = fromConfig.map((c, i) => {
      try {
        return compile({ ...c, source: 'config' });
      } catch (err) {
        throw new Error(`radius.clients[${i}] (${c.name}): ${(err as Error).message}`);
      }
    });
  }

  /** Loads the stored clients now and every few seconds (other instances may add some). */
  async start(intervalMs = 5000): Promise<void> {
    await this.refresh().catch(() => {});
    this.timer = setInterval(() => void this.refresh().catch(() => {}), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    const stored = await this.store.settings.list(KIND);
    const list: Compiled[] = this.fromConfig.map((c) => compile({ ...c, source: 'config' }));
    for (const [name, json] of stored) {
      try {
        const v = JSON.parse(json) as RadiusClientConfig;
        v.secret = this.box.open(v.secret, `${KIND}:${name}`).toString();
        list.push(compile({ ...v, source: 'api' }));
      } catch {
        // A record that cannot be read serves no requests.
      }
    }
    this.compiled = list.sort((a, b) => b.prefix - a.prefix);
  }

  match(address: string): RadiusClient | undefined {
    const a = normalizeAddress(address);
    const family = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    return this.compiled.find((c) => c.match.check(a, family))?.client;
  }

  /** Names of the clients whose shared secret is `secret` (to find ones left with a published secret). */
  withSecret(secret: string): string[] {
    return this.compiled.filter((c) => c.client.secret === secret).map((c) => c.client.name);
  }

  list(): Omit<RadiusClient, 'secret'>[] {
    return this.compiled.map(({ client: { secret: _s, ...rest } }) => rest);
  }

  async add(input: unknown): Promise<Omit<RadiusClient, 'secret'>> {
    const parsed = radiusClientSchema.safeParse(input);
    if (!parsed.success) throw badRequest('invalid_input', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    const c = parsed.data;
    compile({ ...c, source: 'api' });
    if (this.fromConfig.some((x) => x.name === c.name) || (await this.store.settings.get(KIND, c.name))) {
      throw conflict('client_exists', `RADIUS client '${c.name}' already exists`);
    }
    const sealed = { ...c, secret: this.box.seal(Buffer.from(c.secret), `${KIND}:${c.name}`) };
    await this.store.settings.put(KIND, c.name, JSON.stringify(sealed));
    await this.refresh();
    const { secret: _s, ...view } = c;
    return { ...view, source: 'api' };
  }

  async remove(name: string): Promise<void> {
    if (this.fromConfig.some((x) => x.name === name)) throw badRequest('client_in_config', `RADIUS client '${name}' is defined in the config file`);
    if (!(await this.store.settings.delete(KIND, name))) throw notFound('radius_client', name);
    await this.refresh();
  }
}
