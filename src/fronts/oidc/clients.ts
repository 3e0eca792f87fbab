import type Provider from 'oidc-provider';
import type { ClientMetadata } from 'oidc-provider';
import { badRequest, conflict, notFound } from '../../core/errors.js';
import { newToken } from '../../core/ids.js';
import type { SecretBox } from '../../core/secretbox.js';
import type { Store } from '../../core/store.js';

/** Where dynamic relying parties live in the settings store. */
export const OIDC_CLIENT_KIND = 'oidc-client';
const secretContext = (id: string) => `${OIDC_CLIENT_KIND}:${id}`;

/**
 * Relying parties added at run time (the admin API and CLI): validated by
 * oidc-provider itself, kept in the settings store with the client secret
 * sealed, and read back by the adapter on every instance.
 */
export class OidcClients {
  private provider?: Provider;

  constructor(
    private store: Store,
    private box: SecretBox,
    private fromConfig: Record<string, unknown>[],
  ) {}

  attach(provider: Provider): void {
    this.provider = provider;
  }

  /** The stored record as oidc-provider needs it (secret opened). */
  async load(id: string): Promise<ClientMetadata | undefined> {
    const raw = await this.store.settings.get(OIDC_CLIENT_KIND, id);
    if (!raw) return undefined;
    const m = JSON.parse(raw) as ClientMetadata & { client_secret_sealed?: string };
    const { client_secret_sealed: sealed, ...rest } = m;
    return sealed ? { ...rest, client_secret: this.box.open(sealed, secretContext(id)).toString() } : rest;
  }

  async list(): Promise<Record<string, unknown>[]> {
    const stored = [...(await this.store.settings.list(OIDC_CLIENT_KIND)).values()].map((v) => {
      const { client_secret_sealed: _s, ...rest } = JSON.parse(v) as Record<string, unknown>;
      return { ...rest, source: 'api' };
    });
    const configured = this.fromConfig.map(({ client_secret: _s, ...rest }) => ({ ...rest, source: 'config' }));
    return [...configured, ...stored];
  }

  /** Returns the metadata with the client secret, which is shown this once. */
  async add(input: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (!this.provider) throw badRequest('oidc_disabled', 'the OpenID Connect front is not running');
    const id = input.client_id;
    if (typeof id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw badRequest('invalid_input', 'client_id must be 1-64 letters, digits, . _ -');
    const confidential = input.token_endpoint_auth_method !== 'none';
    const metadata = { ...input, ...(confidential && !input.client_secret ? { client_secret: newToken(32) } : {}) } as ClientMetadata;
    try {
      await this.provider.Client.validate(metadata);
    } catch (err) {
      throw badRequest('invalid_client_metadata', (err as { error_description?: string }).error_description ?? (err as Error).message);
    }
    if (this.fromConfig.some((c) => c.client_id === id) || (await this.store.settings.get(OIDC_CLIENT_KIND, id))) {
      throw conflict('client_exists', `OpenID client '${id}' already exists`);
    }
    const { client_secret: secret, ...rest } = metadata;
    const stored = secret ? { ...rest, client_secret_sealed: this.box.seal(Buffer.from(String(secret)), secretContext(id)) } : rest;
    await this.store.settings.put(OIDC_CLIENT_KIND, id, JSON.stringify(stored));
    return metadata as Record<string, unknown>;
  }

  async remove(id: string): Promise<void> {
    if (this.fromConfig.some((c) => c.client_id === id)) throw badRequest('client_in_config', `OpenID client '${id}' is defined in the config file`);
    if (!(await this.store.settings.delete(OIDC_CLIENT_KIND, id))) throw notFound('oidc_client', id);
  }
}
