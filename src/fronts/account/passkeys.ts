import type { AppContext } from '../../context.js';
import type { Passkeys } from '../../core/passkeys.js';

/** The passkey service (src/core/passkeys.ts) when passkeys are on; the portal hides them otherwise. */
export const passkeysOf = (ctx: AppContext): Passkeys | undefined => (ctx.config.passkeys.enabled ? ctx.passkeys : undefined);
