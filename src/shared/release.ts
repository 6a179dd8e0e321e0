/**
 * What the workflow, the worker and the CLI agree on: the task queue, the workflow id scheme, the input
 * snapshot, the status shape, search attributes, and the signals, queries and updates (defined once, here).
 *
 * This module is imported by workflow code, so it must stay deterministic: no Node builtins, no I/O.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { ServiceConfig } from '../config/schema';
import type { Actor, IdentityMode, PrincipalKey, VoteRecord } from './gate';
import { parseSignedPayload, type SignedStatement } from './statement';
import { checkName, checkReason, displayText, MAX_NAME } from './text';
import type { StepId, StepName, StepOptions } from './steps';
import { SA_NAMES, SERVICE_NAME, startKeywords } from './ids';

export { releaseWorkflowId, SERVICE_NAME, TASK_QUEUE, WORKFLOW_TYPE } from './ids';

/**
 * What starts a release: the request alone. The worker owns the config; the workflow's first step resolves the
 * plan from it on the worker. A start that carries anything else (a config, steps, unknown fields) is refused.
 */
export interface StartRequest {
  service: string;
  version: string;
  /** Who asked for the release (CLI user or `--requested-by`); in signed mode the signed principal. */
  requestedBy: string;
  /** Return the plan and touch nothing. */
  dryRun?: boolean;
  /** The signed start statement (signed mode). */
  signed?: SignedStatement;
  /** sha256 of the operator's local config file, so status can say whether it matches the worker's. */
  localConfigSha256?: string;
  /** Skip the environments before production, with its own gate rule (the service's config must allow it). */
  hotfix?: { reason: string };
}

export const START_REQUEST_FIELDS = ['service', 'version', 'requestedBy', 'dryRun', 'signed', 'localConfigSha256', 'hotfix'] as const;

/**
 * The resolved plan the release runs on: the service's config as the worker read it, with its sha256, and the
 * public keys of the people it names. Recorded in history by the resolve step. It holds no secret: secrets are
 * references, resolved by the activity that uses them.
 */
export interface ReleaseInput {
  service: string;
  version: string;
  requestedBy: string;
  dryRun: boolean;
  config: ServiceConfig;
  /** Activity options per step, defaults merged with `steps:` overrides. */
  steps: Record<StepName, StepOptions>;
  /** Where the config came from (path and short sha256), for the record. */
  configSource?: string;
  /** sha256 of the worker's config (files and allowed signers). */
  configSha256?: string;
  /** Public keys of the approvers and operators (signed mode). */
  keys?: PrincipalKey[];
  /** The config's groups (`groups:`), for the gate rules that name them. */
  groups?: Record<string, string[]>;
}

