/**
 * Everything the release takes from outside while it runs: votes at the approval gate, decisions after a failed
 * step, cancellation, the status query, and a default handler for signal names that do not exist.
 *
 * Every message is judged by the gate's rules (src/shared/gate.ts) before it counts: in signed mode the
 * statement's signature, what it names (release, run, digest, decision) and its expiry; then who may do what.
 * Signal handlers never throw: a refusal is recorded in the status, bounded (the last REFUSED_KEPT entries plus
 * a count), so no payload, however large or many, can wedge or end the release. Update validators refuse
 * before anything is recorded, so the caller gets the reason and the history stays clean.
 */
import { CancellationScope, condition, setCurrentDetails, setDefaultSignalHandler, setHandler, workflowInfo } from '@temporalio/workflow';
import {
  approveCommand,
  declaredActor,
  describeNeeds,
  operatorRefusal,
  quorumMet,
  verifySigned,
  voteRefusal,
  webUiInstruction,
  type Actor,
  type Expectation,
  type GateRules,
} from '../shared/gate';
import { durationMs } from '../shared/duration';
import {
  approveSignal,
  approveUpdate,
  cancelSignal,
  cancelUpdate,
  claimedName,
  decideSignal,
  decideUpdate,
  HANDLER_DESCRIPTIONS,
  parseCancel,
  parseDecision,
  parseVote,
  rejectSignal,
  rejectUpdate,
  SIGNAL_NAMES,
  statusQuery,
  type Decision,
  type GateAnswer,
  type GateState,
} from '../shared/release';
import { looksSigned, type SignedStatement } from '../shared/statement';
import { STEP_TITLES } from '../shared/steps';
import { displayText, MAX_NAME, REFUSED_KEPT } from '../shared/text';
import type { AnnouncedApproval } from '../activities/types';
import { ReleaseStopped, type ReleaseRun } from './run';
import { countVote, observeGateWait, secondsBetween } from './metrics';

type Via = 'signal' | 'update';
type Judged<T> = { ok: true; value: T } | { ok: false; problem: string };
type VoteKind = 'approve' | 'reject';

interface Identified {
  actor: Actor;
  reason?: string;
  decision?: string;
  /** The statement as signed, for the record (signed mode). */
  signed?: SignedStatement;
}

/** The approval gate and the other messages of one release. */
export class ReleaseMessages {
  constructor(private readonly run: ReleaseRun) {}

  install(): void {
    const run = this.run;
    setHandler(statusQuery, () => run.status, { description: HANDLER_DESCRIPTIONS.status });

    // Signals (Web UI, `temporal workflow signal`): never throw; a refusal is recorded in the status.
    for (const [def, kind] of [[approveSignal, 'approve'], [rejectSignal, 'reject']] as const) {
      setHandler(def, (payload) => {
        const v = this.judgeVote(kind, payload);
        this.note('signal', kind, v, payload);
        if (v.ok) this.applyVote(kind, v.value, 'signal');
        else this.refuse(kind, 'signal', v.problem, payload);
      }, { description: HANDLER_DESCRIPTIONS[kind] });
    }
    setHandler(decideSignal, (payload) => {
      const d = this.judgeDecision(payload);
      this.note('signal', 'decide', d, payload);
      if (d.ok) this.applyDecision(d.value);
      else this.refuse('decide', 'signal', d.problem, payload);
    }, { description: HANDLER_DESCRIPTIONS.decide });
    setHandler(cancelSignal, (payload) => {
      const c = this.judgeCancel(payload);
      this.note('signal', 'cancel', c, payload);
      if (c.ok) this.applyCancel(c.value);
      else this.refuse('cancel', 'signal', c.problem, payload);
    }, { description: HANDLER_DESCRIPTIONS.cancel });
    setDefaultSignalHandler((name, ...args) => {
      const why = `there is no signal named "${displayText(name, 40)}"; the signals are ${SIGNAL_NAMES.join(', ')}`;
      this.note('signal', name, { ok: false, problem: why }, args[0]);
      this.refuse(name, 'signal', why, args[0]);
    });

    // Updates (`gantry approve`, `decide`, `cancel`): the validator refuses; the handler judges again (on replay
    // only the handler runs) and applies.
    for (const [def, kind] of [[approveUpdate, 'approve'], [rejectUpdate, 'reject']] as const) {
      setHandler(def, (payload) => this.applyVote(kind, this.noted('update', kind, this.judgeVote(kind, payload), payload), 'update'), {
        validator: (payload) => void must(this.judgeVote(kind, payload)),
        description: HANDLER_DESCRIPTIONS[kind],
      });
    }
    setHandler(decideUpdate, (payload) => this.applyDecision(this.noted('update', 'decide', this.judgeDecision(payload), payload)), {
      validator: (payload) => void must(this.judgeDecision(payload)),
      description: HANDLER_DESCRIPTIONS.decide,
    });
    setHandler(cancelUpdate, (payload) => this.applyCancel(this.noted('update', 'cancel', this.judgeCancel(payload), payload)), {
      validator: (payload) => void must(this.judgeCancel(payload)),
      description: HANDLER_DESCRIPTIONS.cancel,
    });

    if (!run.legacy) this.watchTemporalCancellation();
  }

