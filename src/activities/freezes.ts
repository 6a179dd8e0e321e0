/**
 * Freezes on the worker. `authorizeFreeze` reads the worker's config for the freeze registry: who may freeze a
 * scope and their keys (the registry verifies the statement itself). `checkFreeze` is what a release asks
 * before it changes an environment: the registry's freezes that cover it, and the config's deny windows open
 * at the time the release gives (workflow time, so time-skipping tests work).
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ConfigError, type LoadedConfig } from '../config/load';
import { expandRefs } from '../shared/principals';
import { gatedEnvironments } from '../shared/environments';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import {
  describeScope,
  FREEZE_REGISTRY_ID,
  freezeCovers,
  freezesQuery,
  type Freeze,
  type FreezeAuthority,
  type FreezeKind,
  type FreezeScope,
} from '../shared/freezes';
import { windowsAt, type DenyWindowSpec } from '../shared/windows';
import { currentAttempt } from './heartbeat';
import type { ConfigSource } from './resolve';
import type { GateFreeze } from '../shared/release';

/**
 * A reason a release may not change an environment now: a person's freeze (id `frz-3`, who, since, until) or a
 * deny window (its name); `scope` says what it covers in words. The shape the gate shows (GateFreeze).
 */
export type ActiveFreeze = GateFreeze;

export interface CheckFreezeRequest {
  service: string;
  environment: string;
  /** The time to judge at: workflow time. */
  nowMs: number;
}

export interface CheckFreezeResult {
  attempt: number;
  frozen: boolean;
  freezes: ActiveFreeze[];
  /** When every one of them has ended; absent while a freeze without an end is among them. */
  until?: string;
}

export interface FreezeActivities {
  authorizeFreeze(req: FreezeScope & { kind: FreezeKind }): Promise<FreezeAuthority & { attempt: number }>;
  checkFreeze(req: CheckFreezeRequest): Promise<CheckFreezeResult>;
}

export interface FreezeActivityDeps {
  config: ConfigSource;
  /** The client to reach the registry with; default the activity's own (Context.current().client). */
  client?: () => Client;
}

/** The deny windows that apply to a service: the config's top-level ones and its own. */
export function denyWindowsOf(config: LoadedConfig['config'], service: string): DenyWindowSpec[] {
  const c = config as { denyWindows?: DenyWindowSpec[]; services: Record<string, { denyWindows?: DenyWindowSpec[] }> };
  return [...(c.denyWindows ?? []), ...(c.services[service]?.denyWindows ?? [])];
}

/** The deny windows open for a service and environment at `nowMs`, as ActiveFreeze entries. */
export function openWindows(config: LoadedConfig['config'], service: string, environment: string, nowMs: number): ActiveFreeze[] {
  return windowsAt(denyWindowsOf(config, service), nowMs, environment).active.map((w) => ({
    kind: 'window', id: w.name, scope: `window ${w.name}`, reason: w.reason ?? `deny window ${w.name}`, since: w.start, until: w.end,
  }));
}

export function manualFreezeView(f: Freeze): ActiveFreeze {
  return {
    kind: 'manual', id: f.id, scope: describeScope(f), by: f.by.principal, reason: f.reason, since: f.since, ...(f.until ? { until: f.until } : {}),
  };
}

/**
 * Who may freeze a scope, by the worker's config. A freeze of an environment no gate guards would hold nothing,
 * so it is refused; an unfreeze there is not (it may lift a freeze made before the rule).
 */
