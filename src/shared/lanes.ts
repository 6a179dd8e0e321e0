/**
 * Lanes: one release at a time per service and environment. A lane is a long-lived workflow
 * (`gantry-lane-<service>-<environment>`) that hands the environment to releases first come, first served, and
 * passes it on when the holder leaves it, whichever way that happens. Definitions shared by the lane workflow,
 * the release workflow, the worker's lane activities and `gantry lanes`.
 *
 * Deterministic: imported by workflow code.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { releaseWorkflowId, SEMVER, SERVICE_NAME } from './release';
import { checkName, displayText } from './text';

export const LANE_WORKFLOW_TYPE = 'laneWorkflow';
/** Most releases that may wait in one lane; beyond it an enqueue is refused with the reason. */
export const MAX_LANE_QUEUE = 200;
/** How many past holders a lane keeps for `gantry lanes`. */
export const LANE_RECENT_KEPT = 20;
/** A lane with no holder and nobody waiting completes after this long; the next enqueue starts it again. */
export const LANE_IDLE_MS = 10 * 60_000;

const ENVIRONMENT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function laneWorkflowId(service: string, environment: string): string {
  return `gantry-lane-${service}-${environment}`;
}

/** A release in a lane: holding it or waiting for it. */
export interface LaneEntry {
  /** `release-<service>-<version>` */
  workflowId: string;
  runId: string;
  version: string;
  /** ISO 8601: when it queued (the lane's clock). */
  since: string;
  requestedBy?: string;
}

/** A lane's holder: when it was granted the lane. */
export type LaneHolder = LaneEntry & { heldSince: string };

/** One past holder, for the record. */
export interface LaneRecord {
  version: string;
  workflowId: string;
  runId: string;
  /** When it was granted the lane, and when it left it. */
  from: string;
  to: string;
  /** How it left: released (its status said so), completed, failed, cancelled, terminated, timed out, … */
  ended: string;
}

export interface LaneView {
  service: string;
  environment: string;
  holder?: LaneHolder;
  queue: LaneEntry[];
  /** For the release that asked: 0 holds the lane, n is n-th in the queue. */
  position?: number;
  /** The last LANE_RECENT_KEPT holders, newest last. */
  recent?: LaneRecord[];
  updatedAt: string;
}

/** What a lane workflow runs on, and carries over continue-as-new. */
export interface LaneState {
  service: string;
  environment: string;
  holder?: LaneHolder;
  queue: LaneEntry[];
  recent: LaneRecord[];
  updatedAt: string;
  /** Continue as new past this many history events (default 2,000; tests lower it). */
  maxHistory?: number;
  /** How long an idle lane waits before it completes, in ms (default LANE_IDLE_MS). */
  idleMs?: number;
  /** Most releases that may wait (default MAX_LANE_QUEUE; tests lower it). */
  maxQueue?: number;
}

export function initialLaneState(service: string, environment: string, at = new Date(0).toISOString()): LaneState {
  return { service, environment, queue: [], recent: [], updatedAt: at };
}

/** What a release sends to queue for a lane (the lane sets `since`). */
export type LaneEnqueueRequest = Omit<LaneEntry, 'since'> & { since?: string; service: string; environment: string };

/** A release asks for the lane; answered with the lane as it is now and the asker's position. */
export const laneEnqueueUpdate = defineUpdate<LaneView, [LaneEnqueueRequest]>('enqueue');
/** A release says it left the lane: a hint only, the lane checks it before it acts. */
export const laneLeaveSignal = defineSignal<[{ workflowId: string; runId: string }]>('leave');
export const laneQuery = defineQuery<LaneView>('lane');
/** The lane tells a release it changed (no arguments; a hint: the release asks the lane again). */
export const laneChangedSignal = defineSignal<[]>('gantry-lane-changed');

export const LANE_HANDLER_DESCRIPTIONS = {
  enqueue: 'Queue a release for this lane: {"workflowId": "release-<service>-<version>", "runId": "…", "version": "…", "service": "…", "environment": "…"}. Answers with the lane and the release\'s position (0: it holds the lane).',
  leave: 'A hint that a release left the lane: {"workflowId": "…", "runId": "…"}. The lane checks the release itself before it passes the lane on.',
  lane: 'The lane: its holder, the releases waiting in order, and the last holders.',
} as const;

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * Check an enqueue request against the lane it arrived at: the lane's own service and environment, a release
 * workflow id of that service and version, and a run id.
 */
