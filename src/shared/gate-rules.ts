/**
 * The gate's rules and how to say them, without the signature check (src/shared/gate.ts, which re-exports all of
 * this): which rule guards an environment, whether the approvals meet it, and what it still needs, in words. A
 * module of its own so that `gantry status`'s quick path (src/cli/quick-status.ts) formats the gate without
 * loading the elliptic curves. Deterministic: imported by workflow code.
 */
import type { GateRuleConfig } from '../config/schema';
import { expandRefs, ruleApprovers } from './principals';

export type IdentityMode = 'signed' | 'declared';

/** One allowed key of one principal, as resolved from the worker's allowed_signers. Public, fine in history. */
export interface PrincipalKey {
  principal: string;
  /** "ssh-ed25519 AAAA…" */
  key: string;
  /** "SHA256:…" */
  fingerprint: string;
  namespaces?: string[];
  validAfter?: string;
  validBefore?: string;
}

/** Everything the gate needs to judge a message: from the resolved plan. */
export interface GateRules {
  identity: IdentityMode;
  /** Everyone who may vote at this gate (names; groups already expanded). */
  approvers: string[];
  /** Distinct approvals in all. */
  required: number;
  /** Minimum approvals per group, and the groups' members. */
  from?: Record<string, number>;
  groups?: Record<string, string[]>;
  /** A vote without a reason is refused. */
  reasonRequired?: boolean;
  allowSelfApproval: boolean;
  /** Who may start, decide and cancel. Empty: anyone with a key (signed) or any name (declared). */
  operators: string[];
  keys: PrincipalKey[];
  /** The environment this gate protects, and whether it is the last one (production). */
  environment?: string;
  final?: boolean;
  /** Who may let the release through a freeze: extra approvals from this group, each with a reason. */
  breakGlass?: { group: string; members: string[]; required: number };
}

interface PlanView {
  config: {
    approvals: { approvers: string[]; required: number; identity?: IdentityMode; allowSelfApproval?: boolean };
    operators?: string[];
    environments?: Record<string, { gate?: GateRuleConfig }>;
    hotfix?: { allowed: boolean; gate: GateRuleConfig };
    breakGlass?: { group: string; required: number };
  };
  keys?: PrincipalKey[];
  groups?: Record<string, string[]>;
}

/** The rules of the last environment's gate as a resolved plan states them (config fields older plans lack default to declared). */
export function gateRulesView(input: PlanView): GateRules {
  const envs = Object.keys(input.config.environments ?? {});
  return gateRulesFor(input, envs[envs.length - 1] ?? 'production');
}

/**
 * The rules of one environment's gate: its own `gate:` rule, or for the last environment the service's
 * `approvals`; a hotfix's last gate takes `hotfix.gate` instead.
 */
export function gateRulesFor(input: PlanView, environment: string, opts: { hotfix?: boolean } = {}): GateRules {
  const a = input.config.approvals;
  const groups = input.groups ?? {};
  const envs = Object.keys(input.config.environments ?? {});
  const final = envs.length === 0 || envs[envs.length - 1] === environment;
  const own = input.config.environments?.[environment]?.gate;
  const rule = final && opts.hotfix && input.config.hotfix ? input.config.hotfix.gate : own;
  const bg = input.config.breakGlass;
  const base = {
    identity: a.identity ?? 'declared',
    allowSelfApproval: a.allowSelfApproval ?? false,
    operators: input.config.operators ?? [],
    keys: input.keys ?? [],
    environment,
    final,
    ...(bg ? { breakGlass: { group: bg.group, members: groups[bg.group] ?? [], required: bg.required } } : {}),
  };
  if (!rule) return { ...base, approvers: expandRefs(a.approvers, groups), required: a.required };
  const from = rule.from ?? {};
  const used: Record<string, string[]> = {};
  for (const g of Object.keys(from)) used[g] = groups[g] ?? [];
  return {
    ...base,
    approvers: ruleApprovers({ approvers: rule.approvers ?? [], from }, groups, a.approvers),
    required: rule.required ?? 1,
    ...(Object.keys(from).length > 0 ? { from, groups: used } : {}),
    ...(rule.reasonRequired ? { reasonRequired: true } : {}),
  };
}

/** Who did something, as far as gantry could verify it. */
export interface Actor {
  principal: string;
  /** The key's fingerprint when the statement was signed. */
  fingerprint?: string;
  verified: boolean;
}

export interface VoteRecord {
  approver: string;
  fingerprint?: string;
  verified: boolean;
  reason?: string;
  at: string;
  via: 'signal' | 'update';
  /** The signed statement and its signature, when the vote was signed (the release manifest keeps them). */
  statement?: string;
  signature?: string;
  /** Set when the approver later rejected at the same gate: the approval stays on the record, marked. */
  changedToRejectAt?: string;
}

/** Approvals that still count (not changed into a rejection). */
function standing(approvals: VoteRecord[]): VoteRecord[] {
  return approvals.filter((v) => !v.changedToRejectAt);
}

