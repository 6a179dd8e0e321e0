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
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState, type ActivityOptions, type LocalActivityOptions, type SearchAttributeUpdatePair } from '@temporalio/common';
import type {
  AnnounceChannelResult, AnnounceDelivery, AnnouncedAction, AnnounceRequest, AnnounceResult, AnnounceShared, DeployResult, FreezeCheckResult,
  GovernanceActivities, PlannedChannel, RecordEndRequest, ReleaseActivities,
} from '../activities/types';
import { announceSummary, channelsLine } from '../activities/announcers/summary';
import { NON_RETRYABLE, ReleaseEndType } from '../shared/errors';
import { approveCommand, describeNeeds, describeRule, gateRulesFor, gateRulesView, operatorRefusal, verifyStatement, type Actor, type GateRules } from '../shared/gate';
import { environmentsOf, type EnvironmentStep } from '../shared/environments';
import { laneChangedSignal, laneLeaveSignal, laneWorkflowId } from '../shared/lanes';
import { webUiLink, type GateSummary, type NoticeKind } from '../shared/notices';
import { durationMs } from '../shared/duration';
import {
  parseStartRequest,
  releaseWorkflowId,
  SA_ENVIRONMENT,
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
import { DEFAULT_STEP_OPTIONS, STEP_NAMES, STEP_TITLES, stageOf, stepKind, stepTitle, type StepId, type StepName, type StepOptions } from '../shared/steps';
import { Ledger } from './ledger';
import { countDecision, countRelease, observeStep, secondsBetween } from './metrics';

/** Patch ids (`patched()`): releases recorded before a change keep replaying on the old path. */
export const PATCHES = {
  /** The workflow input is the start request; the plan is resolved on the worker by the `resolvePlan` activity. */
  workerResolvesPlan: 'gantry-worker-resolves-plan',
  /** A release that ends without its announcement still writes its actions and outcome to the audit log. */
  recordEveryEnding: 'gantry-record-every-ending',
  /**
   * Governance: environments in the config's order, lanes (one release at a time per service and environment),
   * freezes and deny windows at the gate, break-glass, hotfixes, `decide skip`, and notices to approvers.
   */
  governance: 'gantry-governance',
  /**
   * The announcement as one activity per channel (`announcePlan`, then `announceChannel` per enabled channel):
   * each completed delivery is recorded in history, so no channel repeats on a retry or on another worker.
   * Releases that reached announce before keep the single `announce` activity.
   */
  deliveries: 'gantry-deliveries',
  /**
   * The lane requests and freeze checks run as local activities: in the workflow task that needs them, with no
   * round trip through the server's task queue, so an approval that completes the quorum starts the deploy in
   * the same workflow task. Releases that asked their lanes before keep ordinary activities.
   */
  localGovernance: 'gantry-local-governance',
} as const;

/** While approved but frozen, the gate checks the freezes again this often (sooner when a freeze ends by itself). */
export const FREEZE_RECHECK_MS = 30_000;
/** A release waiting for its lane asks the lane again this often, besides whenever the lane signals a change. */
const LANE_RECHECK_MS = 60_000;

/** Thrown by `step` when a step ends in failure; `run.fail` turns it into the release's outcome. */
export class StepFailed extends Error {
  constructor(readonly stepName: StepId, message: string, readonly outcome: Outcome = 'failed') {
    super(message);
    this.name = 'StepFailed';
  }
}

/** Thrown by `step` when an operator decided to skip a failed skippable step (`decide skip`). */
export class StepSkipped extends Error {
  constructor(readonly stepName: StepId, message: string) {
    super(message);
    this.name = 'StepSkipped';
  }
}

/** The announce step's channels did not all deliver: every channel's result, in words, and how they failed. */
export class DeliveriesFailed extends Error {
  constructor(message: string, readonly retriesExhausted: boolean, readonly attempts: number) {
    super(message);
    this.name = 'DeliveriesFailed';
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
  /** True for releases with governance (lanes, freezes, notices, environments in order); false when replaying older ones. */
  readonly governed: boolean;
  /** Set by the lane's change signal: ask the lane again. */
  laneHint = false;
  private readonly envIndexed: boolean;
  private readonly governanceOptions: ActivityOptions;
  private readonly localGovernanceOptions: LocalActivityOptions;
  /** Whether lanes and freeze checks run as local activities (PATCHES.localGovernance), decided at the first one. */
  private localGovernance?: boolean;
  private readonly noticeOptions: ActivityOptions;
  /** Notices and lane hints sent but not yet landed: the release gives them a moment before it ends. */
  private inFlight = 0;
  /** The announce step's channels that delivered, by name: never run again, on any later run of the step. */
  private readonly delivered = new Map<string, AnnounceDelivery>();
  /** How many of the release's actions the audit channel's last delivery carried. */
  private auditedActions = 0;

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
    this.governed = !this.legacy && patched(PATCHES.governance);
    // GantryEnvironment came later: a server set up before it may not know it, so it is kept current only when
    // the start gave it (as `gantry start` does), which proves it is registered.
    this.envIndexed = this.indexed && workflowInfo().typedSearchAttributes.get(SA_ENVIRONMENT) !== undefined;
    // Lanes and freeze checks retry for as long as it takes (the gate and the lane wait anyway); notices give up
    // after a few attempts, and nothing waits for them.
    this.governanceOptions = { startToCloseTimeout: '30s', retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' } };
    // Locally, a retry waits in the worker up to 10 s; a longer backoff becomes a timer in history.
    this.localGovernanceOptions = { startToCloseTimeout: '30s', localRetryThreshold: '10s', retry: this.governanceOptions.retry! };
    this.noticeOptions = { startToCloseTimeout: '30s', retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 } };
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
    if (this.governed) this.layOutEnvironments();
  }

  // ---- environments, in the config's order ----

  /** The environments this release goes through, in order; the last is production. */
  environments(): EnvironmentStep[] {
    return environmentsOf(this.input.config);
  }

  /** The rules of one environment's gate (a hotfix's last gate takes the hotfix rule). */
  rulesFor(env: EnvironmentStep): GateRules {
    return gateRulesFor(this.input, env.name, { hotfix: this.status.hotfix !== undefined && env.final });
  }

  /** Steps named for the config's environments, with one deploy and one smoke step per environment between the first and the last. */
  private layOutEnvironments(): void {
    const envs = this.environments();
    const extra = envs.filter((e) => e.deploy.startsWith('deploy:'));
    const at = this.status.steps.findIndex((s) => s.name === 'smoke') + 1;
    this.status.steps.splice(at, 0, ...extra.flatMap((e) => [e.deploy, e.check]).map((name) => ({
      name, title: STEP_TITLES[stepKind(name)], state: 'pending' as const, attempts: 0, runs: 0, outputs: {},
    })));
    for (const e of envs) {
      for (const id of e.final ? [e.deploy, e.check, 'rollback' as const] : [e.deploy, e.check]) {
        const s = this.stepStatus(id);
        s.environment = e.name;
        s.title = stepTitle(id, e.name);
      }
    }
    if (envs.length < 2) {
      const s = this.stepStatus('deployStaging');
      s.title = 'Deploy before production (none configured)';
      this.stepStatus('smoke').title = 'Smoke-check before production (none configured)';
    }
    this.status.environments = envs.map((e) => ({ name: e.name, gated: e.gated, state: 'pending' }));
  }

  /**
   * The release enters an environment: it waits for the environment's lane (one release at a time per service
   * and environment, first come first served), then holds it until it leaves the environment or ends.
   */
  async enterEnvironment(env: EnvironmentStep): Promise<void> {
    this.status.environment = env.name;
    this.markEnvironment(env.name, 'active');
    if (this.envIndexed) upsertSearchAttributes([{ key: SA_ENVIRONMENT, value: env.name }]);
    if (!this.governed) return;
    const lanes = (this.status.lanes ??= {});
    const since = new Date().toISOString();
    lanes[env.name] = { state: 'waiting', since };
    const { service, version, requestedBy } = this.status.request;
    const info = workflowInfo();
    const notices = this.input.config.notices;
    const noticeAt = notices ? Date.parse(since) + durationMs(notices.laneWaitLongerThan) : Infinity;
    let noticed = false;
    const previousStage = this.status.stage;
    for (;;) {
      this.laneHint = false;
      const view = await this.governanceActivities(`Ask for the ${env.name} lane — ${service} ${version}`).laneEnqueue({ service, environment: env.name, workflowId: info.workflowId, runId: info.runId, version, requestedBy });
      if (view.holder?.runId === info.runId) {
        lanes[env.name] = { state: 'held', since: new Date().toISOString() };
        if (this.status.stage === 'waiting-for-lane') this.setStage(previousStage);
        return;
      }
      const holder = view.holder;
      lanes[env.name] = {
        state: 'waiting', since,
        ...(holder ? { holder: { workflowId: holder.workflowId, version: holder.version, heldSince: holder.heldSince } } : {}),
        ...(view.position !== undefined ? { position: view.position } : {}),
      };
      this.setStage('waiting-for-lane');
      this.status.message = holder
        ? `Waiting for the ${env.name} lane of ${service}: ${service} ${holder.version} (${holder.workflowId}) holds it since ${holder.heldSince}` +
          `${view.position ? `, and this release is number ${view.position} in line` : ''}. It deploys to ${env.name} when that release leaves ${env.name} or ends; ` +
          `\`gantry lanes ${service}\` shows the queue.`
        : `Waiting for the ${env.name} lane of ${service} (number ${view.position ?? '?'} in line); \`gantry lanes ${service}\` shows the queue.`;
      setCurrentDetails(`**Waiting for the ${env.name} lane**: ${this.status.message}`);
      const wake = Math.min(LANE_RECHECK_MS, noticed ? Infinity : Math.max(0, noticeAt - Date.now()));
      await condition(() => this.laneHint, wake);
      if (!noticed && Date.now() >= noticeAt && holder) {
        noticed = true;
        this.notify('lane-wait', { ...this.summaryBase(env), lane: { holder: `${service} ${holder.version}`, heldSince: holder.heldSince, waitingSince: since } });
      }
    }
  }

  /** The release is done with an environment: its lane passes on. */
  leaveEnvironment(env: EnvironmentStep): void {
    this.markEnvironment(env.name, 'passed');
    this.releaseLane(env.name);
  }

  /** An environment a hotfix skips. */
  skipEnvironment(env: EnvironmentStep): void {
    this.markEnvironment(env.name, 'skipped');
    for (const id of [env.deploy, env.check]) {
      const s = this.stepStatus(id);
      s.state = 'skipped';
      s.error = `skipped by the hotfix: ${this.status.hotfix?.reason ?? ''}`;
    }
  }

  private markEnvironment(name: string, state: 'active' | 'passed' | 'skipped' | 'failed'): void {
    const e = this.status.environments?.find((x) => x.name === name);
    if (e) e.state = state;
  }

  /** Tell the lane this release left (a hint; the lane checks the release's status before it passes the lane on). */
  private releaseLane(name: string): void {
    const lane = this.status.lanes?.[name];
    if (!lane || lane.state === 'released') return;
    this.status.lanes![name] = { state: 'released', since: new Date().toISOString() };
    const info = workflowInfo();
    this.inFlight += 1;
    void CancellationScope.nonCancellable(() => getExternalWorkflowHandle(laneWorkflowId(this.status.request.service, name))
      .signal(laneLeaveSignal, { workflowId: info.workflowId, runId: info.runId })).catch(() => undefined)
      .finally(() => { this.inFlight -= 1; });
  }

  /** Install the lane's change signal (a hint with no payload: never throws, whoever sends it). */
  listenToLanes(): void {
    setHandler(laneChangedSignal, () => { this.laneHint = true; }, {
      description: 'Internal, sent by the lane workflow: a hint that the lane changed, so the release asks its lane again. It grants nothing by itself.',
    });
  }

  // ---- freezes and notices ----

  /** Which freezes hold this environment's gate now (workflow time, so deny windows follow the workflow's clock). */
  async checkFreeze(env: EnvironmentStep): Promise<FreezeCheckResult> {
    try {
      const { service, version } = this.status.request;
      return await this.governanceActivities(`Check the freezes on ${env.name} — ${service} ${version}`).checkFreeze({ service, environment: env.name, nowMs: Date.now() });
    } catch (err) {
      if (isCancellation(err)) throw err;
      // Fail closed: a gate that cannot tell whether it is frozen stays shut, and says why.
      const why = err instanceof ActivityFailure ? (err.cause?.message ?? err.message) : String(err);
      return { attempt: 1, frozen: true, freezes: [{ kind: 'manual', id: 'check-failed', scope: env.name, reason: `the freeze check failed (${why}); it is tried again shortly` }] };
    }
  }

  /** The governance activities, with a summary for the Web UI and `gantry history`. */
  private governanceActivities(summary: string): GovernanceActivities {
    this.localGovernance ??= patched(PATCHES.localGovernance);
    return this.localGovernance
      ? proxyLocalActivities<GovernanceActivities>({ ...this.localGovernanceOptions, summary })
      : proxyActivities<GovernanceActivities>({ ...this.governanceOptions, summary });
  }

  /** Send a notice to the approvers' channel, when configured. Never waits, never fails the release. */
  notify(kind: NoticeKind, summary: GateSummary): void {
    if (!this.governed || !this.resolved?.config.notices) return;
    const info = workflowInfo();
    this.inFlight += 1;
    void proxyActivities<GovernanceActivities>({ ...this.noticeOptions, summary: `Notify the approvers (${kind}) — ${summary.service} ${summary.version}` })
      .notify({ kind, workflowId: info.workflowId, runId: info.runId, summary }).catch(() => undefined)
      .finally(() => { this.inFlight -= 1; });
  }

  /** The facts every notice and the gate's current details start from. */
  summaryBase(env: EnvironmentStep, rules?: GateRules): GateSummary {
    const { service, version } = this.status.request;
    const out = (id: StepId) => this.stepStatus(id).outputs;
    const checked = this.environments().filter((e) => !e.final).map((e) => out(e.check).checks).filter(Boolean).join('; ');
    const r = rules ?? this.rulesFor(env);
    const notices = this.input.config.notices;
    const info = workflowInfo();
    const g = this.status.gate;
    return {
      service, version, environment: env.name, requester: this.status.requester.principal,
      needs: g.needs ?? describeNeeds([], r, this.status.requester), rule: describeRule(r),
      approveCommand: approveCommand(service, version, r),
      ...(out('tag').tag ? { tag: out('tag').tag } : {}), ...(out('tag').commit ? { commit: out('tag').commit } : {}),
      ...(out('build').digest ? { digest: out('build').digest } : {}), ...(out('build').imageRef ? { imageRef: out('build').imageRef } : {}),
      ...(out('build').ciRunUrl ? { buildRunUrl: out('build').ciRunUrl } : {}),
      ...(checked ? { smoke: checked } : {}),
      ...(notices?.webUi ? { webUiUrl: webUiLink(notices.webUi, info.namespace, info.workflowId, info.runId) } : {}),
      ...(g.deadline ? { deadline: g.deadline } : {}),
      ...(this.status.hotfix ? { hotfix: this.status.hotfix } : {}),
    };
  }

  private index(pairs: SearchAttributeUpdatePair[]): void {
    if (this.indexed) upsertSearchAttributes(pairs);
  }

  /** Run the release body in the run's own cancellation scope; notices and lane hints still on their way get a few seconds to land. */
  main<T>(body: () => Promise<T>): Promise<T> {
    return this.scope.run(async () => {
      try {
        return await body();
      } finally {
        if (this.inFlight > 0) await CancellationScope.nonCancellable(() => condition(() => this.inFlight === 0, '10s'));
      }
    });
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
    if (req.hotfix) this.adoptHotfix(req.hotfix, r.input);
    this.verifyStarter(req);
    return r.input;
  }

  /** A hotfix skips the environments before production, where the service's config allows it. */
  private adoptHotfix(hotfix: { reason: string }, input: ReleaseInput): void {
    const { service, version } = this.status.request;
    if (!this.governed) throw new ReleaseStopped('failed', 'Start refused: this worker\'s release workflow predates hotfixes. Nothing was changed.');
    if (!input.config.hotfix?.allowed) {
      throw new ReleaseStopped('failed', `Start refused: ${service} does not allow hotfixes (its config has no hotfix: { allowed: true, gate: … }). ` +
        `Release ${version} the usual way, through every environment, or ask for the hotfix path in the worker's config. Nothing was changed.`);
    }
    const skipped = this.environments().filter((e) => !e.final).map((e) => e.name);
    this.status.hotfix = { reason: hotfix.reason, skipped };
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
    const h = this.status.hotfix;
    this.ledger.event({
      kind: 'start', name: 'start', actor: a.principal, verified: a.verified, ...(a.fingerprint ? { fingerprint: a.fingerprint } : {}), verdict: 'accepted',
      ...(h ? { detail: `hotfix, skipping ${h.skipped.join(', ') || 'nothing'}: ${h.reason}` } : {}),
    });
    if (h) {
      const prod = this.environments()[this.environments().length - 1]!;
      this.notify('hotfix', this.summaryBase(prod));
    }
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
      const signedHotfix = v.value.statement.decision === 'hotfix';
      if (signedHotfix !== (req.hotfix !== undefined) || (req.hotfix && v.value.statement.reason !== req.hotfix.reason)) {
        throw new ReleaseStopped('failed', `Start refused: the signed start ${signedHotfix ? 'is' : 'is not'} for a hotfix, but the request ${req.hotfix ? 'asks for one' : 'does not'}` +
          `${req.hotfix && signedHotfix ? ' with another reason' : ''}; sign the start you send (\`gantry start … --hotfix --reason "…"\` does). Nothing was changed.`);
      }
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
    name: StepId,
    call: StepCall<T>,
    summarize: (r: T) => Record<string, string>,
    opts: { onFailure?: 'decide' | 'return'; decideOnAnyFailure?: boolean } = {},
  ): Promise<T> {
    const s = this.stepStatus(name);
    const kind = stepKind(name);
    const options = this.stepOptions(kind);
    const activities = proxyActivities<ReleaseActivities>(this.activityOptions(name, options));
    const skippable = this.governed && this.resolved?.config.steps[kind as keyof ReleaseInput['config']['steps']]?.skippable === true;
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
        observeStep(kind, secondsBetween(s.startedAt, s.endedAt), result.attempt, 'succeeded', this.status.request.service);
        return result;
      } catch (err) {
        s.endedAt = new Date().toISOString();
        if (isCancellation(err)) {
          s.state = 'skipped';
          s.error = 'cancelled while running';
          observeStep(kind, secondsBetween(s.startedAt, s.endedAt), 1, 'cancelled', this.status.request.service);
          throw err;
        }
        const f = describeFailure(err, options.retry.maximumAttempts);
        s.state = 'failed';
        s.attempts += f.attempts;
        s.error = f.message;
        observeStep(kind, secondsBetween(s.startedAt, s.endedAt), f.attempts, 'failed', this.status.request.service);
        // Before the plan is resolved there is nobody to decide: a config problem is fixed on the worker and the
        // release started again.
        if (opts.onFailure === 'return' || !this.resolved) throw new StepFailed(name, f.message);
        if (!f.retriesExhausted && !opts.decideOnAnyFailure) throw new StepFailed(name, f.message);
        const decision = await this.awaitDecision(name, f.message, f.retriesExhausted, skippable);
        if (decision === 'abort') throw new StepFailed(name, f.message, 'aborted');
        if (decision === 'skip') {
          const d = this.status.decisions[this.status.decisions.length - 1];
          s.state = 'skipped';
          s.error = `${f.message} (skipped by decision of ${d?.operator ?? '?'}${d?.reason ? `: ${d.reason}` : ''})`;
          throw new StepSkipped(name, s.error);
        }
      }
    }
  }

  // ---- the announcement ----

  /**
   * The announce step. Releases that reach it on this code deliver channel by channel (`gantry-deliveries`);
   * those whose history already holds the single `announce` activity keep it. An announcement that keeps failing
   * waits for an operator (fix the token, the webhook…, then `decide retry`), like any step after production
   * changed.
   */
  async announce(request: () => AnnounceRequest): Promise<AnnounceResult> {
    const perChannel = patched(PATCHES.deliveries);
    // The request is made for each run of the step: a retry carries the actions taken since (the decision).
    return this.step('announce', (a) => (perChannel ? this.deliver(request()) : a.announce(request())), (r) => ({
      webhook: String(r.webhookSent), audit: String(r.auditLogged),
      ...(r.notesPath ? { notes: r.notesPath } : {}), ...(r.githubReleaseUrl ? { githubRelease: r.githubReleaseUrl } : {}),
      ...(perChannel && r.channels ? { channels: channelsLine(r.channels) } : {}),
    }), { decideOnAnyFailure: true });
  }

  /**
   * One run of the announce step, channel by channel: the worker's plan (`announcePlan`), then one
   * `announceChannel` activity per enabled channel, the channels of a stage at once and the stages in order,
   * each heartbeating (10 s timeout unless the config sets one) so a delivery on a worker that died is retried on
   * another. A completed delivery is its own record: on a later run of the step (`decide retry`) it is reported
   * from history, not run again; only the audit log runs again when the release took actions since it wrote
   * (the decision to retry), and then writes just those lines (it knows the others by their ids). What a channel
   * leaves for the ones after it (the CHANGELOG section, the audit line) is passed on in their requests. A channel
   * that fails after its retries does not stop the others; the run then fails naming every channel's result.
   */
  private async deliver(req: AnnounceRequest): Promise<AnnounceResult> {
    const { service, version } = this.status.request;
    const step = this.activityOptions('announce', this.stepOptions('announce'));
    // Every activity of the step notices a lost worker within 10 s, unless the config sets another timeout.
    const options: ActivityOptions = { ...step, heartbeatTimeout: step.heartbeatTimeout ?? '10s' };
    const plan = await proxyActivities<ReleaseActivities>({ ...options, summary: `Announce the release: the channels — ${service} ${version}` }).announcePlan(req);
    const results = new Map<string, AnnounceChannelResult>();
    const failures: { channel: PlannedChannel; message: string; exhausted: boolean; attempts: number }[] = [];
    const shared: AnnounceShared = {};
    const share = (d: AnnounceDelivery) => {
      if (d.section !== undefined) shared.section = d.section;
      if (d.auditLine) shared.auditLine = d.auditLine;
    };
    for (const d of this.delivered.values()) share(d);
    let attempt = plan.attempt;
    const deliverOne = async (channel: PlannedChannel): Promise<void> => {
      const earlier = this.delivered.get(channel.name);
      const unaudited = channel.name === 'audit' && (req.actions?.length ?? 0) > this.auditedActions;
      if (earlier && !unaudited) {
        results.set(channel.name, { ...resultOf(earlier), detail: `${earlier.detail} (delivered by an earlier run of this step)` });
        return;
      }
      try {
        const d = await proxyActivities<ReleaseActivities>({ ...options, summary: `Announce the release: ${channel.title} — ${service} ${version}` })
          .announceChannel({ ...req, ...shared, channel: channel.name });
        this.delivered.set(channel.name, d);
        if (channel.name === 'audit') this.auditedActions = req.actions?.length ?? 0;
        attempt = Math.max(attempt, d.attempt);
        share(d);
        results.set(channel.name, resultOf(d));
      } catch (err) {
        if (isCancellation(err)) throw err;
        const f = describeFailure(err, this.stepOptions('announce').retry.maximumAttempts);
        attempt = Math.max(attempt, f.attempts);
        failures.push({ channel, message: f.message, exhausted: f.retriesExhausted, attempts: f.attempts });
        results.set(channel.name, { channel: channel.name, ok: false, detail: f.message });
      }
    };
    const enabled = plan.channels.filter((c) => c.enabled);
    for (const stage of [...new Set(enabled.map((c) => c.stage))].sort((a, b) => a - b)) {
      await Promise.all(enabled.filter((c) => c.stage === stage).map(deliverOne));
    }
    const channels = plan.channels.map((c) => results.get(c.name) ?? { channel: c.name, ok: true, skipped: true, detail: c.skipReason ?? 'not configured for this service' });
    const result: AnnounceResult = { attempt, ...announceSummary(channels), channels };
    if (failures.length === 0) return result;
    const lines = failures.map((f) => `- ${f.channel.title}: ${f.message}`).join('\n');
    const every = channels.map((c) => `  ${c.channel}: ${c.skipped ? `skipped (${c.detail})` : c.ok ? `ok (${c.detail})` : 'FAILED (above)'}`).join('\n');
    throw new DeliveriesFailed(
      `Announcing ${service} ${version} (${req.outcome}) failed on ${failures.length} channel(s):\n${lines}\nEvery channel:\n${every}\n` +
        'The channels that delivered are not repeated when the step is retried.',
      failures.every((f) => f.exhausted),
      Math.max(...failures.map((f) => f.attempts)),
    );
  }

  skip(name: StepId): void {
    const s = this.stepStatus(name);
    if (s.state === 'pending') s.state = 'skipped';
  }

  private stepOptions(name: StepName): StepOptions {
    return this.resolved?.steps[name] ?? DEFAULT_STEP_OPTIONS[name];
  }

  private activityOptions(name: StepId, o: StepOptions): ActivityOptions {
    const { service, version } = this.status.request;
    const title = this.status.steps.find((x) => x.name === name)?.title ?? STEP_TITLES[stepKind(name)];
    return {
      startToCloseTimeout: o.startToCloseTimeout,
      ...(o.heartbeatTimeout !== undefined ? { heartbeatTimeout: o.heartbeatTimeout } : {}),
      retry: { ...o.retry, nonRetryableErrorTypes: [...NON_RETRYABLE] },
      summary: `${title} — ${service} ${version}`,
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

  private async awaitDecision(step: StepId, error: string, retriesExhausted: boolean, skippable = false): Promise<Decision> {
    const timeout = this.input.config.timeouts.decision;
    const openedAt = new Date();
    this.status.pendingDecision = {
      id: `${step}#${this.decisionsTaken + 1}`,
      step,
      ...(skippable ? { allowed: ['retry', 'abort', 'skip'] as Decision[] } : {}),
      error,
      openedAt: openedAt.toISOString(),
      deadline: new Date(openedAt.getTime() + durationMs(timeout)).toISOString(),
    };
    const previousStage = this.status.stage;
    this.setStage('awaiting-decision');
    const { service, version } = this.status.request;
    const title = this.stepStatus(step).title;
    this.status.message = `${title} failed${retriesExhausted ? ' after its retries' : ''}: ${error}. Fix the cause, then ` +
      `\`gantry decide retry ${service} ${version} --as <name>\` or \`… decide abort …\`` +
      (skippable ? `, or pass it by with \`… decide skip … --reason "…"\` (the config marks it skippable).` : '.');
    setCurrentDetails(`**Needs a decision**: ${this.status.message}`);
    this.decision = undefined;
    const got = await condition(() => this.decision !== undefined, timeout);
    const taken: TakenDecision = got && this.decision
      ? this.decision
      : { decision: 'abort', actor: { principal: 'gantry', verified: false }, reason: `no decision within ${String(timeout)}` };
    countDecision(stepKind(step), taken.decision, got ? 'operator' : 'timeout', this.status.request.service);
    if (!got) this.ledger.event({ kind: 'timeout', name: 'decide', actor: 'gantry', verdict: 'recorded', detail: `${title}: ${taken.reason}; aborted` });
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
    // Whatever ended the release, every lane it held or waited for passes on.
    for (const name of Object.keys(this.status.lanes ?? {})) this.releaseLane(name);
    const current = this.status.environments?.find((e) => e.state === 'active');
    if (current) current.state = outcome === 'succeeded' ? 'passed' : 'failed';
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
    const out = (step: StepId) => this.stepStatus(step).outputs;
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
      message = `${this.stepStatus(err.stepName).title} failed: ${err.message}` +
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

  stepStatus(name: StepId): StepStatus {
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
  if (err instanceof DeliveriesFailed) return { message: err.message, retriesExhausted: err.retriesExhausted, attempts: err.attempts };
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

/** A delivery as a channel's result (without what it passed on to the channels after it). */
function resultOf(d: AnnounceDelivery): AnnounceChannelResult {
  const { attempt: _attempt, section: _section, auditLine: _auditLine, ...result } = d;
  return result;
}

export function summarizeDeploy(r: DeployResult): Record<string, string> {
  return {
    targets: r.targets.map((t) => t.target).join(', '),
    previous: r.targets.map((t) => `${t.target}: ${t.previousImage ?? 'none'}`).join('; '),
    changed: r.targets.filter((t) => t.changed).map((t) => t.target).join(', ') || 'none (already running this digest)',
  };
}

