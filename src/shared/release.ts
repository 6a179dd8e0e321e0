/**
 * What the workflow, the worker and the CLI agree on: the task queue, the workflow id scheme, the input
 * snapshot, the status shape, search attributes, and the signals, queries and updates (defined once, here).
 *
 * This module is imported by workflow code, so it must stay deterministic: no Node builtins, no I/O.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { ServiceConfig } from '../config/schema';
import type { StepName, StepOptions } from './steps';

export const TASK_QUEUE = 'gantry-releases';
export const WORKFLOW_TYPE = 'releaseWorkflow';

/** One release per service and version: the id is derived, so a second start of the same release is refused. */
export function releaseWorkflowId(service: string, version: string): string {
  return `release-${service}-${version}`;
}

/** The immutable snapshot the workflow runs on. It holds no secret: secrets are references. */
export interface ReleaseInput {
  service: string;
  version: string;
  /** Who asked for the release (CLI user or `--requested-by`). */
  requestedBy: string;
  /** Return the plan and touch nothing. */
  dryRun: boolean;
  config: ServiceConfig;
  /** Activity options per step, defaults merged with `steps:` overrides. */
  steps: Record<StepName, StepOptions>;
  /** Where the config came from (path and sha256), for the record. */
  configSource?: string;
}

export type StepState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';

export interface StepStatus {
  name: StepName;
  title: string;
  state: StepState;
  /** Activity attempts across all runs of this step. */
  attempts: number;
  /** Times the workflow started this step (more than one after `decide retry`). */
  runs: number;
  startedAt?: string;
  endedAt?: string;
  /** Facts the step produced (commit, tag, digest, URLs), flattened for display. */
  outputs: Record<string, string>;
  error?: string;
}

export type Stage =
  | 'planning'
  | 'preflight'
  | 'tag'
  | 'build'
  | 'deploy-staging'
  | 'smoke'
  | 'awaiting-approval'
  | 'deploy-production'
  | 'health'
  | 'rollback'
  | 'announce'
  | 'awaiting-decision'
  | 'done';

export type Outcome = 'succeeded' | 'rolled_back' | 'rejected' | 'aborted' | 'cancelled' | 'failed' | 'planned';

export interface Vote {
  approver: string;
  reason?: string;
  at: string;
  via: 'signal' | 'update';
}

export interface RefusedAttempt {
  /** The signal or update name as it arrived (`aprove` for a typo). */
  name: string;
  approver?: string;
  via: 'signal' | 'update';
  at: string;
  why: string;
}

export type GateState = 'not_open' | 'open' | 'approved' | 'rejected' | 'timed_out' | 'closed';

export interface GateStatus {
  state: GateState;
  required: number;
  approvers: string[];
  openedAt?: string;
  closedAt?: string;
  /** When the gate times out and the release is aborted. */
  deadline?: string;
  approvals: Vote[];
  rejection?: Vote;
  refused: RefusedAttempt[];
}

export interface PendingDecision {
  step: StepName;
  error: string;
  openedAt: string;
  deadline: string;
}

export interface DecisionRecord {
  step: StepName;
  decision: Decision;
  operator: string;
  reason?: string;
  at: string;
}

export interface PlanStep {
  step: StepName;
  title: string;
  detail: string;
}

export interface ReleasePlan {
  service: string;
  version: string;
  workflowId: string;
  tag: string;
  image: string;
  steps: PlanStep[];
}

export interface ReleaseStatus {
  workflowId: string;
  input: ReleaseInput;
  stage: Stage;
  steps: StepStatus[];
  gate: GateStatus;
  pendingDecision?: PendingDecision;
  decisions: DecisionRecord[];
  cancellation: { requested: boolean; at?: string; note?: string };
  outcome?: Outcome;
  /** What happened and what to do next, in a sentence or two. */
  message: string;
  plan?: ReleasePlan;
  startedAt: string;
  endedAt?: string;
}

// ---- Search attributes (registered by scripts/provision.sh and `gantry dev`) ----

export const SA_SERVICE = defineSearchAttributeKey('GantryService', SearchAttributeType.KEYWORD);
export const SA_VERSION = defineSearchAttributeKey('GantryVersion', SearchAttributeType.KEYWORD);
export const SA_STAGE = defineSearchAttributeKey('GantryStage', SearchAttributeType.KEYWORD);
export const SA_OUTCOME = defineSearchAttributeKey('GantryOutcome', SearchAttributeType.KEYWORD);
export const SEARCH_ATTRIBUTES = [SA_SERVICE, SA_VERSION, SA_STAGE, SA_OUTCOME] as const;

/**
 * The search attributes a release starts with. Whoever starts one gives these: the workflow keeps its stage
 * current only when they were given at start (see the comment in src/workflows/release.ts).
 */