/** True once the approvals meet the rule: enough in all, and enough from each group it names. */
export function quorumMet(approvals: VoteRecord[], rules: GateRules): boolean {
  const votes = standing(approvals);
  if (votes.length < rules.required) return false;
  return Object.entries(rules.from ?? {}).every(([g, n]) => votes.filter((v) => rules.groups?.[g]?.includes(v.approver)).length >= n);
}

/** True once enough break-glass approvals are in to pass a freeze. */
export function breakGlassMet(votes: VoteRecord[] | undefined, rules: GateRules): boolean {
  return rules.breakGlass !== undefined && (votes?.length ?? 0) >= rules.breakGlass.required;
}

function orList(names: string[]): string {
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

/**
 * What the gate still needs, in words: "needs 1 more approval from alice or bob (signed)", or with group rules
 * "needs 1 more from sre (carol or dave) and 1 more from product (bob)". Names only people whose vote could still
 * count: not those who voted, nor the requester (given, unless self-approval is allowed), nor those whose every
 * key already approved under another name (the quorum counts distinct keys).
 */
export function describeNeeds(approvals: VoteRecord[], rules: GateRules, requester?: Actor): string {
  const votes = standing(approvals);
  const missing = rules.required - votes.length;
  const voted = new Set(approvals.map((v) => v.approver));
  const usedKeys = new Set(votes.flatMap((v) => (v.fingerprint ? [v.fingerprint] : [])));
  const couldVote = (a: string) => {
    if (voted.has(a)) return false;
    if (requester && !rules.allowSelfApproval && a === requester.principal) return false;
    const theirs = rules.keys.filter((k) => k.principal === a);
    return !(theirs.length > 0 && theirs.every((k) => usedKeys.has(k.fingerprint)));
  };
  const groupNeeds = Object.entries(rules.from ?? {}).flatMap(([g, n]) => {
    const members = rules.groups?.[g] ?? [];
    const left = n - votes.filter((v) => members.includes(v.approver)).length;
    return left > 0 ? [{ group: g, left, who: members.filter(couldVote) }] : [];
  });
  const groupTotal = groupNeeds.reduce((a, b) => a + b.left, 0);
  const extra = Math.max(0, missing - groupTotal);
  if (missing <= 0 && groupTotal === 0) return 'has the approvals it needs';
  const left = rules.approvers.filter(couldVote);
  const short = groupNeeds.find((g) => g.who.length < g.left);
  if (left.length < Math.max(missing, groupTotal) || short) {
    const only = short
      ? `${short.who.length === 0 ? 'nobody' : `only ${short.who.join(', ')}`} in ${short.group} can still vote`
      : `${left.length === 0 ? 'no approver is' : `only ${left.join(', ')} ${left.length === 1 ? 'is' : 'are'}`} left whose vote could count`;
    return `needs ${Math.max(missing, groupTotal)} more approval${Math.max(missing, groupTotal) === 1 ? '' : 's'}, but ${only} (each approver votes once, the requester may not, ` +
      "and the quorum counts distinct keys); add approvers, or their own keys, to the worker's config";
  }
  const signed = rules.identity === 'signed' ? ' (signed)' : '';
  if (groupNeeds.length === 0) {
    return `needs ${missing} more approval${missing === 1 ? '' : 's'} from ${orList(left)}${signed}`;
  }
  const parts = groupNeeds.map((g) => `${g.left} more from ${g.group} (${orList(g.who)})`);
  if (extra > 0) parts.push(`${extra} more from anyone of ${orList(left)}`);
  return `needs ${parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`}${signed}`;
}

/** The rule in words, for the plan and the gate: "2 approvals, at least 1 from sre and 1 from product, each with a reason". */
export function describeRule(rules: GateRules): string {
  const from = Object.entries(rules.from ?? {}).map(([g, n]) => `${n} from ${g}`);
  return `${rules.required} approval${rules.required === 1 ? '' : 's'}` + (from.length ? `, at least ${from.join(' and ')}` : ` from ${orList(rules.approvers)}`) +
    (rules.reasonRequired ? ', each with a reason' : '') + (rules.allowSelfApproval ? '' : ', not the requester') + '; one rejection vetoes';
}

/** The command an approver runs, as the gate and the CLI print it. */
export function approveCommand(service: string, version: string, rules: Pick<GateRules, 'identity'>): string {
  return rules.identity === 'signed'
    ? `gantry approve ${service} ${version} --as <name> [--key ~/.ssh/id_ed25519]`
    : `gantry approve ${service} ${version} --as <name>`;
}

/** One line on how a signed vote reaches the gate from the Web UI. */
export function webUiInstruction(service: string, version: string, rules: Pick<GateRules, 'identity'>): string {
  return rules.identity === 'signed'
    ? `In the Web UI, send the signal "approve" with the JSON that \`gantry approve ${service} ${version} --as <name> --print\` prints`
    : 'In the Web UI, send the signal "approve" with {"approver": "<name>"}';
}
