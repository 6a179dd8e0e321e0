/**
 * The release runbook.
 *
 *   preflight → tag → build → deploy staging → smoke → approval gate → deploy production → health → announce
 *
 * Read `releaseWorkflow` top to bottom for the runbook; the helpers below it keep the status, the gate and the
 * operator decisions. Deterministic code only: no Node builtins, no I/O (enforced by ESLint).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setDefaultSignalHandler,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState, type ActivityOptions, type SearchAttributeUpdatePair } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import type { DeployResult, ReleaseActivities, ReleaseRef } from '../activities/types';
import { NON_RETRYABLE, ReleaseEndType } from '../shared/errors';
import { planRelease, tagName } from '../shared/plan';
import {
  approveSignal,
  approveUpdate,
  decideSignal,
  decideUpdate,
  HANDLER_DESCRIPTIONS,
  parseDecision,
  parseVote,
  rejectSignal,
  rejectUpdate,
  SA_OUTCOME,
  SA_SERVICE,
  SA_STAGE,
  SIGNAL_NAMES,
  startSearchAttributes,
  statusQuery,
  type Decision,
  type GateAnswer,
  type GateState,
  type Outcome,
  type ReleaseInput,
  type ReleasePlan,
  type ReleaseStatus,
  type Stage,
  type StepStatus,
  type VotePayload,
} from '../shared/release';
import { STEP_NAMES, STEP_TITLES, type StepName } from '../shared/steps';

export async function releaseWorkflow(input: ReleaseInput): Promise<ReleaseStatus> {
  const run = new ReleaseRun(input);
  run.installHandlers();
  const { config } = input;
  const release: ReleaseRef = { service: input.service, version: input.version, workflowId: workflowInfo().workflowId };

  if (input.dryRun) return run.finishPlanned(planRelease(input));

  try {
    const pre = await run.step('preflight', (a) => a.preflight({ release, repo: config.repo, github: config.github }),
      (r) => ({ commit: r.commit, checks: r.checks.map((c) => c.name).join(', ') }));

    const tag = await run.step('tag', (a) => a.tag({ release, repo: config.repo, commit: pre.commit }),
      (r) => ({ tag: r.tag, commit: r.commit, created: String(r.created) }));

    const image = await run.step('build', (a) => a.build({
      release, repo: config.repo, image: config.image, build: config.build, github: config.github, tag: tag.tag, commit: tag.commit,
    }), (r) => ({ image: r.image, digest: r.digest, imageRef: r.imageRef, ...(r.ciRunUrl ? { ciRunUrl: r.ciRunUrl } : {}) }));

    const staging = config.environments.staging;
    await run.step('deployStaging', (a) => a.deploy({
      release, environment: 'staging', target: staging.deploy, imageRef: image.imageRef, digest: image.digest,
    }), summarizeDeploy);
    await run.step('smoke', (a) => a.smoke({ release, environment: 'staging', checks: staging.checks, windowMs: msToNumber(staging.window as never) }),
      (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') }));

    await run.approvalGate(image.imageRef);

    // Past the gate: production changes. Once the deploy has begun it, health and any rollback run to the end
    // even if the release is cancelled, so production is never left half-deployed.
    const production = config.environments.production;
    const windowMs = msToNumber(production.window);
    const verdict = await run.irreversible(async () => {
      const deployed = await run.step('deployProduction', (a) => a.deploy({
        release, environment: 'production', target: production.deploy, imageRef: image.imageRef, digest: image.digest,
      }), summarizeDeploy);
      try {
        await run.step('health', (a) => a.health({ release, environment: 'production', checks: production.checks, windowMs }),
          (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') }), { onFailure: 'return' });
        return { healthy: true as const, deployed };
      } catch (err) {
        if (!(err instanceof StepFailed)) throw err;
        await run.step('rollback', (a) => a.rollback({
          release, environment: 'production', target: production.deploy, deployed: deployed.targets, checks: production.checks, windowMs,
        }), (r) => ({ restored: r.restored.map((t) => `${t.target} → ${t.image ?? 'removed'}`).join('; '), healthy: String(r.healthy) }),
        { decideOnAnyFailure: true }); // a failed rollback leaves production broken: an operator decides, never a silent end
        return { healthy: false as const, deployed, reason: err.message };
      }
    });

    // The release is decided by now; an announcement that keeps failing waits for an operator (fix the token,
    // the webhook…, then `decide retry`), and `decide abort` leaves it unannounced without changing the outcome.
    const announced = await run.step('announce', (a) => a.announce({
        release, outcome: verdict.healthy ? 'released' : 'rolled_back', announce: config.announce, github: config.github,
        repo: config.repo, commit: tag.commit, tag: tag.tag, digest: image.digest, imageRef: image.imageRef,
        approvers: run.approvers(), hosts: verdict.deployed.targets.map((t) => t.target), durations: run.durations(),
        ...(image.ciRunUrl ? { ciRunUrl: image.ciRunUrl } : {}), ...(verdict.healthy ? {} : { reason: verdict.reason }),
      }), (r) => ({
        webhook: String(r.webhookSent), audit: String(r.auditLogged),
        ...(r.notesPath ? { notes: r.notesPath } : {}), ...(r.githubReleaseUrl ? { githubRelease: r.githubReleaseUrl } : {}),
      }), { decideOnAnyFailure: true }).then(() => '', (err: unknown) => {
        if (err instanceof StepFailed && err.outcome === 'aborted') return ` The announcement was abandoned by decision (${err.message}); announce by hand.`;
        throw err;
      });

    if (!verdict.healthy) {
      // Failing the execution (GantryReleaseRolledBack) rather than returning: a rolled-back release is not a
      // success, and Temporal's list, UI and alerts should show it as failed.
      throw new ReleaseStopped('rolled_back', `Production health failed (${verdict.reason}); rolled back to the previous image. ` +
        `Fix the release and start a new version; \`gantry history ${input.service} ${input.version}\` shows the failing checks.${announced}`);
    }
    return run.end('succeeded', `${input.service} ${tagName(input.version)} is live in production (${image.imageRef}).${announced}`);
  } catch (err) {
    return run.fail(err);
  }
}

export function summarizeDeploy(r: DeployResult): Record<string, string> {
  return {
    targets: r.targets.map((t) => t.target).join(', '),
    previous: r.targets.map((t) => `${t.target}: ${t.previousImage ?? 'none'}`).join('; '),
    changed: r.targets.filter((t) => t.changed).map((t) => t.target).join(', ') || 'none (already running this digest)',
  };
}

/** Thrown by `step` when a step ends in failure; `run.fail` turns it into the release's outcome. */
export class StepFailed extends Error {
  constructor(readonly stepName: StepName, message: string, readonly outcome: Outcome = 'failed') {
    super(message);
    this.name = 'StepFailed';
  }
}

