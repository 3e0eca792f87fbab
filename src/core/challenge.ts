/** The record every front, the store and the engine share. */

export const FINAL_STATES = ['approved', 'rejected', 'expired', 'cancelled'] as const;
export type Outcome = (typeof FINAL_STATES)[number];
export type ChallengeState = 'pending' | Outcome;

/** passkey: WebAuthn, answered at a front that runs in a browser (OIDC, the console). */
export type Factor = 'otp' | 'push' | 'passkey';

/** Where the login came from: written into the audit event and shown in the push. */
export interface Origin {
  front: string; // oidc | radius | bridge | api | ...
  client?: string; // relying party, NAS or workstation name
  ip?: string;
  userAgent?: string;
  /**
   * Who opened it on the front's side: a bridge credential's name, or `privacyidea`. Only
   * that caller may poll, answer or cancel it there.
   */
  via?: string;
}

export interface Challenge {
  id: string;
  displayCode: string;
  user: string;
  factors: Factor[];
  origin: Origin;
  state: ChallengeState;
  createdAt: number;
  deadline: number;
  resolvedAt?: number;
  /** Number matching: shown on the login screen, typed on the phone; never pushed. */
  number?: string;
  /** Text the relying party asked to show with the push (CIBA binding_message). */
  bindingMessage?: string;
  /** How it was decided: otp, push, deadline, admin, superseded, ... */
  method?: string;
  reason?: string;
}

/** What the store publishes when a challenge leaves `pending`. */
export interface Resolution {
  id: string;
  state: Outcome;
  resolvedAt: number;
  method?: string;
  reason?: string;
}

export const isFinal = (state: ChallengeState): state is Outcome => state !== 'pending';
