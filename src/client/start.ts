/**
 * Starting a release: the workflow input snapshot, its search attributes (so the release is findable and the
 * workflow keeps them current), and the words the Web UI shows for it.
 */
import { WorkflowIdReusePolicy, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { planRelease } from '../shared/plan';
import {
  startSearchAttributes,
  TASK_QUEUE,
  WORKFLOW_TYPE,
  type ReleaseInput,
} from '../shared/release';
import type { releaseWorkflow } from '../workflows/release';
import { buildReleaseInput } from '../config/input';
import { loadConfig } from '../config/load';
import { isReleasableVersion } from '../config/schema';
import type { GantryClient } from './context';
import { isSearchAttributeProblem, ReleaseExistsError, setupRequired, UsageError } from './errors';
import { planMarkdown } from './format';
import { describeRelease, describeState, indexedFields, isUnavailable, normalizeVersion } from './release';
import { ServerUnreachableError } from '../connection';

export interface ReleaseRequest {
  configFile: string;
  service: string;
  version: string;
  requestedBy: string;
  dryRun: boolean;
}

/**
 * Read and validate the config, then build the workflow's input snapshot. A problem in the file is a
 * ConfigError (exit 3); a service the file does not define or a version that is not semver is bad input.
 */
export function prepareRelease(req: ReleaseRequest): ReleaseInput {
  const { config, source } = loadConfig(req.configFile);
  if (!config.services[req.service]) {
    throw new UsageError(
      `${req.configFile} defines no service "${req.service}"; it defines ${Object.keys(config.services).join(', ')}. ` +
        'Check the spelling, or pass another file with --config.',
    );
  }
  const version = normalizeVersion(req.version);
  if (!isReleasableVersion(version)) {
    throw new UsageError(`Version "${req.version}" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1.`);
  }
  if (!req.requestedBy.trim()) throw new UsageError('--requested-by is empty; give your name (it defaults to $USER).');
  return buildReleaseInput(config, { service: req.service, version, requestedBy: req.requestedBy.trim(), dryRun: req.dryRun, configSource: source });
}

export function releaseSummary(input: ReleaseInput): string {
  return `Release ${input.service} ${input.version} requested by ${input.requestedBy}`;
}

/**
 * Start the release. The id is derived from service and version; a release that ended unsuccessfully can be
 * started again, a running or completed one cannot (ALLOW_DUPLICATE_FAILED_ONLY).
 */
export async function startRelease(gc: GantryClient, input: ReleaseInput, taskQueue = TASK_QUEUE): Promise<WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>> {
  const plan = planRelease(input);
  try {
    return await gc.client.workflow.start<typeof releaseWorkflow>(WORKFLOW_TYPE, {
      taskQueue,
      workflowId: plan.workflowId,
      args: [input],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      // The workflow upserts its stage only when these were given at start (src/workflows/release.ts).
      typedSearchAttributes: startSearchAttributes(input),
      staticSummary: releaseSummary(input),
      staticDetails: planMarkdown(plan, input),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw await alreadyExists(gc, plan.workflowId, input);
    if (isSearchAttributeProblem(err)) throw setupRequired(gc.namespace, gc.settings.address, err);
    if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
    throw err;
  }
}

async function alreadyExists(gc: GantryClient, workflowId: string, input: ReleaseInput): Promise<ReleaseExistsError> {
  const ref = `${input.service} ${input.version}`;
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