/** semver.org's pattern for a version (no leading v). */
export const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** Check a start request as it arrived: only the request's own fields, each of the right shape. */
export function parseStartRequest(arg: unknown): Parsed<StartRequest> {
  if (typeof arg !== 'object' || arg === null || Array.isArray(arg)) return { ok: false, problem: `the start input is ${describe(arg)}, not a start request` };
  const o = arg as Record<string, unknown>;
  if ('config' in o || 'steps' in o) {
    return {
      ok: false,
      problem: 'the start request carries a config; the worker owns the release config and resolves the plan itself. ' +
        'Send only service, version and requestedBy (`gantry start <service> <version>` does)',
    };
  }
  const unknownKeys = Object.keys(o).filter((k) => !(START_REQUEST_FIELDS as readonly string[]).includes(k));
  if (unknownKeys.length > 0) {
    return { ok: false, problem: `the start request has unknown field(s) ${unknownKeys.slice(0, 5).map((k) => k.slice(0, 30)).join(', ')}; it takes ${START_REQUEST_FIELDS.join(', ')}` };
  }
  if (typeof o.service !== 'string' || !SERVICE_NAME.test(o.service)) return { ok: false, problem: '"service" must be a service name (lowercase letters, digits, dashes)' };
  if (typeof o.version !== 'string' || o.version.length > 128 || !SEMVER.test(o.version)) return { ok: false, problem: '"version" must be a semantic version such as 1.4.0' };
  if (typeof o.requestedBy !== 'string') return { ok: false, problem: '"requestedBy" must be text' };
  const who = checkName(o.requestedBy, '"requestedBy"');
  if (!who.ok) return who;
  if (o.dryRun !== undefined && typeof o.dryRun !== 'boolean') return { ok: false, problem: '"dryRun" must be true or false' };
  if (o.localConfigSha256 !== undefined && (typeof o.localConfigSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.localConfigSha256))) {
    return { ok: false, problem: '"localConfigSha256" must be 64 hex digits' };
  }
  let hotfix: { reason: string } | undefined;
  if (o.hotfix !== undefined) {
    const h = o.hotfix as Record<string, unknown> | null;
    if (typeof h !== 'object' || h === null || Array.isArray(h) || typeof h.reason !== 'string' || Object.keys(h).some((k) => k !== 'reason')) {
      return { ok: false, problem: '"hotfix" must be {"reason": "why this skips the environments before production"}' };
    }
    const r = checkReason(h.reason);
    if (!r.ok) return r;
    if (!r.value.trim()) return { ok: false, problem: 'a hotfix needs a reason: `gantry start <service> <version> --hotfix --reason "…"`' };
    hotfix = { reason: r.value };
  }
  let signed: SignedStatement | undefined;
  if (o.signed !== undefined) {
    const p = parseSignedPayload(o.signed);
    if (!p.ok) return { ok: false, problem: `"signed": ${p.problem}` };
    signed = p.value;
  }
  return {
    ok: true,
    value: {
      service: o.service,
      version: o.version,
      requestedBy: who.value,
      ...(o.dryRun ? { dryRun: true } : {}),
      ...(signed ? { signed } : {}),
      ...(typeof o.localConfigSha256 === 'string' ? { localConfigSha256: o.localConfigSha256 } : {}),
      ...(hotfix ? { hotfix } : {}),
    },
  };
}

export type StepState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';

