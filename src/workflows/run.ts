/**
 * The release's state and the mechanics of running it: the status object, resolving the plan on the worker,
 * running one step as an activity, waiting for an operator's decision, the non-cancellable production section,
 * and ending the release. `release.ts` says what runs when; `messages.ts` takes the signals and updates.
 * Deterministic code only (enforced by ESLint).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState, type ActivityOptions, type SearchAttributeUpdatePair } from '@temporalio/common';
import type { AnnouncedAction, DeployResult, RecordEndRequest, ReleaseActivities } from '../activities/types';
import { NON_RETRYABLE, ReleaseEndType } from '../shared/errors';
import { describeNeeds, gateRulesView, operatorRefusal, verifyStatement, type Actor, type GateRules } from '../shared/gate';
import { durationMs } from '../shared/duration';
import {
  parseStartRequest,
  releaseWorkflowId,
  SA_OUTCOME,
  SA_SERVICE,
  SA_STAGE,
  startSearchAttributes,
  type Decision,
  type Outcome,
  type ReleaseInput,
  type ReleasePlan,
  type ReleaseStatus,
  type Stage,
  type StartRequest,
  type StepStatus,
} from '../shared/release';
import { DEFAULT_STEP_OPTIONS, STEP_NAMES, STEP_TITLES, stageOf, type StepName, type StepOptions } from '../shared/steps';
import { Ledger } from './ledger';
import { countDecision, countRelease, observeStep, secondsBetween } from './metrics';

/** Patch ids (`patched()`): releases recorded before a change keep replaying on the old path. */
export const PATCHES = {
  /** The workflow input is the start request; the plan is resolved on the worker by the `resolvePlan` activity. */
  workerResolvesPlan: 'gantry-worker-resolves-plan',
  /** A release that ends without its announcement still writes its actions and outcome to the audit log. */
  recordEveryEnding: 'gantry-record-every-ending',
} as const;

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

export interface TakenDecision {
  decision: Decision;
  actor: Actor;
  reason?: string;
}

export class ReleaseRun {
  readonly status: ReleaseStatus;
  /** The start as it arrived: a request (current) or a whole input snapshot (releases started before the change). */
  private readonly arg: unknown;
  private resolved: ReleaseInput | undefined;
  private rulesCache: GateRules | undefined;
  /** Set by a decide message while a decision is pending. */
  decision: TakenDecision | undefined;
  /** Number of decisions taken so far: names the pending decision in signed statements (`deployProduction#2`). */
  decisionsTaken = 0;
  private readonly indexed: boolean;
  /** Cancelled by a verified cancel message (or, in declared mode, Temporal's own cancellation request). */
  readonly scope: CancellationScope;
  /** True on the path of releases started before the worker resolved plans. */
  readonly legacy: boolean;
  /** Every message handled, in order (status.ledger). */
  readonly ledger: Ledger;

  constructor(arg: unknown) {
    this.arg = arg;
    this.legacy = !patched(PATCHES.workerResolvesPlan);
    const now = new Date().toISOString();
    const req = requestFields(arg);
    this.status = {
      workflowId: workflowInfo().workflowId,
      request: req,
      requester: { principal: req.requestedBy, verified: false },
      stage: 'planning',
      steps: STEP_NAMES.map((name) => ({ name, title: STEP_TITLES[name], state: 'pending', attempts: 0, runs: 0, outputs: {} })),
      gate: { state: 'not_open', required: 0, approvers: [], identity: 'declared', approvals: [], refused: [], refusedCount: 0 },
      decisions: [],
      ledger: { entries: [], messages: 0, cancelRequests: 0, refused: 0, dropped: 0 },
      cancellation: { requested: false },
      message: `Release ${req.service} ${req.version} started by ${req.requestedBy}.`,
      startedAt: now,
    };
    // Upserting a search attribute the namespace does not know fails every workflow task, which would wedge
    // the release. `gantry start` sets GantryService at start, and the server refuses that start when the
    // attributes are not registered; so their presence here proves they exist. Without them (a start from
    // another client) the release runs unindexed rather than stuck.
    this.ledger = new Ledger(this.status.ledger!);
    this.indexed = workflowInfo().typedSearchAttributes.get(SA_SERVICE) !== undefined;
    this.index(startSearchAttributes(req));
    // Releases recorded before this change honoured Temporal's cancellation directly; keep that for them. Now a
    // cancellation must be a verified decision in signed mode, so Temporal's request is judged in messages.ts.
    // A non-cancellable shield stops Temporal's request from propagating; the cancellable scope inside it is what
    // a verified cancel message (or, in declared mode, Temporal's request) cancels.
    this.scope = this.legacy
      ? new CancellationScope()
      : new CancellationScope({ cancellable: true, parent: new CancellationScope({ cancellable: false }) });
    if (this.legacy) this.adopt(arg as ReleaseInput);
  }

