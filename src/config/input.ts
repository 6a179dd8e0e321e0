/** Turning a validated config and a requested release into the workflow's immutable input snapshot. */
import * as semver from 'semver';
import { ConfigError } from './load';
import type { GantryConfig } from './schema';
import { resolveStepOptions } from '../shared/steps';
import type { ReleaseInput } from '../shared/release';

export function buildReleaseInput(
  config: GantryConfig,
  req: { service: string; version: string; requestedBy: string; dryRun: boolean; configSource?: string },
): ReleaseInput {
  const svc = config.services[req.service];
  if (!svc) {
    throw new ConfigError(req.configSource ?? 'config', [
      `services: no service "${req.service}"; the config defines ${Object.keys(config.services).join(', ')}`,
    ]);
  }
  const version = req.version.replace(/^v/, '');
  if (semver.valid(version) !== version) {
    throw new ConfigError(req.configSource ?? 'config', [
      `version "${req.version}" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1`,
    ]);
  }
  // structuredClone: the snapshot must not share objects with the caller's config.
  const snapshot = structuredClone(svc);
  return {
    service: req.service,
    version,
    requestedBy: req.requestedBy,
    dryRun: req.dryRun,
    config: snapshot,
    steps: resolveStepOptions(snapshot.steps),
    ...(req.configSource ? { configSource: req.configSource } : {}),
  };
}