  // ---- identity ----

  /**
   * Who sent a message: a verified signed statement, or (declared mode) the name typed. In signed mode an
   * unsigned message never counts, with the instruction to sign it.
   */
  private identify(action: Expectation['action'], payload: unknown, expect: Omit<Expectation, 'action' | 'workflow'>, nameField: string): Judged<Identified> {
    const rules = this.run.rules;
    if (!rules) return { ok: false, problem: 'the release is still resolving its plan; try again in a moment' };
    const { service, version } = this.run.status.request;
    if (looksSigned(payload)) {
      const v = verifySigned(payload, { action, workflow: this.run.status.workflowId, ...expect }, rules.keys, Date.now());
      if (!v.ok) return { ok: false, problem: `signed ${action} refused: ${v.problem}` };
      const s = v.value.statement;
      const signed = payload as SignedStatement;
      return {
        ok: true,
        value: {
          actor: v.value.actor, ...(s.reason ? { reason: s.reason } : {}), ...(s.decision ? { decision: s.decision } : {}),
          signed: { statement: signed.statement, signature: signed.signature },
        },
      };
    }
    if (rules.identity === 'signed') {
      return {
        ok: false,
        problem: `${service} requires signed decisions, and this ${action} is not signed, so it does not count. ` +
          `Run \`gantry ${action}${action === 'decide' ? ' retry|abort' : ''} ${service} ${version} --as <name>\` with your SSH key, ` +
          `or paste the JSON that the same command prints with --print into the Web UI's signal dialog`,
      };
    }
    const parsed = action === 'decide' ? parseDecision(payload) : action === 'cancel' ? parseCancel(payload) : parseVote(payload);
    if (!parsed.ok) return { ok: false, problem: `malformed ${action}: ${parsed.problem}` };
    const value = parsed.value as unknown as { reason?: string; decision?: string } & Record<string, unknown>;
    const actor = declaredActor(value[nameField], nameField);
    if (!actor.ok) return actor;
    return { ok: true, value: { actor: actor.value, ...(value.reason ? { reason: value.reason } : {}), ...(value.decision ? { decision: value.decision } : {}) } };
  }

  // ---- the approval gate ----

  /** Open the gate for the image built, and wait until it is approved, rejected or times out. */
  async gate(imageRef: string, digest: string): Promise<void> {
    const run = this.run;
    const gate = run.status.gate;
    const rules = run.rules!;
    const timeout = run.input.config.timeouts.approval;
    gate.state = 'open';
    gate.digest = digest;
    gate.openedAt = new Date().toISOString();
    gate.deadline = new Date(Date.now() + durationMs(timeout)).toISOString();
    gate.needs = describeNeeds(gate.approvals, rules, run.status.requester);
    run.setStage('awaiting-approval');
    const { service, version } = run.status.request;
    run.status.message = `Waiting at the approval gate: it ${gate.needs} before production. ` +
      `Approve with \`${approveCommand(service, version, rules)}\`. ${webUiInstruction(service, version, rules)}.`;
    setCurrentDetails(`**Awaiting approval** of ${imageRef} (${digest}): ${run.status.message}`);
    const decided = await condition(() => gate.state !== 'open', timeout);
    gate.closedAt = new Date().toISOString();
    observeGateWait(secondsBetween(gate.openedAt, gate.closedAt), decided ? ((gate.state as GateState) === 'rejected' ? 'rejected' : 'approved') : 'timed_out', service);
    if (!decided) {
      gate.state = 'timed_out';
      run.ledger.event({ kind: 'timeout', name: 'approve', actor: 'gantry', verdict: 'recorded', detail: `no decision at the gate within ${String(timeout)}` });
      throw new ReleaseStopped('aborted', `No decision at the approval gate within ${String(timeout)}; ` +
        'nothing was deployed to production. Start the release again when approvers are available.');
    }
    if ((gate.state as GateState) === 'rejected') {
      const r = gate.rejection;
      throw new ReleaseStopped('rejected', `Rejected by ${r?.approver ?? '?'}${r?.reason ? `: ${r.reason}` : ''}; nothing was deployed to production.`);
    }
    setCurrentDetails(`Approved by ${this.approvers().join(', ')}`);
  }