  /** The resolved plan; only valid after `resolve()`. */
  get input(): ReleaseInput {
    if (!this.resolved) throw new Error('the plan is not resolved yet');
    return this.resolved;
  }

  get isResolved(): boolean {
    return this.resolved !== undefined;
  }

  /** The gate's rules, once the plan is resolved. */
  get rules(): GateRules | undefined {
    return this.rulesCache;
  }

  private adopt(input: ReleaseInput): void {
    this.resolved = input;
    this.rulesCache = gateRulesView(input);
    this.status.input = input;
    const g = this.status.gate;
    g.required = this.rulesCache.required;
    g.approvers = this.rulesCache.approvers;
    g.identity = this.rulesCache.identity;
    g.needs = describeNeeds([], this.rulesCache);
  }

  private index(pairs: SearchAttributeUpdatePair[]): void {
    if (this.indexed) upsertSearchAttributes(pairs);
  }

  /** Run the release body in the run's own cancellation scope. */
  main<T>(body: () => Promise<T>): Promise<T> {
    return this.scope.run(body);
  }

  // ---- resolving the plan ----

  /**
   * The first step: check the start request, resolve the plan from the worker's config (an activity, so the
   * snapshot and the config's sha256 are in history), and verify who started it.
   */
  async resolve(): Promise<ReleaseInput> {
    if (this.legacy) return this.input;
    const parsed = parseStartRequest(this.arg);
    if (!parsed.ok) throw new ReleaseStopped('failed', `Start refused: ${parsed.problem}. Nothing was changed.`);
    const req = parsed.value;
    const workflowId = workflowInfo().workflowId;
    if (workflowId !== releaseWorkflowId(req.service, req.version)) {
      throw new ReleaseStopped('failed', `Start refused: the workflow id ${workflowId} is not ${releaseWorkflowId(req.service, req.version)}, ` +
        'the id of that service and version. Start releases with `gantry start`. Nothing was changed.');
    }
    const r = await this.step('resolve', (a) => a.resolvePlan({
      service: req.service, version: req.version, requestedBy: req.requestedBy, dryRun: req.dryRun ?? false, workflowId,
    }), (res) => ({ config: res.input.configSource ?? '', sha256: res.input.configSha256 ?? '' }));
    this.adopt(r.input);
    if (req.localConfigSha256 && r.input.configSha256 && req.localConfigSha256 !== r.input.configSha256) {
      this.status.configNote = `The operator's local config (sha256 ${req.localConfigSha256.slice(0, 16)}) differs from the worker's ` +
        `(${r.input.configSha256.slice(0, 16)}); the release runs on the worker's.`;
    }
    this.verifyStarter(req);
    return r.input;
  }

  private verifyStarter(req: StartRequest): void {
    try {
      this.checkStarter(req);
    } catch (err) {
      if (err instanceof ReleaseStopped) {
        this.ledger.event({ kind: 'start', name: 'start', actor: req.requestedBy, verified: false, verdict: 'refused', why: err.message });
      }
      throw err;
    }
    const a = this.status.requester;
    this.ledger.event({ kind: 'start', name: 'start', actor: a.principal, verified: a.verified, ...(a.fingerprint ? { fingerprint: a.fingerprint } : {}), verdict: 'accepted' });
  }