export function freezeAuthority(loaded: LoadedConfig, scope: FreezeScope, kind: FreezeKind = 'freeze'): FreezeAuthority {
  const config = loaded.config as LoadedConfig['config'] & { groups?: Record<string, string[]>; freezers?: string[] };
  const groups = config.groups ?? {};
  const global = expandRefs(config.freezers ?? [], groups);
  const base = { keys: loaded.keys };
  const services = Object.keys(config.services).sort();
  if (scope.service === '*') {
    const identity = services.every((s) => config.services[s]!.approvals.identity === 'declared') ? 'declared' : 'signed';
    const known = new Set(services.flatMap((s) => Object.keys(config.services[s]!.environments ?? {})));
    if (scope.environment && !known.has(scope.environment)) {
      return { ...base, identity, freezers: global, problem: `no service of the worker's config has an environment ${scope.environment} (they have ${[...known].sort().join(', ')})` };
    }
    const env = scope.environment;
    if (kind === 'freeze' && env && !services.some((s) => gatedEnvironments(config.services[s]!).includes(env))) {
      return {
        ...base, identity, freezers: global,
        problem: `no service has an approval gate at ${env}, so a freeze there would hold nothing (releases check freezes at their gates); ` +
          `freeze every service's gated environments with \`gantry freeze --all\` (no --env), or give ${env} a gate in the worker's config`,
      };
    }
    return { ...base, identity, freezers: global };
  }
  const svc = config.services[scope.service];
  if (!svc) {
    return { ...base, identity: 'signed', freezers: [], problem: `the worker's config has no service ${scope.service}; it knows ${services.join(', ')}` };
  }
  const envs = Object.keys(svc.environments ?? {});
  if (scope.environment && !envs.includes(scope.environment)) {
    return { ...base, identity: svc.approvals.identity, freezers: [], problem: `${scope.service} has no environment ${scope.environment} (it has ${envs.join(', ')})` };
  }
  const gated = gatedEnvironments(svc);
  if (kind === 'freeze' && scope.environment && !gated.includes(scope.environment)) {
    const env = scope.environment;
    return {
      ...base, identity: svc.approvals.identity, freezers: [],
      problem: `${env} has no approval gate, so a freeze there would hold nothing (releases check freezes at their gates); freeze ${gated.join(' or ')} ` +
        `(\`gantry freeze ${scope.service} --env ${gated[gated.length - 1]}\`), or give ${env} a gate in the worker's config (services.${scope.service}.environments.${env}.gate)`,
    };
  }
  const own = svc.freezers !== undefined ? expandRefs(svc.freezers, groups) : svc.operators.length > 0 ? [...svc.operators] : undefined;
  return { ...base, identity: svc.approvals.identity, freezers: own === undefined ? 'anyone' : [...new Set([...own, ...global])] };
}

export function createFreezeActivities(deps: FreezeActivityDeps): FreezeActivities {
  const clientOf = deps.client ?? (() => Context.current().client);
  const load = (): LoadedConfig => {
    try {
      return deps.config.load();
    } catch (err) {
      if (err instanceof ConfigError) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `The worker's release config is invalid now, so freezes cannot be checked. ${err.message}\n` +
          `Fix ${deps.config.path} on the worker (every worker must have the same file).`);
      }
      throw err;
    }
  };

  async function manualFreezes(): Promise<Freeze[]> {
    const client = clientOf();
    const handle = client.workflow.getHandle(FREEZE_REGISTRY_ID);
    try {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') return [];
      return (await client.connection.withDeadline(Date.now() + 10_000, () => handle.query(freezesQuery))).active;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return [];
      // Not knowing is not "no freeze": retry until the registry answers.
      throw retryable(`The freeze registry (${FREEZE_REGISTRY_ID}) did not answer (${err instanceof Error ? err.message : String(err)}); retrying.`);
    }
  }

  return {
    async authorizeFreeze(req) {
      return { ...freezeAuthority(load(), { service: req.service, ...(req.environment ? { environment: req.environment } : {}) }, req.kind), attempt: currentAttempt() };
    },

    async checkFreeze(req) {
      const loaded = load();
      const manual = (await manualFreezes()).filter((f) => (f.until === undefined || Date.parse(f.until) > req.nowMs) && freezeCovers(f, req.service, req.environment));
      const freezes = [...manual.map(manualFreezeView), ...openWindows(loaded.config, req.service, req.environment, req.nowMs)];
      const ends = freezes.map((f) => f.until);
      const until = freezes.length > 0 && ends.every((e) => e !== undefined) ? ends.reduce((a, b) => (Date.parse(b) > Date.parse(a) ? b : a)) : undefined;
      return { attempt: currentAttempt(), frozen: freezes.length > 0, freezes, ...(until ? { until } : {}) };
    },
  };
}
