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
}

export type PolicyDecision =
  | { allowed: false }
  | { allowed: true; secondFactor: 'required' | 'not-required'; noFactor: 'deny' | 'allow' };

/** A client's policy over the default, setting by setting. */
export const mergePolicy = (base: AccessPolicy, over?: AccessPolicy): AccessPolicy => ({
  allowGroups: over?.allowGroups ?? base.allowGroups,
  mfaGroups: over?.mfaGroups ?? base.mfaGroups,
  noFactor: over?.noFactor ?? base.noFactor,
});

/** Group names compare without case, as directories do. */
export function decide(groups: string[], policy: AccessPolicy): PolicyDecision {
  const mine = new Set(groups.map((g) => g.toLowerCase()));
  const member = (list?: string[]) => !list?.length || list.some((g) => mine.has(g.toLowerCase()));
  if (!member(policy.allowGroups)) return { allowed: false };
  return { allowed: true, secondFactor: member(policy.mfaGroups) ? 'required' : 'not-required', noFactor: policy.noFactor ?? 'deny' };
}
