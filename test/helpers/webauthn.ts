import type { CDPSession, Page } from 'playwright-core';
import type { Passkeys, PasskeyInfo, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '../../src/core/passkeys.js';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '../../src/core/passkeys.js';

export interface VirtualAuthenticatorOptions {
  /** Whether the authenticator verifies its user (PIN, biometrics); false: presence only. */
  isUserVerified?: boolean;
  hasUserVerification?: boolean;
}

/**
 * A CTAP2 platform authenticator in Chromium (CDP WebAuthn domain): resident keys, user
 * verification, answered at once without a prompt. One per page; `remove` takes it away.
 */
export class VirtualAuthenticator {
  private constructor(
    readonly cdp: CDPSession,
    readonly id: string,
  ) {}

  static async add(page: Page, opts: VirtualAuthenticatorOptions = {}): Promise<VirtualAuthenticator> {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: opts.hasUserVerification ?? true,
        isUserVerified: opts.isUserVerified ?? true,
        automaticPresenceSimulation: true,
      },
    });
    return new VirtualAuthenticator(cdp, authenticatorId);
  }

  credentials() {
    return this.cdp.send('WebAuthn.getCredentials', { authenticatorId: this.id }).then((r) => r.credentials);
  }

  /** Puts a credential (e.g. a copy of another authenticator's, with its private key) into this one. */
  addCredential(credential: Awaited<ReturnType<VirtualAuthenticator['credentials']>>[number]) {
    return this.cdp.send('WebAuthn.addCredential', { authenticatorId: this.id, credential });
  }

  async remove(): Promise<void> {
    await this.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: this.id }).catch(() => {});
    await this.cdp.detach().catch(() => {});
  }
}

/** Runs /webauthn.js's register() in the page (which must be on the server's origin). */
export const createInPage = (page: Page, options: PublicKeyCredentialCreationOptionsJSON): Promise<RegistrationResponseJSON> =>
  page.evaluate(async (o) => {
    const m = await import('/webauthn.js' as string);
    return m.register(o);
  }, options);

/** Runs /webauthn.js's authenticate() in the page. */
export const getInPage = (page: Page, options: PublicKeyCredentialRequestOptionsJSON): Promise<AuthenticationResponseJSON> =>
  page.evaluate(async (o) => {
    const m = await import('/webauthn.js' as string);
    return m.authenticate(o);
  }, options);

/**
 * Registers a passkey for `user` the way the portal will: options from the server (here the
 * test process's ctx.passkeys), the ceremony in the browser, the answer verified by the server.
 */
export async function registerPasskey(page: Page, passkeys: Passkeys, user: string, name: string): Promise<PasskeyInfo> {
  const options = await passkeys.registrationOptions(user);
  return passkeys.verifyRegistration(user, await createInPage(page, options), name);
}

/** The claims of an ID token, unverified (openid-client verified it already). */
export const idTokenClaims = (idToken: string) => JSON.parse(Buffer.from(idToken.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
