/**
 * Who may log in through a client, and who needs a second factor there: by directory group,
 * set as a default and per RADIUS client, OpenID relying party and bridge credential.
 */
export interface AccessPolicy {
  /** Only members of one of these groups may log in (empty or absent: everyone). */
  allowGroups?: string[];
  /** Only members of one of these groups need a second factor; others pass with the first (empty or absent: everyone needs one). */
  mfaGroups?: string[];
  /** A user who needs a second factor but has none enrolled: refused (deny), or let through with the first factor (allow). */
  noFactor?: 'deny' | 'allow';
  /** A user with no factor may enrol one during an OpenID Connect sign-in (src/fronts/oidc/enrol.ts). */
  enrolAtSignIn?: 'off' | 'on';
  /** Only members of one of these groups may enrol at sign-in (empty or absent: everyone). */
  enrolGroups?: string[];
  /** Days after the user's record was made during which enrolment at sign-in is offered. */
  enrolGraceDays?: number;
  /** Sign-ins without a factor during which enrolment at sign-in is offered. */
  enrolGraceSignIns?: number;
}

export type PolicyDecision =
  | { allowed: false }
  | { allowed: true; secondFactor: 'required' | 'not-required'; noFactor: 'deny' | 'allow' };

/** A client's policy over the default, setting by setting. */
export const mergePolicy = (base: AccessPolicy, over?: AccessPolicy): AccessPolicy => ({
  allowGroups: over?.allowGroups ?? base.allowGroups,
  mfaGroups: over?.mfaGroups ?? base.mfaGroups,
  noFactor: over?.noFactor ?? base.noFactor,
  enrolAtSignIn: over?.enrolAtSignIn ?? base.enrolAtSignIn,
  enrolGroups: over?.enrolGroups ?? base.enrolGroups,
  enrolGraceDays: over?.enrolGraceDays ?? base.enrolGraceDays,
  enrolGraceSignIns: over?.enrolGraceSignIns ?? base.enrolGraceSignIns,
});

/**
 * Whether a user with no factor may enrol one while signing in: the policy turns it on, the
 * user is in an enrolment group (when there are any), and the grace period has not run out
 * (days since the record was made; `signIns` already counted this one).
 */
export function mayEnrolAtSignIn(groups: string[], policy: AccessPolicy, ageMs: number, signIns: number): boolean {
  if (policy.enrolAtSignIn !== 'on') return false;
  const mine = new Set(groups.map((g) => g.toLowerCase()));
  if (policy.enrolGroups?.length && !policy.enrolGroups.some((g) => mine.has(g.toLowerCase()))) return false;
  if (ageMs > (policy.enrolGraceDays ?? 14) * 86_400_000) return false;
  return signIns <= (policy.enrolGraceSignIns ?? 5);
}

/** Group names compare without case, as directories do. */
export function decide(groups: string[], policy: AccessPolicy): PolicyDecision {
  const mine = new Set(groups.map((g) => g.toLowerCase()));
  const member = (list?: string[]) => !list?.length || list.some((g) => mine.has(g.toLowerCase()));
  if (!member(policy.allowGroups)) return { allowed: false };
  return { allowed: true, secondFactor: member(policy.mfaGroups) ? 'required' : 'not-required', noFactor: policy.noFactor ?? 'deny' };
}
