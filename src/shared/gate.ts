/**
 * The gate's rules, in one pure module: who may start, approve, reject, decide and cancel a release, how a
 * signed statement is checked, what counts towards the quorum, and how to say what the gate still needs.
 * The workflow, the plan, `gantry start` and the status formatting all call these, so they never disagree.
 *
 * Two identity modes per service (`approvals.identity`):
 * - `signed` (the default): every decision is a statement signed with the person's SSH key, checked against the
 *   keys in the worker's config (git's allowed_signers form). Quorum counts distinct keys.
 * - `declared`: names are taken as typed. It protects against mistakes, not against someone who may signal the
 *   workflow and types another person's name (README: Trust model).
 *
 * Deterministic: no clocks but the workflow time handed in, no I/O.
 */
import { verifySshSignature } from './sshsig';
import {
  MAX_VALIDITY_MS,
  parseSignedPayload,
  parseStatement,
  SIGNATURE_NAMESPACE,
  type SignedStatement,
  type Statement,
  type StatementAction,
} from './statement';
import { checkName, checkReason } from './text';
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

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/** What a signed statement must say to count for this message. */
export interface Expectation {
  action: StatementAction;
  workflow: string;
  run?: string;
  digest?: string;
  step?: string;
  service?: string;
  version?: string;
}

/**
 * Check a signed statement for one action: its shape, what it names (workflow, run, digest, step), its
 * expiry against `nowMs` (workflow time), and its signature by one of the named principal's keys.
 */
export function verifySigned(payload: unknown, expect: Expectation, keys: PrincipalKey[], nowMs: number): Parsed<{ statement: Statement; actor: Actor }> {
  const signed = parseSignedPayload(payload);
  if (!signed.ok) return signed;
  return verifyStatement(signed.value, expect, keys, nowMs);
}

export function verifyStatement(signed: SignedStatement, expect: Expectation, keys: PrincipalKey[], nowMs: number): Parsed<{ statement: Statement; actor: Actor }> {
  const parsed = parseStatement(signed.statement);
  if (!parsed.ok) return parsed;
  const s = parsed.value;
  if (s.action !== expect.action) return { ok: false, problem: `the statement is for "${s.action}", not "${expect.action}"` };
  if (s.workflow !== expect.workflow) return { ok: false, problem: `the statement is for release ${s.workflow}, not ${expect.workflow} (replayed from another release?)` };
  for (const f of ['run', 'digest', 'step', 'service', 'version'] as const) {
    const want = expect[f];
    if (want !== undefined && s[f] !== want) {
      const what = f === 'run' ? 'run' : f === 'digest' ? 'image digest' : f;
      return { ok: false, problem: `the statement names ${what} ${s[f] ?? '(none)'}, but this release has ${want} (signed for another ${f === 'digest' ? 'image' : f}?)` };
    }
  }
  const expires = Date.parse(s.expires);
  if (expires <= nowMs) return { ok: false, problem: `the statement expired at ${s.expires}; sign a new one` };
  if (expires - nowMs > MAX_VALIDITY_MS) return { ok: false, problem: `the statement is valid until ${s.expires}, more than 24 hours ahead; sign one that expires sooner` };
  const theirs = keys.filter((k) => k.principal === s.principal);
  if (theirs.length === 0) return { ok: false, problem: `${s.principal} has no key in the worker's allowed signers` };
  const sig = verifySshSignature(signed.signature, signed.statement, SIGNATURE_NAMESPACE);
  if (!sig.ok) return { ok: false, problem: `the signature does not verify: ${sig.problem}` };
  const key = theirs.find((k) => sameKey(k.key, sig.value.key.text));
  if (!key) return { ok: false, problem: `signed with key ${sig.value.key.fingerprint}, which is not ${s.principal}'s key in the worker's allowed signers (forged, or the wrong --key)` };
  if (key.namespaces && !key.namespaces.includes(SIGNATURE_NAMESPACE)) {
    return { ok: false, problem: `${s.principal}'s key is limited to namespaces ${key.namespaces.join(', ')}, not "${SIGNATURE_NAMESPACE}"` };
  }
  if (key.validAfter && nowMs < Date.parse(key.validAfter)) return { ok: false, problem: `${s.principal}'s key is valid only after ${key.validAfter}` };
  if (key.validBefore && nowMs >= Date.parse(key.validBefore)) return { ok: false, problem: `${s.principal}'s key expired at ${key.validBefore}` };
  if (s.reason !== undefined) {
    const r = checkReason(s.reason);
    if (!r.ok) return r;
  }
  return { ok: true, value: { statement: s, actor: { principal: s.principal, fingerprint: key.fingerprint, verified: true } } };
}