/** Ends the release with an outcome other than success (rejected, aborted at the gate, …). */
export class ReleaseStopped extends Error {
  constructor(readonly outcome: Outcome, message: string) {
    super(message);
    this.name = 'ReleaseStopped';
  }
}

type StepCall<T> = (activities: ReleaseActivities) => Promise<T>;

/**
 * The release's state and the mechanics of running it; `releaseWorkflow` above says what runs when.
 * Exported (with StepFailed, ReleaseStopped and summarizeDeploy) only so the replay test can build a reordered copy of the
 * runbook on the same machinery (test/replay/fixtures); the worker registers `releaseWorkflow` alone.
 */
export class ReleaseRun {
  private readonly status: ReleaseStatus;
  private readonly input: ReleaseInput;
  private decision: { decision: Decision; operator: string; reason?: string } | undefined;
  private readonly indexed: boolean;

  constructor(input: ReleaseInput) {
    this.input = input;
    const now = new Date().toISOString();
    this.status = {
      workflowId: workflowInfo().workflowId,
      input,
      stage: 'planning',
      steps: STEP_NAMES.map((name) => ({ name, title: STEP_TITLES[name], state: 'pending', attempts: 0, runs: 0, outputs: {} })),
      gate: { state: 'not_open', required: input.config.approvals.required, approvers: input.config.approvals.approvers, approvals: [], refused: [] },
      decisions: [],
      cancellation: { requested: false },
      message: `Release ${input.service} ${input.version} started by ${input.requestedBy}.`,
      startedAt: now,
    };
    // Upserting a search attribute the namespace does not know fails every workflow task, which would wedge
    // the release. `gantry start` sets GantryService at start, and the server refuses that start when the
    // attributes are not registered; so their presence here proves they exist. Without them (a start from
    // another client) the release runs unindexed rather than stuck.
    this.indexed = workflowInfo().typedSearchAttributes.get(SA_SERVICE) !== undefined;
    this.index(startSearchAttributes(input));
  }

