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
  breakGlassMet,
  declaredActor,
  describeNeeds,
  describeRule,
  operatorRefusal,
  quorumMet,
  verifySigned,
  voteRefusal,
  webUiInstruction,
  type Actor,
  type Expectation,
  type GateRules,
} from '../shared/gate';
import type { EnvironmentStep } from '../shared/environments';
import { gateSummaryMarkdown } from '../shared/notices';
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
  type GateFreeze,
  type GateState,
} from '../shared/release';
import { looksSigned, type SignedStatement } from '../shared/statement';

import { displayText, MAX_NAME, REFUSED_KEPT } from '../shared/text';
import type { AnnouncedApproval } from '../activities/types';
import { FREEZE_RECHECK_MS, ReleaseStopped, type ReleaseRun } from './run';
import { countVote, observeGateWait, secondsBetween } from './metrics';

type Via = 'signal' | 'update';
type Judged<T> = { ok: true; value: T } | { ok: false; problem: string };
type VoteKind = 'approve' | 'reject';

interface Identified {
  actor: Actor;
  reason?: string;
  decision?: string;
  /** The environment a signed vote names (absent: the last environment's gate, as statements signed before environments say). */
  environment?: string;
  /** A break-glass approval (signed: `decision: break-glass`; declared: `"breakGlass": true`). */
  breakGlass?: boolean;
  /** The statement as signed, for the record (signed mode). */
  signed?: SignedStatement;
}

/** The approval gate and the other messages of one release. */
export class ReleaseMessages {
  /** The rules of the gate that is open (or was last open); before any gate opens, the last environment's. */
  private gateRules: GateRules | undefined;
  /** Counts applied votes, so the gate's wait wakes up on each one. */
  private votesApplied = 0;
  /** Counts the freeze checks the gate made after its quorum was met (an approving update waits for the next). */
  private freezeChecksDone = 0;
  /** Shows the open gate's summary as the workflow's current details (the Web UI); set only while a gate is open. */
  private showGate: (() => void) | undefined;

  constructor(private readonly run: ReleaseRun) {}

  /** The rules votes are judged by now. */
  private get rules(): GateRules | undefined {
    return this.gateRules ?? this.run.rules;
  }

