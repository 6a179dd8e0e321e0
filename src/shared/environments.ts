/**
 * The environments a release goes through, in the order the service's config lists them, e.g.
 * staging → qa → production. The last is production: gated (by its own `gate:` or the service's `approvals`),
 * deployed, health-checked and rolled back when its health fails. The ones before it are deployed and
 * smoke-checked, each behind a gate only when its config gives one. Pure: the workflow and the plan read it.
 */
import type { EnvironmentConfig } from '../config/schema';
import type { StepId } from './steps';

export interface EnvironmentStep {
  name: string;
  config: EnvironmentConfig;
  /** The last environment: production. */
  final: boolean;
  /** Protected by a gate (always for the last). */
  gated: boolean;
  /** Its deploy and check step ids. */
  deploy: StepId;
  check: StepId;
}

export function environmentsOf(config: { environments: Record<string, EnvironmentConfig> }): EnvironmentStep[] {
  const names = Object.keys(config.environments);
  return names.map((name, i) => {
    const final = i === names.length - 1;
    const env = config.environments[name]!;
    const deploy: StepId = final ? 'deployProduction' : i === 0 ? 'deployStaging' : `deploy:${name}`;
    const check: StepId = final ? 'health' : i === 0 ? 'smoke' : `smoke:${name}`;
    return { name, config: env, final, gated: final || env.gate !== undefined, deploy, check };
  });
}

/** The names of the environments a gate protects: the only places a release checks deny windows and freezes. */
export function gatedEnvironments(config: { environments: Record<string, EnvironmentConfig> }): string[] {
  return environmentsOf(config).filter((e) => e.gated).map((e) => e.name);
}