  private index(pairs: SearchAttributeUpdatePair[]): void {
    if (this.indexed) upsertSearchAttributes(pairs);
  }

  installHandlers(): void {
    setHandler(statusQuery, () => this.status, { description: HANDLER_DESCRIPTIONS.status });

    // Signals (Web UI, `temporal workflow signal`): never throw; a refusal is recorded in the status.
    setHandler(approveSignal, (payload) => this.voteBySignal('approve', payload), { description: HANDLER_DESCRIPTIONS.approve });
    setHandler(rejectSignal, (payload) => this.voteBySignal('reject', payload), { description: HANDLER_DESCRIPTIONS.reject });
    setHandler(decideSignal, (payload) => {
      const why = this.decisionRefusal(payload);
      if (why) this.refuse('decide', 'signal', why, payload);
      else this.takeDecision(payload);
    }, { description: HANDLER_DESCRIPTIONS.decide });
    setDefaultSignalHandler((name, ...args) => {
      this.refuse(name, 'signal', `there is no signal named "${name}"; the signals are ${SIGNAL_NAMES.join(', ')}`, args[0]);
    });

    // Updates (`gantry approve`, `gantry decide`): the validator refuses before anything is recorded, so the
    // caller gets the reason as an error and the history stays clean.
    setHandler(approveUpdate, (payload) => this.vote('approve', payload, 'update'), {
      validator: (payload) => this.assertVote('approve', payload),
      description: HANDLER_DESCRIPTIONS.approve,
    });
    setHandler(rejectUpdate, (payload) => this.vote('reject', payload, 'update'), {
      validator: (payload) => this.assertVote('reject', payload),
      description: HANDLER_DESCRIPTIONS.reject,
    });
    setHandler(decideUpdate, (payload) => this.takeDecision(payload), {
      validator: (payload) => {
        const why = this.decisionRefusal(payload);
        if (why) throw new Error(why);
      },
      description: HANDLER_DESCRIPTIONS.decide,
    });
  }

  // ---- steps ----

  /**
   * Run one step as an activity with its own options. If it fails after its retries, the release waits for an
   * operator's `decide retry|abort`; a non-retryable failure ends the release (or, with `onFailure: 'return'`,
   * is handed back to the caller as a StepFailed, as health does to trigger the rollback). Steps after production
   * changed (`decideOnAnyFailure`: rollback, announce) wait for an operator on any failure, since ending the
   * release there would leave production broken or the release unannounced without a word.
   */
  async step<T extends { attempt: number }>(
    name: StepName,
    call: StepCall<T>,
    summarize: (r: T) => Record<string, string>,
    opts: { onFailure?: 'decide' | 'return'; decideOnAnyFailure?: boolean } = {},
  ): Promise<T> {
    const s = this.stepStatus(name);
    const activities = proxyActivities<ReleaseActivities>(this.activityOptions(name));
    for (;;) {
      this.setStage(stageOf(name));
      s.state = 'running';
      s.runs += 1;
      s.startedAt = new Date().toISOString();
      delete s.endedAt;
      delete s.error;
      try {
        const result = await call(activities);
        s.state = 'succeeded';
        s.attempts += result.attempt;
        s.outputs = summarize(result);
        s.endedAt = new Date().toISOString();
        return result;
      } catch (err) {
        s.endedAt = new Date().toISOString();
        if (isCancellation(err)) {
          s.state = 'skipped';
          s.error = 'cancelled while running';
          throw err;
        }
        const f = describeFailure(err, this.input.steps[name].retry.maximumAttempts);
        s.state = 'failed';
        s.attempts += f.attempts;
        s.error = f.message;
        if (opts.onFailure === 'return') throw new StepFailed(name, f.message);
        if (!f.retriesExhausted && !opts.decideOnAnyFailure) throw new StepFailed(name, f.message);
        const decision = await this.awaitDecision(name, f.message, f.retriesExhausted);
        if (decision === 'abort') throw new StepFailed(name, f.message, 'aborted');
      }
    }
  }

