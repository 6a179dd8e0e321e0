/**
 * The gate's rules, in one pure module: who may start, approve, reject, decide and cancel a release, how a
 * signed statement is checked, what counts towards the quorum, and how to say what the gate still needs.
 * The workflow, the plan, `gantry start` and the status formatting all call these, so they never disagree.
 * The rules themselves and their wording are in ./gate-rules (re-exported here); this module adds the checks.
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
import type { Actor, GateRules, PrincipalKey, VoteRecord } from './gate-rules';

export * from './gate-rules';

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
