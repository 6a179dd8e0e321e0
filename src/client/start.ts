/**
 * Starting a release through the SDK, and what follows the start: waiting for the worker to resolve the plan, and
 * the operator's local config file, which only serves `--dry-run` and the check that it matches what the worker
 * resolved. The request itself and the whole start call (search attributes, the Web UI's words) are built without
 * the SDK in ./start-request, so that `gantry start` can send it before loading this module. The worker owns the
 * config and resolves the plan.
 */
import { existsSync } from 'node:fs';
import { WorkflowIdReusePolicy } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSearchAttributes, statusQuery, type ReleaseInput, type ReleaseStatus, type StartRequest } from '../shared/release';
import type { releaseWorkflow } from '../workflows/release';
import { buildReleaseInput } from '../config/input';
import { ConfigError, loadConfig, type LoadedConfig } from '../config/load';
import type { GantryClient } from './context';
import { isSearchAttributeProblem, ReleaseExistsError, setupRequired, UsageError } from './errors';
import type { StartCall } from './http-api';
import { describeRelease, describeState, indexedFields, isUnavailable } from './release';
import { startCall, type ReleaseRequest } from './start-request';
import { ServerUnreachableError } from '../connection';

/** The operator's local config, when there is one (for --dry-run, and to compare with the worker's). */
export function localConfig(file: string | undefined, required: boolean): LoadedConfig | undefined {
  if (!file || (!required && !existsSync(file))) {
    if (required) throw new UsageError('--dry-run plans from a local config file: pass --config <file> (or set GANTRY_CONFIG).');
    return undefined;
  }
  return loadConfig(file);
}

/** The operator's local copy of the config, as far as a start compares it with the worker's. */
export interface LocalCopy {
  file: string;
  /** The copy, when it could be read and is valid. */
  loaded?: LoadedConfig;
  /** Why it cannot be compared (not found, invalid). */
  problem?: string;
}

/**
 * The local copy a start compares with the worker's config: `file` (from --config or GANTRY_CONFIG, `explicit`)
 * or ./gantry.yaml when it exists. The start sends only the request, so a copy that is missing or invalid never
 * stops it; it is reported and not compared. Undefined when there is no copy to speak of.
 */
export function localCopy(file: string, explicit: boolean): LocalCopy | undefined {
  if (!existsSync(file)) return explicit ? { file, problem: 'was not found' } : undefined;
  try {
    return { file, loaded: loadConfig(file) };
  } catch (err) {
    if (err instanceof ConfigError) return { file, problem: `is invalid (${err.problems.join('; ')})` };
    throw err;
  }
}

/** The plan from a local config, as the worker would resolve it from the same file. */
export function localPlanInput(loaded: LoadedConfig, req: ReleaseRequest): ReleaseInput {
  if (!loaded.config.services[req.service]) {
    throw new UsageError(
      `${loaded.source} defines no service "${req.service}"; it defines ${Object.keys(loaded.config.services).join(', ')}. ` +
        'Check the spelling, or pass another file with --config.',
    );
  }
  return buildReleaseInput(loaded, { ...req, dryRun: true });
}

/** A started release: its id and the run this start began. */
export interface StartedRelease {
  workflowId: string;
  runId: string;
}

/**
 * Start the release through the SDK. The id is derived from service and version; a release that ended
 * unsuccessfully can be started again, a running or completed one cannot (ALLOW_DUPLICATE_FAILED_ONLY). A run that
 * `call`'s own request id started (an earlier attempt over the HTTP API whose answer was lost) counts as started.
 */
export async function startRelease(gc: GantryClient, request: StartRequest, call: StartCall = startCall(request)): Promise<StartedRelease> {
  const { workflowId } = call;
  try {
    const handle = await gc.client.workflow.start<typeof releaseWorkflow>(call.workflowType, {
      taskQueue: call.taskQueue,
      workflowId,
      args: [request],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      // The workflow upserts its stage only when these were given at start (src/workflows/run.ts).
      typedSearchAttributes: startSearchAttributes(request),
      staticSummary: call.summary,
      staticDetails: call.details,
    });
    return { workflowId, runId: handle.firstExecutionRunId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      const ours = await startedBy(gc, workflowId, call.requestId);
      if (ours) return { workflowId, runId: ours };
      throw await alreadyExists(gc, workflowId, request);
    }
    if (isSearchAttributeProblem(err)) throw setupRequired(gc.namespace, gc.settings.address, err);
    if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
    throw err;
  }
}

/** The run of `workflowId` that the start with `requestId` began, if the server says one did. */
async function startedBy(gc: GantryClient, workflowId: string, requestId: string): Promise<string | undefined> {
  try {
    const d = await gc.client.workflow.getHandle(workflowId).describe();
    return d.raw.workflowExtendedInfo?.requestIdInfos?.[requestId] ? d.runId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Wait (briefly) until the worker resolved the plan, or the release ended at that step (unknown service, invalid
 * config, refused start). Undefined when no worker answered in time.
 */
export async function awaitResolved(gc: GantryClient, workflowId: string, runId: string, timeoutMs = 15_000): Promise<ReleaseStatus | undefined> {
  const handle = gc.client.workflow.getHandle(workflowId, runId);
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const s = await gc.connection.withDeadline(Math.min(until, Date.now() + 5000), () => handle.query(statusQuery));
      if (s.input || s.outcome) return s;
    } catch {
      // No worker yet, or the query raced the first workflow task: try again until the deadline.
    }
    await sleep(200);
  }
  return undefined;
}

async function alreadyExists(gc: GantryClient, workflowId: string, req: ReleaseRequest): Promise<ReleaseExistsError> {
  const ref = `${req.service} ${req.version}`;
  try {
    const d = await describeRelease(gc, workflowId);
    const state = describeState(d);
    const outcome = indexedFields(d).outcome;
    // Only running and succeeded releases block a new start (ALLOW_DUPLICATE_FAILED_ONLY).
    const hint = d.status.name === 'RUNNING'
      ? `Follow it with \`gantry status ${ref}\`; to start over, cancel it with \`gantry cancel ${ref}\` and start again.`
      : `It ${outcome === 'succeeded' ? 'succeeded' : 'completed'} and cannot run again under the same version; release a new version.`;
    return new ReleaseExistsError(workflowId, ref, state, hint);
  } catch {
    return new ReleaseExistsError(workflowId, ref, 'state unknown', `See it with \`gantry status ${ref}\`.`);
  }
}
