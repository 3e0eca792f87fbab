import type { DeviceService } from './devices.js';
import type { Passkeys } from './passkeys.js';
import type { Store } from './store.js';

/**
 * Whether a user has a second factor of their own: a one-time-code seed, an enrolled device or a
 * passkey. Enrolment that needs no factor (the grace at sign-in) is only for users without one:
 * once the real user has enrolled, whoever knows the password alone can no longer replace it.
 */
export async function hasOwnFactor(deps: { store: Store; devices: DeviceService; passkeys: Passkeys }, user: string): Promise<boolean> {
  const record = await deps.store.users.get(user);
  if (!record) return false;
  if (record.otpEnabled && record.otpSecret) return true;
  const [devices, passkey] = await Promise.all([deps.devices.list(user), deps.passkeys.has(user)]);
  return devices.length > 0 || passkey;
}
