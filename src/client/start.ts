/**
 * Starting a release: the request alone (service, version, requester, the signed start statement), its
 * search attributes (so the release is findable and the workflow keeps them current), and the words the Web UI
 * shows for it. The worker owns the config and resolves the plan; an operator's local config file only serves
 * `--dry-run` and the check that it matches what the worker resolved.
 */
import { existsSync } from 'node:fs';
import { WorkflowIdReusePolicy, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  releaseWorkflowId,
  SERVICE_NAME,
  startSearchAttributes,
  statusQuery,
  TASK_QUEUE,
  WORKFLOW_TYPE,
  type ReleaseInput,
  type ReleaseStatus,
  type StartRequest,
} from '../shared/release';
import type { releaseWorkflow } from '../workflows/release';
import { buildReleaseInput } from '../config/input';
import { ConfigError, loadConfig, type LoadedConfig } from '../config/load';
import { isReleasableVersion } from '../config/schema';
import type { GantryClient } from './context';
import { isSearchAttributeProblem, ReleaseExistsError, setupRequired, UsageError } from './errors';
import { describeRelease, describeState, indexedFields, isUnavailable, normalizeVersion } from './release';
import { ServerUnreachableError } from '../connection';
import { startStatement, type SigningOptions } from './decisions';

export interface ReleaseRequest {
  service: string;
  version: string;
  requestedBy: string;
}

/** Check what the operator typed: a service name, a semver version, a name. */
export function checkRequest(req: ReleaseRequest): ReleaseRequest {
  if (!SERVICE_NAME.test(req.service)) {
    throw new UsageError(`"${req.service}" is not a service name (lowercase letters, digits and dashes, as in the worker's config).`);
  }
  const version = normalizeVersion(req.version);
  if (!isReleasableVersion(version)) {
    throw new UsageError(`Version "${req.version}" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1.`);
  }
  const requestedBy = req.requestedBy.normalize('NFC').trim();
  if (!requestedBy) throw new UsageError('--requested-by is empty; give your name (it defaults to $USER).');
  return { service: req.service, version, requestedBy };
}

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

/** The start request the workflow receives: nothing but the request, signed when a key is at hand. */
export async function buildStartRequest(req: ReleaseRequest, opts: { signing: SigningOptions; requireSignature: boolean; local?: LoadedConfig; hotfix?: { reason: string } }): Promise<StartRequest> {
  const signed = await startStatement(req.service, req.version, req.requestedBy, {
    ...opts.signing, required: opts.requireSignature, ...(opts.hotfix ? { hotfix: opts.hotfix } : {}),
  });
  return {
    service: req.service,
    version: req.version,
    requestedBy: req.requestedBy,
    ...(signed ? { signed } : {}),
    ...(opts.local ? { localConfigSha256: opts.local.sha256 } : {}),
    ...(opts.hotfix ? { hotfix: opts.hotfix } : {}),
  };
}

export function releaseSummary(req: ReleaseRequest): string {
  return `Release ${req.service} ${req.version} requested by ${req.requestedBy}`;
}

/**
 * Start the release. The id is derived from service and version; a release that ended unsuccessfully can be
 * started again, a running or completed one cannot (ALLOW_DUPLICATE_FAILED_ONLY).
 */
export async function startRelease(gc: GantryClient, request: StartRequest, taskQueue = TASK_QUEUE): Promise<WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>> {
  const workflowId = releaseWorkflowId(request.service, request.version);
  try {
    return await gc.client.workflow.start<typeof releaseWorkflow>(WORKFLOW_TYPE, {
      taskQueue,
      workflowId,
      args: [request],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      // The workflow upserts its stage only when these were given at start (src/workflows/run.ts).
      typedSearchAttributes: startSearchAttributes(request),
      staticSummary: releaseSummary(request),
      staticDetails: `**${releaseSummary(request)}**${request.signed ? ' (signed)' : ''}.\n\n` +
        'The worker resolves the plan from its own release config; the resolve step\'s result in the history is the plan this release runs on.',
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw await alreadyExists(gc, workflowId, request);
    if (isSearchAttributeProblem(err)) throw setupRequired(gc.namespace, gc.settings.address, err);
    if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
    throw err;
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