  approvers(): string[] {
    return this.run.status.gate.approvals.map((v) => v.approver);
  }

  /** The approvals as the release record keeps them: who, verified by which key, and the statement they signed. */
  approvalRecords(): AnnouncedApproval[] {
    return this.run.status.gate.approvals.map((v) => ({
      approver: v.approver, verified: v.verified, at: v.at, via: v.via,
      ...(v.fingerprint ? { fingerprint: v.fingerprint } : {}), ...(v.reason ? { reason: v.reason } : {}),
      ...(v.statement && v.signature ? { statement: v.statement, signature: v.signature } : {}),
    }));
  }

  private judgeVote(kind: VoteKind, payload: unknown): Judged<Identified> {
    const run = this.run;
    const gate = run.status.gate;
    // The gate's state first: cheap, and it spares signature checks for floods at a closed gate.
    const rules: GateRules | undefined = run.rules;
    const early = voteRefusal(kind, { principal: '', verified: false }, { service: run.status.request.service, state: gate.state, stage: run.status.stage, approvals: [], requester: run.status.requester }, rules ?? EMPTY_RULES);
    if (early && gate.state !== 'open') return { ok: false, problem: early };
    const who = this.identify(kind, payload, { run: workflowInfo().runId, digest: gate.digest ?? '' }, 'approver');
    if (!who.ok) return who;
    const why = voteRefusal(kind, who.value.actor, { service: run.status.request.service, state: gate.state, stage: run.status.stage, approvals: gate.approvals, requester: run.status.requester }, rules!);
    return why ? { ok: false, problem: why } : who;
  }

  private applyVote(kind: VoteKind, v: Identified, via: Via): GateAnswer {
    const gate = this.run.status.gate;
    const rules = this.run.rules!;
    const vote = {
      approver: v.actor.principal,
      verified: v.actor.verified,
      ...(v.actor.fingerprint ? { fingerprint: v.actor.fingerprint } : {}),
      ...(v.reason ? { reason: v.reason } : {}),
      at: new Date().toISOString(),
      via,
      ...(v.signed ? { statement: v.signed.statement, signature: v.signed.signature } : {}),
    };
    if (kind === 'reject') {
      gate.rejection = vote;
      gate.state = 'rejected';
    } else {
      gate.approvals.push(vote);
      if (quorumMet(gate.approvals, rules)) gate.state = 'approved';
    }
    gate.needs = describeNeeds(gate.approvals, rules, this.run.status.requester);
    const message = gate.state === 'open'
      ? `Approval by ${vote.approver} recorded: ${gate.approvals.length} of ${gate.required}; waiting for more (the gate ${gate.needs}).`
      : gate.state === 'approved' ? 'Approved: production deploy starts now.' : `Rejected by ${vote.approver}: the release stops.`;
    return { gate: gate.state, approvals: gate.approvals.length, required: gate.required, message };
  }

  // ---- decisions after a step used up its retries ----

  private judgeDecision(payload: unknown): Judged<Identified & { decision: Decision }> {
    const run = this.run;
    const pending = run.status.pendingDecision;
    if (!pending) {
      // A payload that is malformed anyway says so first (declared mode), as the operator typed it.
      if (run.rules?.identity === 'declared' && !looksSigned(payload)) {
        const p = parseDecision(payload);
        if (!p.ok) return { ok: false, problem: `malformed decide: ${p.problem}` };
      }
      return { ok: false, problem: 'no decision is pending: decide applies only after a step used up its retries' };
    }
    if (run.decision) return { ok: false, problem: 'a decision was already taken' };
    const who = this.identify('decide', payload, { run: workflowInfo().runId, step: pending.id }, 'operator');
    if (!who.ok) return who;
    if (who.value.decision !== 'retry' && who.value.decision !== 'abort') {
      return { ok: false, problem: `the decision must be retry or abort, not "${displayText(who.value.decision, 20)}"` };
    }
    const why = operatorRefusal(who.value.actor, 'decide', run.rules!);
    if (why) return { ok: false, problem: why };
    return { ok: true, value: { ...who.value, decision: who.value.decision } };
  }

  private applyDecision(d: Identified & { decision: Decision }): string {
    const run = this.run;
    run.decision = { decision: d.decision, actor: d.actor, ...(d.reason ? { reason: d.reason } : {}) };
    const step = run.status.pendingDecision?.step ?? 'preflight';
    return d.decision === 'retry' ? `Retrying ${STEP_TITLES[step]}.` : `Aborting the release at ${STEP_TITLES[step]}.`;
  }

  // ---- cancellation ----

