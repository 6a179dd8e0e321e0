/**
 * How a release is named on the server: its workflow id and the names of its search attributes. A module of its
 * own, with no imports, so that `gantry status`'s quick path (src/cli/quick-status.ts) can address a release
 * without loading the Temporal SDK. Imported by workflow code too: deterministic, no Node builtins, no I/O.
 */

/** The task queue every gantry worker polls, and the release workflow's type. */
export const TASK_QUEUE = 'gantry-releases';
export const WORKFLOW_TYPE = 'releaseWorkflow';

/** The service names the config allows (also checked again on the worker). */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** One release per service and version: the id is derived, so a second start of the same release is refused. */
export function releaseWorkflowId(service: string, version: string): string {
  return `release-${service}-${version}`;
}

/** The search attributes gantry indexes releases by (all Keyword), by what they hold. */
export const SA_NAMES = {
  service: 'GantryService',
  version: 'GantryVersion',
  stage: 'GantryStage',
  outcome: 'GantryOutcome',
  environment: 'GantryEnvironment',
} as const;

/** The search attributes a release starts with, in this order; the workflow keeps them current from there. */
export function startKeywords(release: { service: string; version: string }): { service: string; version: string; stage: string; environment: string } {
  return { service: release.service, version: release.version, stage: 'planning', environment: 'none' };
}