export interface StepStatus {
  /** The step's id: a step of the runbook, or `deploy:<env>` / `smoke:<env>` for environments between staging and production. */
  name: StepId;
  title: string;
  /** The environment a deploy or check step acts on. */
  environment?: string;
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
  | 'waiting-for-lane'
  | 'awaiting-approval'
  | 'deploy-production'
  | 'health'
  | 'rollback'
  | 'announce'
  | 'awaiting-decision'
  | 'done';

export type Outcome = 'succeeded' | 'rolled_back' | 'rejected' | 'aborted' | 'cancelled' | 'failed' | 'planned';

export type Vote = VoteRecord;

export interface RefusedAttempt {
  /** The signal or update name as it arrived (`aprove` for a typo), cut for display. */
  name: string;
  /** Who it claimed to be from, cut and cleaned for display (unverified). */
  approver?: string;
  /** `temporal`: Temporal's own cancellation request, which carries no identity. */
  via: 'signal' | 'update' | 'temporal';
  at: string;
  why: string;
}

export type GateState = 'not_open' | 'open' | 'approved' | 'rejected' | 'timed_out' | 'closed';

export interface GateStatus {
  state: GateState;
  required: number;
  approvers: string[];
  /** signed or declared (approvals.identity). */
  identity: IdentityMode;
  openedAt?: string;
  closedAt?: string;
  /** When the gate times out and the release is aborted. */
  deadline?: string;
  /** The image digest being approved (what signed votes name). */
  digest?: string;
  approvals: Vote[];
  rejection?: Vote;
  /** The last REFUSED_KEPT refused attempts (signals, and messages refused by any handler). */
  refused: RefusedAttempt[];
  /** How many attempts were refused in all. */
  refusedCount: number;
  /** What the gate still needs, in words. */
  needs?: string;
  /** The environment this gate protects (absent in releases started before environments were configurable). */
  environment?: string;
  /** The rule in words ("2 approvals, at least 1 from sre and 1 from product; one rejection vetoes"). */
  rule?: string;
  /** Break-glass approvals: extra approvals that let the release through a freeze. */
  breakGlass?: Vote[];
  /** The approvals meet the rule (governed releases then check the freezes before the gate passes). */
  quorum?: boolean;
  /** The freezes holding this gate, as last checked. */
  freeze?: { frozen: boolean; checkedAt: string; freezes: GateFreeze[]; until?: string };
  /** Gates passed earlier in this release (environments before this one). */
  passed?: Array<{ environment: string; state: GateState; approvals: Vote[]; rejection?: Vote; breakGlass?: Vote[]; openedAt?: string; closedAt?: string }>;
}

/** One freeze as the gate shows it: a manual freeze (who, why, until) or a deny window from config. */
export interface GateFreeze {
  kind: 'manual' | 'window';
  id: string;
  scope: string;
  by?: string;
  reason: string;
  since?: string;
  until?: string;
}

/** Where the release stands in one environment's lane (one release at a time per service and environment). */
export interface LaneStatus {
  state: 'waiting' | 'held' | 'released';
  since: string;
  /** While waiting: who holds the lane, since when, and this release's place in the queue. */
  holder?: { workflowId: string; version: string; heldSince: string };
  position?: number;
}

/** One entry of the release's ledger (src/workflows/ledger.ts): a message it handled, or something it did. */
export interface LedgerEntry {
  /**
   * `signal`/`update`: n-th signal-or-accepted-update of the history; `cancel-request`: n-th cancellation
   * request; 0 for the release's own events.
   */
  seq: number;
  kind: 'signal' | 'update' | 'cancel-request' | 'start' | 'timeout' | 'break-glass' | 'outcome';
  /** The signal or update name as it arrived (cut for display), or the event's name. */
  name: string;
  /** Who it came from: verified principal, declared name, or the name it claimed (refused). */
  actor?: string;
  verified?: boolean;
  fingerprint?: string;
  verdict: 'accepted' | 'refused' | 'recorded';
  why?: string;
  detail?: string;
  at: string;
}

export interface LedgerStatus {
  entries: LedgerEntry[];
  /** Signals and accepted updates handled in all. */
  messages: number;
  cancelRequests: number;
  /** Refused entries in all, and how many were dropped from `entries` (only the last ones are kept). */
  refused: number;
  dropped: number;
}

export interface PendingDecision {
  /** Names this decision in signed statements: `<step>#<n>`, n counting the release's decisions. */
  id: string;
  step: StepId;
  /** The decisions this step takes: retry and abort, and skip when config marks the step skippable. */
  allowed?: Decision[];
  error: string;
  openedAt: string;
  deadline: string;
}

export interface DecisionRecord {
  step: StepId;
  decision: Decision;
  operator: string;
  /** True when the operator signed the decision; false for declared names and gantry's own timeouts. */
  verified: boolean;
  fingerprint?: string;
  reason?: string;
  at: string;
}

export interface PlanStep {
  step: StepId;
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
  /** What was asked for (service, version, requester). */
  request: { service: string; version: string; requestedBy: string; dryRun: boolean };
  /** Who started it, as verified (signed) or declared. */
  requester: Actor;
  /** The resolved plan, once the resolve step ran. */
  input?: ReleaseInput;
  /** Set when the operator's local config differed from the worker's. */
  configNote?: string;
  stage: Stage;
  /** The environment the release is in (or last was), and every environment in order. */
  environment?: string;
  environments?: Array<{ name: string; gated: boolean; state: 'pending' | 'active' | 'passed' | 'skipped' | 'failed' }>;
  /** Its place in each environment's lane. */
  lanes?: Record<string, LaneStatus>;
  /** Set for a hotfix: why, and which environments it skipped. */
  hotfix?: { reason: string; skipped: string[] };
  steps: StepStatus[];
  gate: GateStatus;
  pendingDecision?: PendingDecision;
  decisions: DecisionRecord[];
  /** Every message handled, in order, with its actor and verdict (bounded); absent in releases started before it. */
  ledger?: LedgerStatus;
  cancellation: { requested: boolean; at?: string; note?: string; by?: string };
  outcome?: Outcome;
  /** What happened and what to do next, in a sentence or two. */
  message: string;
  /** Whether a release that ended without its announcement got its audit record. */
  recorded?: string;
  plan?: ReleasePlan;
  startedAt: string;
  endedAt?: string;
}

// ---- Search attributes (registered by scripts/provision.sh and `gantry dev`) ----

export const SA_SERVICE = defineSearchAttributeKey(SA_NAMES.service, SearchAttributeType.KEYWORD);
export const SA_VERSION = defineSearchAttributeKey(SA_NAMES.version, SearchAttributeType.KEYWORD);
export const SA_STAGE = defineSearchAttributeKey(SA_NAMES.stage, SearchAttributeType.KEYWORD);
export const SA_OUTCOME = defineSearchAttributeKey(SA_NAMES.outcome, SearchAttributeType.KEYWORD);
export const SA_ENVIRONMENT = defineSearchAttributeKey(SA_NAMES.environment, SearchAttributeType.KEYWORD);
export const SEARCH_ATTRIBUTES = [SA_SERVICE, SA_VERSION, SA_STAGE, SA_OUTCOME, SA_ENVIRONMENT] as const;

/**
 * The search attributes a release starts with. Whoever starts one gives these: the workflow keeps its stage
 * current only when they were given at start (see the comment in src/workflows/release.ts).
 */
export function startSearchAttributes(release: { service: string; version: string }): SearchAttributePair[] {
  const k = startKeywords(release);
  return [
    { key: SA_SERVICE, value: k.service },
    { key: SA_VERSION, value: k.version },
    { key: SA_STAGE, value: k.stage },
    { key: SA_ENVIRONMENT, value: k.environment },
  ];
}

// ---- Messages ----

/** A vote with a declared name (identity: declared). */
export interface VotePayload {
  approver: string;
  reason?: string;
  /** An extra approval that lets the release through a freeze (break-glass group only, with a reason). */
  breakGlass?: boolean;
}

export type Decision = 'retry' | 'abort' | 'skip';

/** A decision with a declared name (identity: declared). */
export interface DecisionPayload {
  decision: Decision;
  operator: string;
  reason?: string;
}

/** A cancellation with a declared name (identity: declared). */
export interface CancelPayload {
  operator: string;
  reason?: string;
}

/** Every message that decides something takes either the declared form or a signed statement. */
export type VoteMessage = VotePayload | SignedStatement;
export type DecisionMessage = DecisionPayload | SignedStatement;
export type CancelMessage = CancelPayload | SignedStatement;

/** What `gantry approve`/`reject` get back from an accepted update. */
export interface GateAnswer {
  gate: GateState;
  approvals: number;
  required: number;
  message: string;
}

export const approveSignal = defineSignal<[VoteMessage]>('approve');
export const rejectSignal = defineSignal<[VoteMessage]>('reject');
export const decideSignal = defineSignal<[DecisionMessage]>('decide');
export const cancelSignal = defineSignal<[CancelMessage]>('cancel');

export const approveUpdate = defineUpdate<GateAnswer, [VoteMessage]>('approve');
export const rejectUpdate = defineUpdate<GateAnswer, [VoteMessage]>('reject');
export const decideUpdate = defineUpdate<string, [DecisionMessage]>('decide');
export const cancelUpdate = defineUpdate<string, [CancelMessage]>('cancel');

export const statusQuery = defineQuery<ReleaseStatus>('status');

export const SIGNAL_NAMES = ['approve', 'reject', 'decide', 'cancel'] as const;

/** Descriptions shown in the Web UI's signal dialog and by `temporal workflow metadata`. */
export const HANDLER_DESCRIPTIONS = {
  approve:
    'Approve at the open gate (production, or the environment status names). Signed mode (default): paste the JSON printed by ' +
    '`gantry approve <service> <version> --as <name> --print` ({"statement": "…", "signature": "…"}). Declared mode: {"approver": "<name>", "reason": "optional"}, ' +
    'with "breakGlass": true for a break-glass approval through a freeze. Accepted only while the gate is open; each approver votes once.',
  reject:
    'Reject the release: nothing reaches production. Signed: the JSON from `gantry reject … --print`. Declared: {"approver": "<name>", "reason": "why"}.',
  decide:
    'After a step used up its retries: signed, the JSON from `gantry decide retry|abort|skip … --print`; declared, {"decision": "retry" | "abort" | "skip", "operator": "<name>", "reason": "optional"} (skip only for steps the config marks skippable).',
  cancel:
    'Cancel the release: signed, the JSON from `gantry cancel … --print`; declared, {"operator": "<name>", "reason": "optional"}. Production work already begun finishes first.',
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
  const r = checkReason(o.reason);
  if (!r.ok) return r;
  return { ok: true, value: r.value || undefined };
}

function nameField(o: Record<string, unknown>, field: string, example: string): Parsed<string> {
  const v = o[field];
  if (typeof v !== 'string' || v.trim() === '') {
    const got = typeof v === 'string' ? 'blank text' : describe(v);
    return { ok: false, problem: `"${field}" is missing or not text (got ${got}); ${example}` };
  }
  const n = checkName(v, `"${field}"`);
  if (!n.ok) return { ok: false, problem: `${n.problem}; ${example}` };
  return n;
}

function unknownFields(o: Record<string, unknown>, allowed: string[], example: string): Parsed<void> {
  const unknownKeys = Object.keys(o).filter((k) => !allowed.includes(k));
  if (unknownKeys.length === 0) return { ok: true, value: undefined };
  const shown = unknownKeys.slice(0, 5).map((k) => displayText(k, 30)).join(', ');
  return { ok: false, problem: `unknown field(s) ${shown}${unknownKeys.length > 5 ? ` and ${unknownKeys.length - 5} more` : ''}; ${example}` };
}

function asObject(payload: unknown, example: string): Parsed<Record<string, unknown>> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, problem: `payload is ${describe(payload)}; ${example}` };
  }
  return { ok: true, value: payload as Record<string, unknown> };
}

