/**
 * How a release is named on the server: its workflow id and the names of its search attributes. A module of its
 * own, with no imports, so that `gantry status`'s quick path (src/cli/quick-status.ts) can address a release
 * without loading the Temporal SDK. Imported by workflow code too: deterministic, no Node builtins, no I/O.
 */

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
