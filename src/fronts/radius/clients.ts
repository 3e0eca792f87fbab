import { BlockList, isIP } from 'node:net';
import { addressBlockProblem, radiusClientSchema, type RadiusClientConfig } from '../../config/schema.js';
import { plainAddress } from '../../core/addresses.js';
import { badRequest, conflict, notFound } from '../../core/errors.js';
import type { SecretBox } from '../../core/secretbox.js';
import type { Store } from '../../core/store.js';
import { replyAttribute } from './packet.js';

const KIND = 'radius-client';

export interface RadiusClient extends RadiusClientConfig {
  source: 'config' | 'api';
}

/** What a RadSec client is recognised by: the certificate's SHA-256 fingerprint (hex, colons allowed) and its names. */
export interface RadsecCertificate {
  fingerprint256: string;
  /** Subject CN and DNS subjectAltNames. */
  names: string[];
}

interface Compiled {
  client: RadiusClient;
  match: BlockList;
  prefix: number;
}

/** IPv4 clients arrive on a dual-stack socket as ::ffff:a.b.c.d. */
export const normalizeAddress = plainAddress;

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
    /** Names of radius.upstreams: a client added through the API may name only these. */
    private upstreams: string[] = [],
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

  /** The UDP client at this address; a RadSec client (radsec part) is never matched here. */
  match(address: string): RadiusClient | undefined {
    const a = normalizeAddress(address);
    const family = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    return this.compiled.find((c) => !c.client.radsec && c.match.check(a, family))?.client;
  }

  /** True when some RadSec client may connect from this address (checked before the TLS handshake). */
  radsecAllowed(address: string): boolean {
    const a = normalizeAddress(address);
    const family = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    return this.compiled.some((c) => c.client.radsec && c.match.check(a, family));
  }

  /**
   * The RadSec client this certificate (already verified against the CA) and source address
   * identify: the most specific address block whose client names the certificate, by its
   * SHA-256 fingerprint or by a name (subject CN or DNS subjectAltName).
   */
  matchRadsec(address: string, cert: RadsecCertificate): RadiusClient | undefined {
    const a = normalizeAddress(address);
    const family = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    const fingerprint = cert.fingerprint256.replaceAll(':', '').toLowerCase();
    const names = cert.names.map((n) => n.toLowerCase());
    return this.compiled.find(({ client: { radsec }, match }) => {
      if (!radsec || !match.check(a, family)) return false;
      return (
        radsec.fingerprints.some((f) => f.slice('sha256:'.length).replaceAll(':', '').toLowerCase() === fingerprint) ||
        radsec.names.some((n) => names.includes(n.toLowerCase()))
      );
    })?.client;
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
    if (c.upstream !== undefined && !this.upstreams.includes(c.upstream)) {
      throw badRequest('unknown_upstream', `upstream '${c.upstream}' is not defined in radius.upstreams (${this.upstreams.join(', ') || 'none is defined'})`);
    }
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