  skip(name: StepName): void {
    const s = this.stepStatus(name);
    if (s.state === 'pending') s.state = 'skipped';
  }

  private activityOptions(name: StepName): ActivityOptions {
    const o = this.input.steps[name];
    return {
      startToCloseTimeout: o.startToCloseTimeout,
      ...(o.heartbeatTimeout !== undefined ? { heartbeatTimeout: o.heartbeatTimeout } : {}),
      retry: { ...o.retry, nonRetryableErrorTypes: [...NON_RETRYABLE] },
      summary: `${STEP_TITLES[name]} — ${this.input.service} ${this.input.version}`,
    };
  }

  /** Production-changing work: not cancellable once begun; a cancel request is noted and honoured afterwards. */
  async irreversible<T>(fn: () => Promise<T>): Promise<T> {
    const root = CancellationScope.current();
    root.cancelRequested.catch(() => {
      this.status.cancellation = {
        requested: true,
        at: new Date().toISOString(),
        note: 'Cancellation requested while production was changing: deploy, health and any rollback finish first; the announcement is skipped.',
      };
    });
    const result = await CancellationScope.nonCancellable(fn);
    if (this.status.cancellation.requested) {
      this.skip('announce');
      throw new ReleaseStopped('cancelled', `${this.status.cancellation.note} Production state: ${this.productionState()}.`);
    }
    return result;
  }

  private productionState(): string {
    const rb = this.stepStatus('rollback');
    if (rb.state === 'succeeded') return 'rolled back to the previous image';
    const h = this.stepStatus('health');
    if (h.state === 'succeeded') return `running ${this.input.version}, healthy`;
    return `deploy ${this.stepStatus('deployProduction').state}, health ${h.state}`;
  }

  // ---- the approval gate ----

  async approvalGate(imageRef: string): Promise<void> {
    const gate = this.status.gate;
    const timeout = this.input.config.timeouts.approval as never;
    const timeoutMs = msToNumber(timeout);
    gate.state = 'open';
    gate.openedAt = new Date().toISOString();
    gate.deadline = new Date(Date.now() + timeoutMs).toISOString();
    this.setStage('awaiting-approval');
    const who = this.input.config.approvals.approvers.join(', ');
    this.status.message = `Waiting for ${gate.required} approval(s) from ${who} before production. ` +
      `Approve with \`gantry approve ${this.input.service} ${this.input.version} --as <name>\` or the Web UI signal "approve".`;
    setCurrentDetails(`**Awaiting approval** of ${imageRef}: ${this.status.message}`);
    const decided = await condition(() => gate.state !== 'open', timeout);
    gate.closedAt = new Date().toISOString();
    if (!decided) {
      gate.state = 'timed_out';
      throw new ReleaseStopped('aborted', `No decision at the approval gate within ${String(this.input.config.timeouts.approval)}; ` +
        'nothing was deployed to production. Start the release again when approvers are available.');
    }
    if ((gate.state as GateState) === 'rejected') {
      const r = gate.rejection;
      throw new ReleaseStopped('rejected', `Rejected by ${r?.approver ?? '?'}${r?.reason ? `: ${r.reason}` : ''}; nothing was deployed to production.`);
    }
    setCurrentDetails(`Approved by ${this.approvers().join(', ')}`);
  }

  approvers(): string[] {
    return this.status.gate.approvals.map((v) => v.approver);
  }

  /** Why a vote is refused, or undefined when it counts. */
  private voteRefusal(kind: 'approve' | 'reject', payload: unknown): string | undefined {
    const parsed = parseVote(payload);
    if (!parsed.ok) return `malformed ${kind}: ${parsed.problem}`;
    const gate = this.status.gate;
    const { approver } = parsed.value;
    if (gate.state === 'not_open') return `the approval gate is not open yet (stage ${this.status.stage}); ${kind} once staging passed its smoke checks`;
    if (gate.state !== 'open') return `the approval gate is closed (${gate.state})`;
    if (!gate.approvers.includes(approver)) return `${approver} is not an approver for ${this.input.service}; approvers are ${gate.approvers.join(', ')}`;
    if (gate.approvals.some((v) => v.approver === approver)) return `${approver} already approved; each approver votes once`;
    return undefined;
  }

