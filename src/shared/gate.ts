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
  approvers: string[];
  required: number;
  allowSelfApproval: boolean;
  /** Who may start, decide and cancel. Empty: anyone with a key (signed) or any name (declared). */
  operators: string[];
  keys: PrincipalKey[];
}

/** The rules as a resolved plan states them (config fields that older plans lack default to declared). */
export function gateRulesView(input: {
  config: { approvals: { approvers: string[]; required: number; identity?: IdentityMode; allowSelfApproval?: boolean }; operators?: string[] };
  keys?: PrincipalKey[];
}): GateRules {
  const a = input.config.approvals;
  return {
    identity: a.identity ?? 'declared',
    approvers: a.approvers,
    required: a.required,
    allowSelfApproval: a.allowSelfApproval ?? false,
    operators: input.config.operators ?? [],
    keys: input.keys ?? [],
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
}

export interface GateView {
  service: string;
  state: 'not_open' | 'open' | 'approved' | 'rejected' | 'timed_out' | 'closed';
  stage: string;
  approvals: VoteRecord[];
  requester: Actor;
}

/** A vote, once its identity is known: why it is refused, or undefined when it counts. */
export function voteRefusal(kind: 'approve' | 'reject', voter: Actor, gate: GateView, rules: GateRules): string | undefined {
  if (gate.state === 'not_open') return `the approval gate is not open yet (stage ${gate.stage}); ${kind} once staging passed its smoke checks`;
  if (gate.state !== 'open') return `the approval gate is closed (${gate.state.replace('_', ' ')})`;
  if (!rules.approvers.includes(voter.principal)) {
    return `${voter.principal} is not an approver for ${gate.service}; approvers are ${rules.approvers.join(', ')}`;
  }
  if (kind === 'approve' && !rules.allowSelfApproval && isSamePerson(voter, gate.requester)) {
    return `${voter.principal} requested this release and may not approve it (four-eyes rule); ask another approver, or set approvals.allowSelfApproval: true in the worker's config`;
  }
  const earlier = gate.approvals.find((v) => v.approver === voter.principal);
  if (earlier) return `${voter.principal} already approved; each approver votes once`;
  if (voter.fingerprint) {
    const sameKeyVote = gate.approvals.find((v) => v.fingerprint === voter.fingerprint);
    if (sameKeyVote) return `key ${voter.fingerprint} already approved as ${sameKeyVote.approver}; the quorum counts distinct keys, not names`;
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

/** True once the approvals meet the rule. */
export function quorumMet(approvals: VoteRecord[], rules: GateRules): boolean {
  return approvals.length >= rules.required;
}

/**
 * What the gate still needs, in words: "needs 1 more approval from alice or bob (signed)". Names only approvers
 * whose vote could still count: not those who voted, nor the requester (given, unless self-approval is allowed),
 * nor those whose every key already approved under another name (the quorum counts distinct keys).
 */
export function describeNeeds(approvals: VoteRecord[], rules: GateRules, requester?: Actor): string {
  const missing = rules.required - approvals.length;
  if (missing <= 0) return 'has the approvals it needs';
  const voted = new Set(approvals.map((v) => v.approver));
  const usedKeys = new Set(approvals.flatMap((v) => (v.fingerprint ? [v.fingerprint] : [])));
  const left = rules.approvers.filter((a) => {
    if (voted.has(a)) return false;
    if (requester && !rules.allowSelfApproval && a === requester.principal) return false;
    const theirs = rules.keys.filter((k) => k.principal === a);
    return !(theirs.length > 0 && theirs.every((k) => usedKeys.has(k.fingerprint)));
  });
  const approvalsWord = `approval${missing === 1 ? '' : 's'}`;
  if (left.length < missing) {
    const only = left.length === 0 ? 'no approver is' : `only ${left.join(', ')} ${left.length === 1 ? 'is' : 'are'}`;
    return `needs ${missing} more ${approvalsWord}, but ${only} left whose vote could count (each approver votes once, the requester may not, ` +
      "and the quorum counts distinct keys); add approvers, or their own keys, to the worker's config";
  }
  const who = left.length === 1 ? left[0]! : `${left.slice(0, -1).join(', ')} or ${left[left.length - 1]}`;
  return `needs ${missing} more ${approvalsWord} from ${who}${rules.identity === 'signed' ? ' (signed)' : ''}`;
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