  private judgeCancel(payload: unknown): Judged<Identified> {
    const run = this.run;
    if (run.status.cancellation.requested) return { ok: false, problem: `cancellation was already requested${run.status.cancellation.by ? ` by ${run.status.cancellation.by}` : ''}` };
    const who = this.identify('cancel', payload, { run: workflowInfo().runId }, 'operator');
    if (!who.ok) return who;
    const why = operatorRefusal(who.value.actor, 'cancel', run.rules!);
    return why ? { ok: false, problem: why } : who;
  }

  private applyCancel(c: Identified): string {
    const run = this.run;
    run.status.cancellation = {
      requested: true,
      at: new Date().toISOString(),
      by: c.actor.principal,
      ...(c.reason ? { note: `Cancelled by ${c.actor.principal}: ${c.reason}` } : {}),
    };
    run.scope.cancel();
    const prod = run.stepStatus('deployProduction').state !== 'pending';
    return prod
      ? 'Cancellation recorded: production work already begun (deploy, health, any rollback) finishes first, then the release ends cancelled.'
      : 'Cancelled: nothing was deployed to production.';
  }

  /**
   * Temporal's own cancellation request (Web UI "Request Cancellation", `temporal workflow cancel`) carries no
   * identity. Declared mode honours it; signed mode records it as refused and keeps going, since the
   * cancellation of a release is a decision like any other (terminate still stops anything, and is recorded by
   * the server).
   */
  private watchTemporalCancellation(): void {
    const run = this.run;
    CancellationScope.current().cancelRequested.catch(() => {
      const honour = () => {
        if (run.status.cancellation.requested) return;
        run.ledger.cancelRequest('accepted');
        run.status.cancellation = { requested: true, at: new Date().toISOString() };
        run.scope.cancel();
      };
      if (run.rules) {
        if (run.rules.identity === 'declared') honour();
        else this.refuseTemporalCancel();
        return;
      }
      // Not resolved yet: judge it once the plan says which mode applies.
      void CancellationScope.nonCancellable(() => condition(() => run.rules !== undefined || run.status.outcome !== undefined)).then(() => {
        if (run.status.outcome !== undefined) return;
        if (run.rules?.identity === 'signed') this.refuseTemporalCancel();
        else honour();
      }, () => undefined);
    });
  }

  private refuseTemporalCancel(): void {
    const { service, version } = this.run.status.request;
    const why = `${service} requires signed decisions: a cancellation request through Temporal carries no identity and was ignored. ` +
      `Cancel with \`gantry cancel ${service} ${version}\` (signed), or terminate the workflow to stop it regardless (recorded by the server)`;
    this.run.ledger.cancelRequest('refused', why);
    this.refuse('cancel', 'temporal', why, undefined);
  }

  // ---- the ledger and the refused attempts ----

  /** Put a handled message on the ledger (src/workflows/ledger.ts), accepted with its actor or refused with why. */
  private note(kind: 'signal' | 'update', name: string, j: Judged<Identified>, payload: unknown): void {
    countVote(name, j.ok, this.run.status.request.service);
    if (j.ok) {
      const a = j.value.actor;
      this.run.ledger.message({
        kind, name, actor: a.principal, verified: a.verified, ...(a.fingerprint ? { fingerprint: a.fingerprint } : {}), verdict: 'accepted',
        ...(j.value.reason ? { detail: j.value.reason } : {}),
      });
    } else {
      const who = claimedName(payload);
      this.run.ledger.message({ kind, name, ...(who ? { actor: who } : {}), verified: false, verdict: 'refused', why: j.problem });
    }
  }

  /** An accepted update: on the ledger, then applied (its validator judged it the same way a moment before). */
  private noted<T extends Identified>(kind: 'update', name: string, j: Judged<T>, payload: unknown): T {
    const v = must(j);
    this.note(kind, name, j, payload);
    return v;
  }

  private refuse(name: string, via: Via | 'temporal', why: string, payload: unknown): void {
    const g = this.run.status.gate;
    g.refusedCount += 1;
    const who = claimedName(payload);
    g.refused.push({
      name: displayText(name, 40),
      via,
      at: new Date().toISOString(),
      why: displayText(why, 400),
      ...(who ? { approver: displayText(who, MAX_NAME) } : {}),
    });
    if (g.refused.length > REFUSED_KEPT) g.refused.splice(0, g.refused.length - REFUSED_KEPT);
  }
}

const EMPTY_RULES: GateRules = { identity: 'signed', approvers: [], required: 1, allowSelfApproval: false, operators: [], keys: [] };

function must<T>(j: Judged<T>): T {
  if (!j.ok) throw new Error(j.problem);
  return j.value;
}