export function parseEnqueue(payload: unknown, lane: { service: string; environment: string }): Parsed<LaneEnqueueRequest> {
  const example = `send {"workflowId": "release-${lane.service}-<version>", "runId": "<run id>", "version": "<version>", "service": "${lane.service}", "environment": "${lane.environment}"}`;
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return { ok: false, problem: `the enqueue request is not an object; ${example}` };
  const o = payload as Record<string, unknown>;
  const allowed = ['workflowId', 'runId', 'version', 'since', 'requestedBy', 'service', 'environment'];
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0) return { ok: false, problem: `unknown field(s) ${extra.slice(0, 5).map((k) => displayText(k, 30)).join(', ')}; ${example}` };
  for (const f of ['workflowId', 'runId', 'version', 'service', 'environment'] as const) {
    if (typeof o[f] !== 'string' || o[f] === '') return { ok: false, problem: `"${f}" is missing or not text; ${example}` };
  }
  const { workflowId, runId, version, service, environment } = o as Record<string, string>;
  if (service !== lane.service || environment !== lane.environment) {
    return { ok: false, problem: `this is the lane of ${lane.service}/${lane.environment}, not ${displayText(service, 40)}/${displayText(environment, 40)}; queue at ${laneWorkflowId(displayText(service, 40), displayText(environment, 40))}` };
  }
  if (!SEMVER.test(version!)) return { ok: false, problem: `"version" ${displayText(version, 40)} is not a semantic version such as 1.4.0` };
  if (workflowId !== releaseWorkflowId(lane.service, version!)) {
    return { ok: false, problem: `workflow ${displayText(workflowId, 80)} is not release ${releaseWorkflowId(lane.service, version!)}; only releases of ${lane.service} queue in this lane` };
  }
  if (runId!.length > 64 || !/^[A-Za-z0-9-]+$/.test(runId!)) return { ok: false, problem: `"runId" ${displayText(runId, 40)} is not a run id` };
  let requestedBy: string | undefined;
  if (o.requestedBy !== undefined) {
    if (typeof o.requestedBy !== 'string') return { ok: false, problem: '"requestedBy" must be text' };
    const n = checkName(o.requestedBy, '"requestedBy"');
    if (!n.ok) return n;
    requestedBy = n.value;
  }
  return { ok: true, value: { workflowId: workflowId, runId: runId!, version: version!, service, environment, ...(requestedBy ? { requestedBy } : {}) } };
}

/** A lane's view for one asker (by run id), or for nobody. */
export function laneView(state: LaneState, runId?: string): LaneView {
  let position: number | undefined;
  if (runId !== undefined) {
    if (state.holder?.runId === runId) position = 0;
    else {
      const i = state.queue.findIndex((e) => e.runId === runId);
      if (i >= 0) position = i + 1;
    }
  }
  return {
    service: state.service,
    environment: state.environment,
    ...(state.holder ? { holder: { ...state.holder } } : {}),
    queue: state.queue.map((e) => ({ ...e })),
    ...(position !== undefined ? { position } : {}),
    recent: state.recent.map((r) => ({ ...r })),
    updatedAt: state.updatedAt,
  };
}

/** True for names a lane can be keyed by. */
export function validLaneKey(service: string, environment: string): boolean {
  return SERVICE_NAME.test(service) && ENVIRONMENT_NAME.test(environment);
}

// ---- what the lane's activities report about a holder ----

/** The release's view of its lanes, as its `status` query carries it. */
export type ReleaseLaneState = { state: 'waiting' | 'held' | 'released'; since: string };

export interface HolderRef {
  workflowId: string;
  runId: string;
  environment: string;
}

export interface HolderCheck {
  attempt: number;
  /** True when the release has left the lane (ended, or its status says it released this environment). */
  left: boolean;
  /** How: released, completed, failed, cancelled, terminated, timed out, not found; or why it is still held. */
  how: string;
}
