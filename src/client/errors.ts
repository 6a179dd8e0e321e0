/**
 * What can go wrong when gantry talks to a release, as named errors. Each message says what happened and what
 * to do next; the CLI maps each class to its exit code (src/cli/exit-codes.ts). No Temporal SDK here (the quick
 * status path loads this module); telling gRPC errors apart is src/client/release.ts's.
 */
/** Bad input on the command line (not the config file): unknown service, version not semver, missing argument. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export class ReleaseNotFoundError extends Error {
  override readonly name = 'ReleaseNotFoundError';
  constructor(readonly workflowId: string, namespace: string) {
    super(
      `No release ${workflowId} in namespace ${namespace}. Check the service and version (\`gantry list\` shows the releases), ` +
        'or the --namespace / TEMPORAL_NAMESPACE you are pointing at.',
    );
  }
}

export class ReleaseExistsError extends Error {
  override readonly name = 'ReleaseExistsError';
  constructor(readonly workflowId: string, label: string, readonly state: string, hint: string) {
    super(`Release ${label} already exists (workflow ${workflowId}: ${state}). ${hint}`);
  }
}

/** The release refused a request (gate not open or closed, approver not allowed, duplicate vote, no decision pending). */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
}

/** The server answers but does not know gantry's search attributes. */
export class SetupRequiredError extends Error {
  override readonly name = 'SetupRequiredError';
}

/** Nothing polled the task queue in time: the request is queued but no worker runs it. */
export class NoWorkerError extends Error {
  override readonly name = 'NoWorkerError';
}

const SA_PROBLEM = /search attribute|no mapping defined/i;

/** True when the server refused a request because a search attribute is not registered in the namespace. */
export function isSearchAttributeProblem(err: unknown): boolean {
  const text = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ''}` : String(err);
  return SA_PROBLEM.test(text) && /Gantry/.test(text);
}

export function setupRequired(namespace: string, address: string, err: unknown): SetupRequiredError {
  const detail = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return new SetupRequiredError(
    `The Temporal server at ${address} does not know gantry's search attributes in namespace ${namespace} (${detail}). ` +
      'Register them once with `gantry setup` (or `bash scripts/provision.sh --register-search-attributes`), then retry.',
  );
}