/**
 * Check a declared approve/reject payload as it arrived (from the Web UI it can be anything, even nothing).
 * Hand-written rather than a schema library so the workflow bundle stays small and the messages say exactly
 * what to send. Names are NFC, at most MAX_NAME characters, without control characters.
 */
export function parseVote(payload: unknown): Parsed<VotePayload> {
  const example = 'send {"approver": "<name>", "reason": "optional"}';
  const obj = asObject(payload, example);
  if (!obj.ok) return obj;
  const o = obj.value;
  const approver = nameField(o, 'approver', example);
  if (!approver.ok) return approver;
  const extra = unknownFields(o, ['approver', 'reason', 'breakGlass'], example);
  if (!extra.ok) return extra;
  const reason = optionalReason(o, example);
  if (!reason.ok) return reason;
  if (o.breakGlass !== undefined && typeof o.breakGlass !== 'boolean') return { ok: false, problem: `"breakGlass" must be true or false; ${example}` };
  return { ok: true, value: { approver: approver.value, ...(reason.value ? { reason: reason.value } : {}), ...(o.breakGlass === true ? { breakGlass: true } : {}) } };
}

export function parseDecision(payload: unknown): Parsed<DecisionPayload> {
  const example = 'send {"decision": "retry" | "abort" | "skip", "operator": "<name>", "reason": "optional"}';
  const obj = asObject(payload, example);
  if (!obj.ok) return obj;
  const o = obj.value;
  if (o.decision !== 'retry' && o.decision !== 'abort' && o.decision !== 'skip') {
    const got = typeof o.decision === 'string' ? JSON.stringify(displayText(o.decision, 20)) : describe(o.decision);
    return { ok: false, problem: `"decision" must be "retry", "abort" or "skip" (got ${got}); ${example}` };
  }
  const operator = nameField(o, 'operator', example);
  if (!operator.ok) return operator;
  const extra = unknownFields(o, ['decision', 'operator', 'reason'], example);
  if (!extra.ok) return extra;
  const reason = optionalReason(o, example);
  if (!reason.ok) return reason;
  return { ok: true, value: { decision: o.decision, operator: operator.value, ...(reason.value ? { reason: reason.value } : {}) } };
}

export function parseCancel(payload: unknown): Parsed<CancelPayload> {
  const example = 'send {"operator": "<name>", "reason": "optional"}';
  const obj = asObject(payload, example);
  if (!obj.ok) return obj;
  const o = obj.value;
  const operator = nameField(o, 'operator', example);
  if (!operator.ok) return operator;
  const extra = unknownFields(o, ['operator', 'reason'], example);
  if (!extra.ok) return extra;
  const reason = optionalReason(o, example);
  if (!reason.ok) return reason;
  return { ok: true, value: { operator: operator.value, ...(reason.value ? { reason: reason.value } : {}) } };
}

/** The name a payload claims, cleaned for the refused-attempts ledger (never trusted). */
export function claimedName(payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const o = payload as Record<string, unknown>;
  const v = typeof o.approver === 'string' ? o.approver : typeof o.operator === 'string' ? o.operator : undefined;
  if (v !== undefined) return displayText(v, MAX_NAME) || undefined;
  if (typeof o.statement === 'string') {
    const m = /\nprincipal: ([^\n]*)\n/.exec(o.statement.slice(0, 4096));
    if (m) return displayText(m[1], MAX_NAME) || undefined;
  }
  return undefined;
}
