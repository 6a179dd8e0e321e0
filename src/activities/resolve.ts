/**
 * Resolve: the release's first step. The worker reads its own release config (again, for every release, so an
 * edited config applies to the next release without a restart), validates it, and returns the plan the release
 * runs on: the service's config, step options, the config's sha256 and the public keys of the people it names.
 * The workflow input never says what to run or where to send a secret; this step does, from the worker's file.
 */
import { ConfigError, loadConfig, type LoadedConfig } from '../config/load';
import { buildReleaseInput } from '../config/input';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import { releaseWorkflowId, SEMVER, SERVICE_NAME } from '../shared/release';
import { currentAttempt, heartbeating } from './heartbeat';
import type { ResolveRequest, ResolveResult } from './types';

/** Where the worker's release config lives; `load()` reads and validates it anew on every call. */
export interface ConfigSource {
  /** The file or directory, for messages. */
  readonly path: string;
  load(): LoadedConfig;
}

export function fileConfigSource(file: string): ConfigSource {
  return { path: file, load: () => loadConfig(file) };
}

export function createResolve(deps: { config: ConfigSource }) {
  return {
    resolvePlan: heartbeating(async (req: ResolveRequest): Promise<ResolveResult> => {
      // Names are checked again here: the workflow checked them, but the worker trusts only itself.
      if (!SERVICE_NAME.test(req.service)) throw nonRetryable(GantryErrorType.ConfigInvalid, `"${req.service.slice(0, 64)}" is not a service name.`);
      if (!SEMVER.test(req.version)) throw nonRetryable(GantryErrorType.ConfigInvalid, `"${req.version.slice(0, 64)}" is not a semantic version.`);
      if (req.workflowId !== releaseWorkflowId(req.service, req.version)) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `Workflow id ${req.workflowId.slice(0, 100)} does not belong to ${req.service} ${req.version}.`);
      }
      let loaded: LoadedConfig;
      try {
        loaded = deps.config.load();
      } catch (err) {
        if (err instanceof ConfigError) {
          throw nonRetryable(GantryErrorType.ConfigInvalid,
            `The worker's release config is invalid now, so the plan cannot be resolved. ${err.message}\n` +
            `Fix ${deps.config.path} on the worker (every worker must have the same file), then start the release again.`);
        }
        throw err;
      }
      const svc = loaded.config.services[req.service];
      if (!svc) {
        const known = Object.keys(loaded.config.services).sort();
        throw nonRetryable(GantryErrorType.ConfigInvalid,
          `The worker's config (${loaded.source}) defines no service "${req.service}"; it knows ${known.join(', ')}. ` +
          'Check the name, or add the service to the worker\'s config and start the release again.');
      }
      const input = buildReleaseInput(loaded, {
        service: req.service, version: req.version, requestedBy: req.requestedBy, dryRun: req.dryRun,
      });
      return { attempt: currentAttempt(), input };
    }),
  };
}
