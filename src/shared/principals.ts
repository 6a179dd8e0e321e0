/**
 * People and groups as the config names them: `alice`, or `@sre` for every member of the group `sre`.
 * Pure: the config schema, the plan and the workflow's gate all read lists through these.
 */

/** The people a list names: names as written, groups (`@sre`) by their members, each once, in order. */
export function expandRefs(refs: readonly string[], groups: Record<string, string[]>): string[] {
  const out: string[] = [];
  for (const r of refs) for (const p of r.startsWith('@') ? groups[r.slice(1)] ?? [] : [r]) if (!out.includes(p)) out.push(p);
  return out;
}

/**
 * Who may vote at a gate with this rule: its approvers, the members of its `from` groups, and, when the rule
 * names neither, the service's `approvals.approvers`.
 */
export function ruleApprovers(rule: { approvers: readonly string[]; from: Record<string, number> }, groups: Record<string, string[]>, serviceApprovers: readonly string[]): string[] {
  const named = rule.approvers.length > 0 ? rule.approvers : Object.keys(rule.from).length > 0 ? [] : serviceApprovers;
  return expandRefs([...named, ...Object.keys(rule.from).map((g) => `@${g}`)], groups);
}