  install(): void {
    const run = this.run;
    setHandler(statusQuery, () => run.status, { description: HANDLER_DESCRIPTIONS.status });
    if (run.governed) run.listenToLanes();

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
      setHandler(def, async (payload) => {
        const answer = this.applyVote(kind, this.noted('update', kind, this.judgeVote(kind, payload), payload), 'update');
        return run.governed ? this.settledAnswer(answer) : answer;
      }, {
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
      if ((action === 'approve' || action === 'reject') && s.decision !== undefined && s.decision !== 'break-glass') {
        return { ok: false, problem: `signed ${action} refused: "${displayText(s.decision, 20)}" is not something a vote can say (only break-glass)` };
      }
      return {
        ok: true,
        value: {
          actor: v.value.actor, ...(s.reason ? { reason: s.reason } : {}),
          ...(s.decision && s.decision !== 'break-glass' ? { decision: s.decision } : {}),
          ...(s.decision === 'break-glass' ? { breakGlass: true } : {}),
          ...(s.environment ? { environment: s.environment } : {}),
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
    const value = parsed.value as unknown as { reason?: string; decision?: string; breakGlass?: boolean } & Record<string, unknown>;
    const actor = declaredActor(value[nameField], nameField);
    if (!actor.ok) return actor;
    return {
      ok: true,
      value: {
        actor: actor.value, ...(value.reason ? { reason: value.reason } : {}), ...(value.decision ? { decision: value.decision } : {}),
        ...(value.breakGlass ? { breakGlass: true } : {}),
      },
    };
  }

  // ---- the approval gate ----

  /**
   * Open an environment's gate for the image built, and wait until it is approved (and, for releases with
   * governance, not frozen, or let through by break-glass), rejected or times out.
   */
  async gate(env: EnvironmentStep, imageRef: string, digest: string): Promise<void> {
    const run = this.run;
    const rules = run.governed ? run.rulesFor(env) : run.rules!;
    this.openGate(env, rules, digest);
    const gate = run.status.gate;
    const timeout = run.input.config.timeouts.approval;
    const { service } = run.status.request;
    run.status.message = this.waitingMessage(env, rules);
    // What the open gate says while it waits for votes: what it still needs, and a freeze that would hold it.
    const waiting = (): string => {
      const frozen = this.freezeWords().freeze;
      return frozen ? `${this.waitingMessage(env, rules)} Note: ${frozen}; even once approved it waits until the freeze ends (or for break-glass).` : this.waitingMessage(env, rules);
    };
    // The current details follow the gate: each vote and freeze check shows it again. Setting them writes no
    // command and no history event (only the metadata query reads them), so releases recorded before replay.
    const details = () => setCurrentDetails(run.governed
      ? gateSummaryMarkdown('gate-opened', { ...run.summaryBase(env, rules), ...this.freezeWords() })
      : `**Awaiting approval** of ${imageRef} (${digest}): ${run.status.message}`);
    // After each vote: the status's message and the details say what the gate needs now (once the votes are in,
    // the freeze check that follows says what holds it).
    this.showGate = () => {
      if (!gate.quorum) run.status.message = waiting();
      details();
    };
    details();
    run.notify('gate-opened', run.summaryBase(env, rules));
    const deadlineMs = Date.parse(gate.deadline!);
    const notices = run.governed ? run.input.config.notices : undefined;
    let reminderAt = notices ? deadlineMs - durationMs(notices.reminderBefore) : Infinity;
    if (reminderAt <= Date.now()) reminderAt = Infinity;
    let recheckAt = Infinity;
    let seen = -1;
    // Governed: show what freezes hold the gate from the start (the check that counts runs again once the votes are in).
    if (run.governed) {
      const f = await run.checkFreeze(env);
      if (gate.state === 'open' && !gate.quorum) {
        this.noteFreeze(f);
        if (f.frozen) run.status.message = waiting();
        details();
      }
    }
    if (!run.governed) {
      // Releases recorded before governance wait exactly as they did (one timer for the whole gate), so they replay.
      await condition(() => gate.state !== 'open', timeout);
    } else for (;;) {
      if (gate.state !== 'open') break;
      // Once the votes are in, the freezes are checked after each new vote and whenever a freeze may have ended.
      if (gate.quorum && (seen !== this.votesApplied || Date.now() >= recheckAt)) {
        seen = this.votesApplied;
        const f = await run.checkFreeze(env);
        this.noteFreeze(f);
        if ((gate.state as GateState) !== 'open') break;
        if (!f.frozen) { gate.state = 'approved'; this.freezeChecksDone += 1; break; }
        if (breakGlassMet(gate.breakGlass, rules)) {
          gate.state = 'approved';
          const bg = gate.breakGlass!;
          run.ledger.event({ kind: 'break-glass', name: 'break-glass', actor: bg.map((v) => v.approver).join(', '), verdict: 'recorded', detail: `passed the freeze: ${bg.map((v) => v.reason).join('; ')}` });
          run.notify('break-glass', { ...run.summaryBase(env, rules), breakGlass: { by: bg.map((v) => v.approver).join(', '), reason: bg.map((v) => v.reason ?? '').join('; ') }, ...this.freezeWords() });
          break;
        }
        recheckAt = Math.min(Date.now() + FREEZE_RECHECK_MS, f.until ? Date.parse(f.until) + 1 : Infinity);
        run.status.message = this.frozenMessage(env, rules);
        this.freezeChecksDone += 1;
        details();
      }
      const wakeAt = Math.min(deadlineMs, reminderAt, gate.quorum ? recheckAt : Infinity);
      const votes = this.votesApplied;
      const woken = await condition(() => gate.state !== 'open' || this.votesApplied !== votes, Math.max(1, wakeAt - Date.now()));
      if (woken) continue;
      if (Date.now() >= deadlineMs) break;
      if (Date.now() >= reminderAt) {
        reminderAt = Infinity;
        run.notify('gate-reminder', { ...run.summaryBase(env, rules), ...this.freezeWords() });
      }
    }
    this.showGate = undefined;
    gate.closedAt = new Date().toISOString();
    const decided = (gate.state) !== 'open';
    observeGateWait(secondsBetween(gate.openedAt, gate.closedAt), decided ? ((gate.state) === 'rejected' ? 'rejected' : 'approved') : 'timed_out', service);
    if (!decided) {
      gate.state = 'timed_out';
      run.ledger.event({ kind: 'timeout', name: 'approve', actor: 'gantry', verdict: 'recorded', detail: `no decision at the gate within ${String(timeout)}` });
      run.notify('gate-timed-out', run.summaryBase(env, rules));
      const frozen = gate.quorum ? ` It had its approvals but stayed frozen (${this.freezeWords().freeze ?? 'frozen'}).` : '';
      throw new ReleaseStopped('aborted', `No decision at the ${env.final ? '' : `${env.name} `}approval gate within ${String(timeout)}; ` +
        `nothing was deployed to ${env.final ? 'production' : env.name}.${frozen} Start the release again when approvers are available.`);
    }
    if ((gate.state) === 'rejected') {
      const r = gate.rejection;
      throw new ReleaseStopped('rejected', `Rejected by ${r?.approver ?? '?'}${r?.reason ? `: ${r.reason}` : ''}; nothing was deployed to ${env.final ? 'production' : env.name}.`);
    }
    setCurrentDetails(`Approved by ${this.approvers().join(', ')}${gate.breakGlass?.length ? ` (break-glass by ${gate.breakGlass.map((v) => v.approver).join(', ')})` : ''}`);
  }

  /** Reset the gate for this environment (an earlier gate goes on the record in `passed`) and open it. */
  private openGate(env: EnvironmentStep, rules: GateRules, digest: string): void {
    const run = this.run;
    const g = run.status.gate;
    if (g.state !== 'not_open' && g.state !== 'closed' && g.environment) {
      (g.passed ??= []).push({
        environment: g.environment, state: g.state, approvals: g.approvals,
        ...(g.rejection ? { rejection: g.rejection } : {}), ...(g.breakGlass ? { breakGlass: g.breakGlass } : {}),
        ...(g.openedAt ? { openedAt: g.openedAt } : {}), ...(g.closedAt ? { closedAt: g.closedAt } : {}),
      });
      g.approvals = [];
      delete g.rejection;
      delete g.breakGlass;
      delete g.freeze;
      delete g.quorum;
    }
    this.gateRules = rules;
    g.state = 'open';
    g.digest = digest;
    g.openedAt = new Date().toISOString();
    g.deadline = new Date(Date.now() + durationMs(run.input.config.timeouts.approval)).toISOString();
    g.required = rules.required;
    g.approvers = rules.approvers;
    g.identity = rules.identity;
    if (run.governed) {
      g.environment = env.name;
      g.rule = describeRule(rules);
    }
    g.needs = describeNeeds(g.approvals, rules, run.status.requester);
    run.setStage('awaiting-approval');
  }

  private waitingMessage(env: EnvironmentStep, rules: GateRules): string {
    const { service, version } = this.run.status.request;
    const g = this.run.status.gate;
    const h = this.run.status.hotfix;
    const hotfix = h && env.final ? ` HOTFIX (skips ${h.skipped.join(', ') || 'nothing'}): ${h.reason}.` : '';
    const where = this.run.governed ? `the ${env.name} approval gate` : 'the approval gate';
    return `Waiting at ${where}: it ${g.needs} before ${env.final ? 'production' : env.name}.${hotfix} ` +
      `Approve with \`${approveCommand(service, version, rules)}\`. ${webUiInstruction(service, version, rules)}.`;
  }

  private frozenMessage(env: EnvironmentStep, rules: GateRules): string {
    const { service, version } = this.run.status.request;
    const words = this.freezeWords().freeze ?? 'frozen';
    const bg = rules.breakGlass;
    const pass = bg
      ? `It passes when the freeze ends, or with ${bg.required} break-glass approval${bg.required === 1 ? '' : 's'} from ${bg.group} ` +
        `(${bg.members.join(', ')}): \`gantry approve ${service} ${version} --as <name> --break-glass --reason "…"\` (recorded and announced).`
      : 'It passes when the freeze ends (the service has no break-glass group).';
    return `Approved, but ${service} ${env.name} is frozen: ${words}. The release waits at the gate. ${pass}`;
  }

  private noteFreeze(f: { frozen: boolean; freezes: GateFreeze[]; until?: string }): void {
    this.run.status.gate.freeze = { frozen: f.frozen, checkedAt: new Date().toISOString(), freezes: f.freezes, ...(f.until ? { until: f.until } : {}) };
  }

  /** The freezes holding the gate, in words: "frozen by alice: incident 123 (until 18:00Z); deny window weekend". */
  private freezeWords(): { freeze?: string } {
    const f = this.run.status.gate.freeze;
    if (!f?.frozen) return {};
    const parts = f.freezes.map((x) => x.kind === 'window'
      ? `deny window ${x.id}${x.reason ? ` (${x.reason})` : ''}${x.until ? ` until ${x.until}` : ''}`
      : `frozen${x.by ? ` by ${x.by}` : ''}${x.since ? ` since ${x.since}` : ''}: ${x.reason}${x.until ? ` (until ${x.until})` : ' (until unfrozen)'}`);
    return { freeze: parts.join('; ') };
  }

  /** What governance let happen in this release, in words, for the announcement and the record. */
  governanceNotes(): string[] {
    const st = this.run.status;
    const notes: string[] = [];
    if (st.hotfix) notes.push(`Hotfix by ${st.requester.principal}: skipped ${st.hotfix.skipped.join(', ') || 'nothing'} (${st.hotfix.reason}).`);
    for (const g of [...(st.gate.passed ?? []), { environment: st.gate.environment, breakGlass: st.gate.breakGlass, freeze: st.gate.freeze }]) {
      for (const v of g.breakGlass ?? []) notes.push(`Break-glass at the ${g.environment ?? 'production'} gate by ${v.approver}: ${v.reason ?? ''}.`);
    }
    for (const v of st.gate.approvals) if (v.changedToRejectAt) notes.push(`${v.approver} changed an approval into a rejection.`);
    for (const d of st.decisions) if (d.decision === 'skip') notes.push(`${this.run.stepStatus(d.step).title} was skipped by decision of ${d.operator}${d.reason ? `: ${d.reason}` : ''}.`);
    return notes;
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
    const rules: GateRules | undefined = this.rules;
    const view = (approvals: GateView['approvals']): GateView => ({
      service: run.status.request.service, state: gate.state, stage: run.status.stage, approvals, requester: run.status.requester,
      ...(gate.breakGlass ? { breakGlass: gate.breakGlass } : {}),
    });
    const early = voteRefusal(kind, { principal: '', verified: false }, view([]), rules ?? EMPTY_RULES);
    if (early && gate.state !== 'open') return { ok: false, problem: early };
    const who = this.identify(kind, payload, { run: workflowInfo().runId, digest: gate.digest ?? '' }, 'approver');
    if (!who.ok) return who;
    // A signed vote names the gate's environment; one that names none was signed for the last gate (production).
    const env = rules?.environment;
    if (run.governed && who.value.signed && env !== undefined && (who.value.environment ?? (rules?.final ? env : undefined)) !== env) {
      return { ok: false, problem: `the signed ${kind} is for the ${who.value.environment ?? 'production'} gate, but the gate open now is ${env}'s; sign a new one (\`gantry ${kind}\` names the open gate)` };
    }
    if (who.value.breakGlass && !run.governed) return { ok: false, problem: 'this release predates break-glass approvals' };
    const why = voteRefusal(kind, who.value.actor, view(gate.approvals), rules!, { ...(who.value.reason ? { reason: who.value.reason } : {}), ...(who.value.breakGlass ? { breakGlass: true } : {}) });
    return why ? { ok: false, problem: why } : who;
  }

  private applyVote(kind: VoteKind, v: Identified, via: Via): GateAnswer {
    const run = this.run;
    const gate = run.status.gate;
    const rules = this.rules!;
    const vote = {
      approver: v.actor.principal,
      verified: v.actor.verified,
      ...(v.actor.fingerprint ? { fingerprint: v.actor.fingerprint } : {}),
      ...(v.reason ? { reason: v.reason } : {}),
      at: new Date().toISOString(),
      via,
      ...(v.signed ? { statement: v.signed.statement, signature: v.signed.signature } : {}),
    };
    this.votesApplied += 1;
    if (kind === 'reject') {
      // A single rejection vetoes. An approver who approved before changes the vote: both stay on the record.
      const earlier = gate.approvals.find((a) => a.approver === vote.approver && !a.changedToRejectAt);
      if (earlier) earlier.changedToRejectAt = vote.at;
      gate.rejection = vote;
      gate.state = 'rejected';
    } else if (v.breakGlass) {
      (gate.breakGlass ??= []).push(vote);
    } else {
      gate.approvals.push(vote);
      if (quorumMet(gate.approvals, rules)) {
        // Governed releases check the freezes once the votes are in (the gate's wait does it); older ones pass at once.
        if (run.governed) gate.quorum = true;
        else gate.state = 'approved';
      }
    }
    gate.needs = describeNeeds(gate.approvals, rules, run.status.requester);
    // What the gate still needs changed: the Web UI says so at once (a closed gate's details come when it closes).
    if (gate.state === 'open') this.showGate?.();
    const target = this.target();
    const message = v.breakGlass
      ? `Break-glass approval by ${vote.approver} recorded (${gate.breakGlass!.length} of ${rules.breakGlass?.required ?? 1}); it lets the release through a freeze once the gate has its approvals.`
      : gate.state === 'rejected' ? `Rejected by ${vote.approver}: the release stops; nothing was deployed to ${target}.`
        : gate.state === 'approved' ? `Approved: ${target} deploy starts now.`
          : gate.quorum ? `Approval by ${vote.approver} recorded: the gate has the approvals it needs; the ${target} deploy starts once no freeze holds it.`
            : `Approval by ${vote.approver} recorded: ${gate.approvals.length} of ${gate.required}; waiting for more (the gate ${gate.needs}).`;
    return { gate: gate.state, approvals: gate.approvals.length, required: gate.required, message };
  }

  /** What the open gate lets change: its environment, or production. */
  private target(): string {
    const r = this.rules;
    return r?.final === false && r.environment ? r.environment : 'production';
  }

  /**
   * An approval that completed the quorum: answer once the gate has checked the freezes, so `gantry approve`
   * says whether production deploys now or the release waits for a freeze.
   */
  private async settledAnswer(answer: GateAnswer): Promise<GateAnswer> {
    const gate = this.run.status.gate;
    if (!gate.quorum || gate.state !== 'open') return answer;
    const checks = this.freezeChecksDone;
    // Not cancellable: in signed mode Temporal's own cancellation request is ignored, and must not fail the answer.
    await CancellationScope.nonCancellable(() => condition(() => gate.state !== 'open' || this.freezeChecksDone > checks));
    const target = this.target();
    const state = gate.state as GateState;
    const message = state === 'approved' ? `Approved: ${target} deploy starts now.`
      : state === 'open' ? this.run.status.message : `The gate closed: ${state.replace('_', ' ')}.`;
    return { gate: state, approvals: gate.approvals.length, required: gate.required, message };
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
    const allowed = pending.allowed ?? ['retry', 'abort'];
    if (who.value.decision === 'skip' && !allowed.includes('skip')) {
      return { ok: false, problem: `${run.stepStatus(pending.step).title} cannot be skipped (only steps the config marks skippable: steps.<step>.skippable: true, for smoke and announce); decide retry or abort` };
    }
    if (!allowed.includes(who.value.decision as Decision)) {
      return { ok: false, problem: `the decision must be ${allowed.join(' or ')}, not "${displayText(who.value.decision, 20)}"` };
    }
    const why = operatorRefusal(who.value.actor, 'decide', run.rules!);
    if (why) return { ok: false, problem: why };
    return { ok: true, value: { ...who.value, decision: who.value.decision as Decision } };
  }

  private applyDecision(d: Identified & { decision: Decision }): string {
    const run = this.run;
    run.decision = { decision: d.decision, actor: d.actor, ...(d.reason ? { reason: d.reason } : {}) };
    const title = run.stepStatus(run.status.pendingDecision?.step ?? 'preflight').title;
    return d.decision === 'retry' ? `Retrying ${title}.` : d.decision === 'skip' ? `Skipping ${title}; the release goes on.` : `Aborting the release at ${title}.`;
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

type GateView = Parameters<typeof voteRefusal>[2];

const EMPTY_RULES: GateRules = { identity: 'signed', approvers: [], required: 1, allowSelfApproval: false, operators: [], keys: [] };

function must<T>(j: Judged<T>): T {
  if (!j.ok) throw new Error(j.problem);
  return j.value;
}