  private checkStarter(req: StartRequest): void {
    const rules = this.rulesCache!;
    let actor: Actor;
    if (rules.identity === 'signed') {
      if (!req.signed) {
        throw new ReleaseStopped('failed', `Start refused: ${req.service} requires signed decisions and the start was not signed. ` +
          `Start it with \`gantry start ${req.service} ${req.version}\` and your SSH key (--key or ssh-agent). Nothing was changed.`);
      }
      const v = verifyStatement(req.signed, { action: 'start', workflow: this.status.workflowId, service: req.service, version: req.version }, rules.keys, Date.now());
      if (!v.ok) throw new ReleaseStopped('failed', `Start refused: ${v.problem}. Nothing was changed.`);
      actor = v.value.actor;
    } else {
      actor = { principal: req.requestedBy, verified: false };
    }
    const why = operatorRefusal(actor, 'start', rules);
    if (why) throw new ReleaseStopped('failed', `Start refused: ${why}. Nothing was changed.`);
    this.status.requester = actor;
    this.status.request.requestedBy = actor.principal;
    this.resolved = { ...this.input, requestedBy: actor.principal };
    this.status.input = this.resolved;
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
    const options = this.stepOptions(name);
    const activities = proxyActivities<ReleaseActivities>(this.activityOptions(name, options));
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
        observeStep(name, secondsBetween(s.startedAt, s.endedAt), result.attempt, 'succeeded', this.status.request.service);
        return result;
      } catch (err) {
        s.endedAt = new Date().toISOString();
        if (isCancellation(err)) {
          s.state = 'skipped';
          s.error = 'cancelled while running';
          observeStep(name, secondsBetween(s.startedAt, s.endedAt), 1, 'cancelled', this.status.request.service);
          throw err;
        }
        const f = describeFailure(err, options.retry.maximumAttempts);
        s.state = 'failed';
        s.attempts += f.attempts;
        s.error = f.message;
        observeStep(name, secondsBetween(s.startedAt, s.endedAt), f.attempts, 'failed', this.status.request.service);
        // Before the plan is resolved there is nobody to decide: a config problem is fixed on the worker and the
        // release started again.
        if (opts.onFailure === 'return' || !this.resolved) throw new StepFailed(name, f.message);
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

  private stepOptions(name: StepName): StepOptions {
    return this.resolved?.steps[name] ?? DEFAULT_STEP_OPTIONS[name];
  }

  private activityOptions(name: StepName, o: StepOptions): ActivityOptions {
    const { service, version } = this.status.request;
    return {
      startToCloseTimeout: o.startToCloseTimeout,
      ...(o.heartbeatTimeout !== undefined ? { heartbeatTimeout: o.heartbeatTimeout } : {}),
      retry: { ...o.retry, nonRetryableErrorTypes: [...NON_RETRYABLE] },
      summary: `${STEP_TITLES[name]} — ${service} ${version}`,
    };
  }

  /** Production-changing work: not cancellable once begun; a cancel request is noted and honoured afterwards. */
  async irreversible<T>(fn: () => Promise<T>): Promise<T> {
    const root = CancellationScope.current();
    root.cancelRequested.catch(() => {
      this.status.cancellation = {
        ...this.status.cancellation,
        requested: true,
        at: this.status.cancellation.at ?? new Date().toISOString(),
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
    if (h.state === 'succeeded') return `running ${this.status.request.version}, healthy`;
    return `deploy ${this.stepStatus('deployProduction').state}, health ${h.state}`;
  }

  // ---- operator decisions after a step used up its retries ----

  private async awaitDecision(step: StepName, error: string, retriesExhausted: boolean): Promise<Decision> {
    const timeout = this.input.config.timeouts.decision;
    const openedAt = new Date();
    this.status.pendingDecision = {
      id: `${step}#${this.decisionsTaken + 1}`,
      step,
      error,
      openedAt: openedAt.toISOString(),
      deadline: new Date(openedAt.getTime() + durationMs(timeout)).toISOString(),
    };
    const previousStage = this.status.stage;
    this.setStage('awaiting-decision');
    const { service, version } = this.status.request;
    this.status.message = `${STEP_TITLES[step]} failed${retriesExhausted ? ' after its retries' : ''}: ${error}. Fix the cause, then ` +
      `\`gantry decide retry ${service} ${version} --as <name>\` or \`… decide abort …\`.`;
    setCurrentDetails(`**Needs a decision**: ${this.status.message}`);
    this.decision = undefined;
    const got = await condition(() => this.decision !== undefined, timeout);
    const taken: TakenDecision = got && this.decision
      ? this.decision
      : { decision: 'abort', actor: { principal: 'gantry', verified: false }, reason: `no decision within ${String(timeout)}` };
    countDecision(step, taken.decision, got ? 'operator' : 'timeout', this.status.request.service);
    if (!got) this.ledger.event({ kind: 'timeout', name: 'decide', actor: 'gantry', verdict: 'recorded', detail: `${STEP_TITLES[step]}: ${taken.reason}; aborted` });
    this.status.decisions.push({
      step,
      decision: taken.decision,
      operator: taken.actor.principal,
      verified: taken.actor.verified,
      ...(taken.actor.fingerprint ? { fingerprint: taken.actor.fingerprint } : {}),
      ...(taken.reason ? { reason: taken.reason } : {}),
      at: new Date().toISOString(),
    });
    this.decisionsTaken += 1;
    delete this.status.pendingDecision;
    this.decision = undefined;
    this.setStage(previousStage);
    return taken.decision;
  }

  // ---- ending ----

  finishPlanned(plan: ReleasePlan): ReleaseStatus {
    for (const s of this.status.steps) if (s.state === 'pending') s.state = 'skipped';
    this.status.plan = plan;
    return this.end('planned', `Dry run: nothing was changed. ${plan.steps.length} steps planned.`);
  }

  end(outcome: Outcome, message: string): ReleaseStatus {
    this.ledger.event({ kind: 'outcome', name: outcome, verdict: 'recorded', detail: message });
    this.status.outcome = outcome;
    countRelease(outcome, this.status.request.service);
    this.status.message = message;
    this.status.endedAt = new Date().toISOString();
    for (const s of this.status.steps) if (s.state === 'pending') s.state = 'skipped';
    if (this.status.gate.state === 'not_open') this.status.gate.state = 'closed';
    this.status.stage = 'done';
    this.index([{ key: SA_STAGE, value: 'done' }, { key: SA_OUTCOME, value: outcome }]);
    setCurrentDetails(`**${outcome}**: ${message}`);
    return this.status;
  }

  /**
   * Record how the release ended (status, and, when it was not announced, the audit log) and end the workflow
   * execution accordingly (failed, cancelled).
   */
  async fail(err: unknown): Promise<never> {
    let ending: { outcome: Outcome; message: string; error: unknown };
    try {
      this.settle(err);
    } catch (e) {
      ending = { outcome: this.status.outcome ?? 'failed', message: this.status.message, error: e };
      await this.recordEnding(ending.outcome, ending.message);
      throw e;
    }
    throw new Error('unreachable: settle always throws');
  }

  /**
   * The audit record of a release that ends without its announcement (rejected, aborted, cancelled, failed, or
   * an announcement abandoned by decision): its actions and outcome, through the `recordEnd` step. Never changes
   * the outcome: a record that cannot be written is noted in the status.
   */
  async recordEnding(outcome: Outcome, message: string): Promise<void> {
    if (this.legacy || !this.resolved || outcome === 'planned' || this.stepStatus('announce').state === 'succeeded') return;
    if (!patched(PATCHES.recordEveryEnding)) return;
    const input = this.resolved;
    const out = (step: StepName) => this.stepStatus(step).outputs;
    const recorded: RecordEndRequest['outcome'] = outcome === 'succeeded' ? 'released' : outcome;
    const opts = this.stepOptions('announce');
    const activities = proxyActivities<ReleaseActivities>({ ...this.activityOptions('announce', opts), summary: `Record the ending — ${input.service} ${input.version}` });
    await CancellationScope.nonCancellable(() => activities.recordEnd({
      release: { service: input.service, version: input.version, workflowId: this.status.workflowId },
      outcome: recorded, announce: input.config.announce, repo: input.config.repo,
      commit: out('tag').commit ?? out('preflight').commit ?? '', tag: out('tag').tag ?? '', digest: out('build').digest ?? '', imageRef: out('build').imageRef ?? '',
      approvers: this.status.gate.approvals.map((v) => v.approver), hosts: [], durations: this.durations(), reason: message,
      actions: this.auditActions(),
      ...(input.configSha256 ? { configSha256: `sha256:${input.configSha256}` } : {}),
    })).then(
      () => { this.status.recorded = 'the actions and the outcome are in the audit log'; },
      (e: unknown) => { this.status.recorded = `the audit record could not be written: ${e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e)}`; },
    );
  }

  /** Settle the release's outcome from what ended it, and throw what ends the execution. */
  private settle(err: unknown): never {
    if (isCancellation(err)) {
      const by = this.status.cancellation.by ? ` by ${this.status.cancellation.by}` : '';
      const message = `Cancelled${by} before production changed; nothing was deployed to production. Start the release again when ready.`;
      this.end('cancelled', message);
      // Temporal's own cancellation ends the execution cancelled; a verified cancel message fails it with a type.
      if (this.legacy || !this.status.cancellation.by) throw err;
      throw ApplicationFailure.create({ type: ReleaseEndType.Cancelled, message, nonRetryable: true });
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
        (err.stepName === 'resolve' ? ' Fix the worker\'s release config and start the release again.' : ' Fix the cause and start the release again.');
    } else {
      // Not a step failure: a defect in gantry. End the release rather than wedge it on a failing task.
      outcome = 'failed';
      message = `Internal error in the release workflow: ${err instanceof Error ? err.message : String(err)}. ` +
        'Check `gantry status` for what production runs, and report this with `gantry history`.';
    }
    this.end(outcome, message);
    if (outcome === 'cancelled') {
      // Temporal's own cancellation ends the execution cancelled; a verified cancel message fails it with a type.
      if (this.legacy || !this.status.cancellation.by) throw new CancelledFailure(message);
      throw ApplicationFailure.create({ type: ReleaseEndType.Cancelled, message, nonRetryable: true });
    }
    throw ApplicationFailure.create({ type: endType(outcome), message, nonRetryable: true });
  }

  /**
   * What the audit log records of this release before its outcome line: every message it took or refused, in
   * the order it handled them, with who sent it (verified or declared), from the ledger.
   */
  auditActions(): AnnouncedAction[] {
    return (this.status.ledger?.entries ?? []).filter((e) => e.kind !== 'outcome').map((e) => ({
      kind: e.kind === 'signal' || e.kind === 'update' ? `${e.name}-${e.verdict}` : e.kind === 'cancel-request' ? `temporal-cancel-${e.verdict}` : `${e.kind}-${e.verdict}`,
      actor: e.actor ?? 'unknown',
      verified: e.verified ?? false,
      at: e.at,
      ...(e.why || e.detail ? { detail: [e.detail, e.why].filter(Boolean).join('; ') } : {}),
    }));
  }

  durations(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.status.steps) {
      if (s.startedAt && s.endedAt) out[s.name] = Date.parse(s.endedAt) - Date.parse(s.startedAt);
    }
    return out;
  }

  stepStatus(name: StepName): StepStatus {
    const s = this.status.steps.find((x) => x.name === name);
    if (!s) throw new Error(`unknown step ${name}`);
    return s;
  }

  setStage(stage: Stage): void {
    this.status.stage = stage;
    this.index([{ key: SA_STAGE, value: stage }]);
  }
}

/** service, version and requester of a start (current request or recorded input), shape-checked loosely. */
function requestFields(arg: unknown): ReleaseStatus['request'] {
  const o = (typeof arg === 'object' && arg !== null ? arg : {}) as Record<string, unknown>;
  const text = (v: unknown, fallback: string) => (typeof v === 'string' ? v.slice(0, 128) : fallback);
  return { service: text(o.service, '?'), version: text(o.version, '?'), requestedBy: text(o.requestedBy, '?'), dryRun: o.dryRun === true };
}

function endType(outcome: Outcome): string {
  switch (outcome) {
    case 'rolled_back': return ReleaseEndType.RolledBack;
    case 'rejected': return ReleaseEndType.Rejected;
    case 'aborted': return ReleaseEndType.Aborted;
    default: return ReleaseEndType.Failed;
  }
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

export function summarizeDeploy(r: DeployResult): Record<string, string> {
  return {
    targets: r.targets.map((t) => t.target).join(', '),
    previous: r.targets.map((t) => `${t.target}: ${t.previousImage ?? 'none'}`).join('; '),
    changed: r.targets.filter((t) => t.changed).map((t) => t.target).join(', ') || 'none (already running this digest)',
  };
}