function sameKey(a: string, b: string): boolean {
  const [ta, ka] = a.trim().split(/\s+/);
  const [tb, kb] = b.trim().split(/\s+/);
  return ta === tb && ka === kb;
}

// ---- votes ----

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

export interface GateView {
  service: string;
  state: 'not_open' | 'open' | 'approved' | 'rejected' | 'timed_out' | 'closed';
  stage: string;
  approvals: VoteRecord[];
  requester: Actor;
  /** Break-glass approvals given at this gate. */
  breakGlass?: VoteRecord[];
}

/** What a vote says besides who cast it. */
export interface VoteIntent {
  reason?: string;
  /** An approval that lets the release through a freeze. */
  breakGlass?: boolean;
}

/** A vote, once its identity is known: why it is refused, or undefined when it counts. */
export function voteRefusal(kind: 'approve' | 'reject', voter: Actor, gate: GateView, rules: GateRules, intent: VoteIntent = {}): string | undefined {
  if (gate.state === 'not_open') {
    return `the approval gate is not open yet (stage ${gate.stage}); ${kind} once ${rules.environment && rules.final === false ? `the release reaches ${rules.environment}` : 'staging passed its smoke checks'}`;
  }
  if (gate.state !== 'open') return `the approval gate is closed (${gate.state.replace('_', ' ')})`;
  if (intent.breakGlass) return breakGlassRefusal(kind, voter, gate, rules, intent);
  if (!rules.approvers.includes(voter.principal)) {
    return `${voter.principal} is not an approver for ${gate.service}${rules.environment && rules.final === false ? ` ${rules.environment}` : ''}; approvers are ${rules.approvers.join(', ')}`;
  }
  if (rules.reasonRequired && !intent.reason?.trim()) {
    return `${gate.service}'s gate requires a reason with every vote; ${kind} again with --reason "…"`;
  }
  const earlier = gate.approvals.find((v) => v.approver === voter.principal);
  // While the gate is open an approver may change an approval into a rejection (the approval stays on the record).
  if (kind === 'reject') return undefined;
  if (!rules.allowSelfApproval && isSamePerson(voter, gate.requester)) {
    return `${voter.principal} requested this release and may not approve it (four-eyes rule); ask another approver, or set approvals.allowSelfApproval: true in the worker's config`;
  }
  if (earlier) return `${voter.principal} already approved; each approver votes once`;
  if (voter.fingerprint) {
    const sameKeyVote = gate.approvals.find((v) => v.fingerprint === voter.fingerprint);
    if (sameKeyVote) return `key ${voter.fingerprint} already approved as ${sameKeyVote.approver}; the quorum counts distinct keys, not names`;
  }
  return undefined;
}

function breakGlassRefusal(kind: 'approve' | 'reject', voter: Actor, gate: GateView, rules: GateRules, intent: VoteIntent): string | undefined {
  const bg = rules.breakGlass;
  if (kind !== 'approve') return 'break-glass is an approval; to stop the release, reject it';
  if (!bg) return `${gate.service} has no break-glass group, so nothing passes a freeze; wait for the freeze to end, or add breakGlass: { group: … } to the worker's config`;
  if (!bg.members.includes(voter.principal)) return `${voter.principal} is not in the break-glass group ${bg.group} (${bg.members.join(', ') || 'empty'})`;
  if (!intent.reason?.trim()) return 'a break-glass approval needs a reason (--reason "…"): it is recorded and announced';
  if (isSamePerson(voter, gate.requester)) return `${voter.principal} requested this release and may not break the glass for it; ask another member of ${bg.group}`;
  const all = [...gate.approvals, ...(gate.breakGlass ?? [])];
  if (all.some((v) => v.approver === voter.principal || (voter.fingerprint !== undefined && v.fingerprint === voter.fingerprint))) {
    return `${voter.principal} already voted at this gate; break-glass must come from another member of ${bg.group} (it is an extra approval)`;
  }
  return undefined;
}

export function isSamePerson(a: Actor, b: Actor): boolean {
  return a.principal === b.principal || (a.fingerprint !== undefined && a.fingerprint === b.fingerprint);
}

/** May this actor start, decide or cancel? */
export function operatorRefusal(actor: Actor, what: string, rules: GateRules): string | undefined {
  if (rules.operators.length > 0 && !rules.operators.includes(actor.principal)) {
    return `${actor.principal} may not ${what} this release; operators are ${rules.operators.join(', ')}`;
  }
  return undefined;
}

/** A declared name (declared mode): checked for shape only. */
export function declaredActor(name: unknown, what: string): Parsed<Actor> {
  if (typeof name !== 'string') return { ok: false, problem: `"${what}" is missing or not text` };
  const n = checkName(name, `"${what}"`);
  if (!n.ok) return n;
  return { ok: true, value: { principal: n.value, verified: false } };
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