  private assertVote(kind: 'approve' | 'reject', payload: unknown): void {
    const why = this.voteRefusal(kind, payload);
    if (why) throw new Error(why);
  }

  private voteBySignal(kind: 'approve' | 'reject', payload: unknown): void {
    const why = this.voteRefusal(kind, payload);
    if (why) this.refuse(kind, 'signal', why, payload);
    else this.vote(kind, payload as VotePayload, 'signal');
  }

  private vote(kind: 'approve' | 'reject', payload: VotePayload, via: 'signal' | 'update'): GateAnswer {
    const parsed = parseVote(payload);
    if (!parsed.ok) throw new Error(parsed.problem); // unreachable: validated before
    const gate = this.status.gate;
    const v = { ...parsed.value, at: new Date().toISOString(), via };
    if (kind === 'reject') {
      gate.rejection = v;
      gate.state = 'rejected';
    } else {
      gate.approvals.push(v);
      if (gate.approvals.length >= gate.required) gate.state = 'approved';
    }
    const message = gate.state === 'open'
      ? `Approval by ${v.approver} recorded: ${gate.approvals.length} of ${gate.required}; waiting for more.`
      : gate.state === 'approved' ? `Approved: production deploy starts now.` : `Rejected by ${v.approver}: the release stops.`;
    return { gate: gate.state, approvals: gate.approvals.length, required: gate.required, message };
  }

  private refuse(name: string, via: 'signal' | 'update', why: string, payload: unknown): void {
    const approver = typeof payload === 'object' && payload !== null && typeof (payload as { approver?: unknown }).approver === 'string'
      ? (payload as { approver: string }).approver
      : undefined;
    this.status.gate.refused.push({ name, via, why, at: new Date().toISOString(), ...(approver ? { approver } : {}) });
  }

  // ---- operator decisions after a step used up its retries ----

  private decisionRefusal(payload: unknown): string | undefined {
    const parsed = parseDecision(payload);
    if (!parsed.ok) return `malformed decide: ${parsed.problem}`;
    if (!this.status.pendingDecision) return 'no decision is pending: decide applies only after a step used up its retries';
    if (this.decision) return 'a decision was already taken';
    return undefined;
  }

  private takeDecision(payload: { decision: Decision; operator: string; reason?: string }): string {
    const parsed = parseDecision(payload);
    if (!parsed.ok) throw new Error(parsed.problem); // unreachable: validated before
    this.decision = parsed.value;
    const step = this.status.pendingDecision?.step ?? 'preflight';
    return parsed.value.decision === 'retry' ? `Retrying ${STEP_TITLES[step]}.` : `Aborting the release at ${STEP_TITLES[step]}.`;
  }

  private async awaitDecision(step: StepName, error: string, retriesExhausted: boolean): Promise<Decision> {
    const timeout = this.input.config.timeouts.decision as never;
    const openedAt = new Date();
    this.status.pendingDecision = {
      step,
      error,
      openedAt: openedAt.toISOString(),
      deadline: new Date(openedAt.getTime() + msToNumber(timeout)).toISOString(),
    };
    const previousStage = this.status.stage;
    this.setStage('awaiting-decision');
    this.status.message = `${STEP_TITLES[step]} failed${retriesExhausted ? ' after its retries' : ''}: ${error}. Fix the cause, then ` +
      `\`gantry decide retry ${this.input.service} ${this.input.version} --as <name>\` or \`… decide abort …\`.`;
    setCurrentDetails(`**Needs a decision**: ${this.status.message}`);
    this.decision = undefined;
    const got = await condition(() => this.decision !== undefined, timeout);
    const taken = got && this.decision ? this.decision : { decision: 'abort' as const, operator: 'gantry', reason: `no decision within ${String(this.input.config.timeouts.decision)}` };
    this.status.decisions.push({ step, ...taken, at: new Date().toISOString() });
    delete this.status.pendingDecision;
    this.decision = undefined;
    this.setStage(previousStage);
    return taken.decision;
  }

  // ---- ending ----

  finishPlanned(plan: ReleasePlan): ReleaseStatus {
    for (const s of this.status.steps) s.state = 'skipped';
    this.status.plan = plan;
    return this.end('planned', `Dry run: nothing was changed. ${plan.steps.length} steps planned.`);
  }

