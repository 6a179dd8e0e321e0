/** Turning the validated config and a requested release into the plan a release runs on (ReleaseInput). */
import * as semver from 'semver';
import { ConfigError, type LoadedConfig } from './load';
import { resolveStepOptions } from '../shared/steps';
import type { ReleaseInput } from '../shared/release';
import { expandRefs, ruleApprovers } from '../shared/principals';

/**
 * The plan for one release of one service: its config slice (a copy), the step options, the config's identity,
 * and the public keys of the people who may act on it (all principals when the service names no operators).
 */
export function buildReleaseInput(
  loaded: Pick<LoadedConfig, 'config' | 'source' | 'sha256' | 'keys'>,
  req: { service: string; version: string; requestedBy: string; dryRun: boolean },
): ReleaseInput {
  const svc = loaded.config.services[req.service];
  if (!svc) {
    throw new ConfigError(loaded.source, [
      `services: no service "${req.service}"; the config defines ${Object.keys(loaded.config.services).join(', ')}`,
    ]);
  }
  const version = req.version.replace(/^v/, '');
  if (semver.valid(version) !== version) {
    throw new ConfigError(loaded.source, [
      `version "${req.version}" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1`,
    ]);
  }
  // structuredClone: the snapshot must not share objects with the caller's config.
  const snapshot = structuredClone(svc);
  const groups = loaded.config.groups ?? {};
  // Everyone the service's rules name: approvers, operators, the groups its gates, hotfix and break-glass draw on.
  const people = new Set([
    ...expandRefs(svc.approvals.approvers, groups), ...svc.operators,
    ...Object.values(svc.environments).flatMap((e) => (e.gate ? ruleApprovers(e.gate, groups, svc.approvals.approvers) : [])),
    ...(svc.hotfix ? ruleApprovers(svc.hotfix.gate, groups, svc.approvals.approvers) : []),
    ...(svc.breakGlass ? groups[svc.breakGlass.group] ?? [] : []),
  ]);
  const keys = svc.operators.length === 0 ? loaded.keys : loaded.keys.filter((k) => people.has(k.principal));
  // Only the groups the service's rules use go into the plan.
  const used = new Set<string>([
    ...[svc.approvals.approvers, ...Object.values(svc.environments).map((e) => e.gate?.approvers ?? []), svc.hotfix?.gate.approvers ?? []]
      .flat().filter((r) => r.startsWith('@')).map((r) => r.slice(1)),
    ...Object.values(svc.environments).flatMap((e) => Object.keys(e.gate?.from ?? {})),
    ...Object.keys(svc.hotfix?.gate.from ?? {}),
    ...(svc.breakGlass ? [svc.breakGlass.group] : []),
  ]);
  return {
    service: req.service,
    version,
    requestedBy: req.requestedBy,
    dryRun: req.dryRun,
    config: snapshot,
    steps: resolveStepOptions(snapshot.steps),
    configSource: loaded.source,
    configSha256: loaded.sha256,
    keys: structuredClone(keys),
    ...(used.size > 0 ? { groups: Object.fromEntries([...used].filter((g) => g in groups).map((g) => [g, [...groups[g]!]])) } : {}),
  };
}