export function startSearchAttributes(release: { service: string; version: string }): SearchAttributePair[] {
  return [
    { key: SA_SERVICE, value: release.service },
    { key: SA_VERSION, value: release.version },
    { key: SA_STAGE, value: 'planning' },
  ];
}

// ---- Messages ----

export interface VotePayload {
  approver: string;
  reason?: string;
}

export type Decision = 'retry' | 'abort';

export interface DecisionPayload {
  decision: Decision;
  operator: string;
  reason?: string;
}

/** What `gantry approve`/`reject` get back from an accepted update. */
export interface GateAnswer {
  gate: GateState;
  approvals: number;
  required: number;
  message: string;
}

export const approveSignal = defineSignal<[VotePayload]>('approve');
export const rejectSignal = defineSignal<[VotePayload]>('reject');
export const decideSignal = defineSignal<[DecisionPayload]>('decide');

export const approveUpdate = defineUpdate<GateAnswer, [VotePayload]>('approve');
export const rejectUpdate = defineUpdate<GateAnswer, [VotePayload]>('reject');
export const decideUpdate = defineUpdate<string, [DecisionPayload]>('decide');

export const statusQuery = defineQuery<ReleaseStatus>('status');

export const SIGNAL_NAMES = ['approve', 'reject', 'decide'] as const;

/** Descriptions shown in the Web UI's signal dialog and by `temporal workflow metadata`. */
export const HANDLER_DESCRIPTIONS = {
  approve:
    'Approve the production deploy. Payload: {"approver": "<your name from the approvers list>", "reason": "optional"}. ' +
    'Accepted only while the gate is open; each approver votes once. The name is self-declared in the Web UI.',
  reject:
    'Reject the release: nothing reaches production. Payload: {"approver": "<your name from the approvers list>", "reason": "why"}.',
  decide:
    'After a step used up its retries: {"decision": "retry" | "abort", "operator": "<your name>", "reason": "optional"}.',
  status: 'The release: stage, every step with attempts and outputs, the approval gate, any pending decision.',
} as const;

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}

function optionalReason(o: Record<string, unknown>, example: string): Parsed<string | undefined> {
  if (o.reason === undefined || o.reason === null) return { ok: true, value: undefined };
  if (typeof o.reason !== 'string') return { ok: false, problem: `"reason" must be text, got ${describe(o.reason)}; ${example}` };
  return { ok: true, value: o.reason };
}

/**
 * Check an approve/reject payload as it arrived (from the Web UI it can be anything, even nothing).
 * Hand-written rather than a schema library so the workflow bundle stays small and the messages say exactly
 * what to send.
 */
export function parseVote(payload: unknown): Parsed<VotePayload> {
  const example = 'send {"approver": "<name>", "reason": "optional"}';
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, problem: `payload is ${describe(payload)}; ${example}` };
  }
  const o = payload as Record<string, unknown>;
  if (typeof o.approver !== 'string' || o.approver.trim() === '') {
    const got = typeof o.approver === 'string' ? 'blank text' : describe(o.approver);
    return { ok: false, problem: `"approver" is missing or not text (got ${got}); ${example}` };
  }
  const unknownKeys = Object.keys(o).filter((k) => k !== 'approver' && k !== 'reason');
  if (unknownKeys.length > 0) return { ok: false, problem: `unknown field(s) ${unknownKeys.join(', ')}; ${example}` };
  const reason = optionalReason(o, example);
  if (!reason.ok) return reason;
  return { ok: true, value: { approver: o.approver.trim(), ...(reason.value ? { reason: reason.value } : {}) } };
}

export function parseDecision(payload: unknown): Parsed<DecisionPayload> {
  const example = 'send {"decision": "retry" | "abort", "operator": "<name>", "reason": "optional"}';
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, problem: `payload is ${describe(payload)}; ${example}` };
  }
  const o = payload as Record<string, unknown>;
  if (o.decision !== 'retry' && o.decision !== 'abort') {
    return { ok: false, problem: `"decision" must be "retry" or "abort" (got ${JSON.stringify(o.decision) ?? 'nothing'}); ${example}` };
  }
  if (typeof o.operator !== 'string' || o.operator.trim() === '') {
    const got = typeof o.operator === 'string' ? 'blank text' : describe(o.operator);
    return { ok: false, problem: `"operator" is missing or not text (got ${got}); ${example}` };
  }
  const unknownKeys = Object.keys(o).filter((k) => !['decision', 'operator', 'reason'].includes(k));
  if (unknownKeys.length > 0) return { ok: false, problem: `unknown field(s) ${unknownKeys.join(', ')}; ${example}` };
  const reason = optionalReason(o, example);
  if (!reason.ok) return reason;
  return {
    ok: true,
    value: { decision: o.decision, operator: o.operator.trim(), ...(reason.value ? { reason: reason.value } : {}) },
  };
}