  end(outcome: Outcome, message: string): ReleaseStatus {
    this.status.outcome = outcome;
    this.status.message = message;
    this.status.endedAt = new Date().toISOString();
    for (const s of this.status.steps) if (s.state === 'pending') s.state = 'skipped';
    if (this.status.gate.state === 'not_open') this.status.gate.state = 'closed';
    this.status.stage = 'done';
    this.index([{ key: SA_STAGE, value: 'done' }, { key: SA_OUTCOME, value: outcome }]);
    setCurrentDetails(`**${outcome}**: ${message}`);
    return this.status;
  }

  /** Record how the release ended and end the workflow execution accordingly (failed, cancelled). */
  fail(err: unknown): never {
    if (isCancellation(err)) {
      this.end('cancelled', 'Cancelled before production changed; nothing was deployed to production. ' +
        'Start the release again when ready.');
      throw err;
    }
    let outcome: Outcome;
    let message: string;
    if (err instanceof ReleaseStopped) {
      outcome = err.outcome;
      message = err.message;
    } else if (err instanceof StepFailed) {
      outcome = err.outcome;
      const prodChanged = this.stepStatus('deployProduction').state !== 'pending';
      message = `${STEP_TITLES[err.stepName]} failed: ${err.message}` +
        (outcome === 'aborted' ? ' The release was aborted by decision.' : '') +
        (prodChanged ? ' Production may have changed: check `gantry status`.' : ' Nothing was deployed to production.') +
        ' Fix the cause and start the release again.';
    } else {
      // Not a step failure: a defect in gantry. End the release rather than wedge it on a failing task.
      outcome = 'failed';
      message = `Internal error in the release workflow: ${err instanceof Error ? err.message : String(err)}. ` +
        'Check `gantry status` for what production runs, and report this with `gantry history`.';
    }
    this.end(outcome, message);
    if (outcome === 'cancelled') throw new CancelledFailure(message);
    throw ApplicationFailure.create({ type: endType(outcome), message, nonRetryable: true });
  }

  durations(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.status.steps) {
      if (s.startedAt && s.endedAt) out[s.name] = Date.parse(s.endedAt) - Date.parse(s.startedAt);
    }
    return out;
  }

  private stepStatus(name: StepName): StepStatus {
    const s = this.status.steps.find((x) => x.name === name);
    if (!s) throw new Error(`unknown step ${name}`);
    return s;
  }

  private setStage(stage: Stage): void {
    this.status.stage = stage;
    this.index([{ key: SA_STAGE, value: stage }]);
  }
}

function endType(outcome: Outcome): string {
  switch (outcome) {
    case 'rolled_back': return ReleaseEndType.RolledBack;
    case 'rejected': return ReleaseEndType.Rejected;
    case 'aborted': return ReleaseEndType.Aborted;
    default: return ReleaseEndType.Failed;
  }
}

function stageOf(step: StepName): Stage {
  const stages: Record<StepName, Stage> = {
    preflight: 'preflight', tag: 'tag', build: 'build', deployStaging: 'deploy-staging', smoke: 'smoke',
    deployProduction: 'deploy-production', health: 'health', rollback: 'rollback', announce: 'announce',
  };
  return stages[step];
}

/** Turn an activity failure into words and decide whether it used up its retries (→ operator decision). */
function describeFailure(err: unknown, maximumAttempts: number): { message: string; retriesExhausted: boolean; attempts: number } {
  if (err instanceof ActivityFailure) {
    const cause = err.cause;
    const message = cause?.message ?? err.message;
    const exhausted = err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED || err.retryState === RetryState.TIMEOUT;
    const attempts = err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED ? maximumAttempts : attemptFromDetails(cause) ?? 1;
    return { message, retriesExhausted: exhausted, attempts };
  }
  return { message: err instanceof Error ? err.message : String(err), retriesExhausted: false, attempts: 1 };
}

function attemptFromDetails(cause: unknown): number | undefined {
  if (cause instanceof ApplicationFailure && Array.isArray(cause.details)) {
    const d = cause.details[0] as { attempt?: unknown } | undefined;
    if (d && typeof d.attempt === 'number') return d.attempt;
  }
  return undefined;
}
