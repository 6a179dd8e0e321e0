/**
 * The runbook's steps, in order, with what each one does in words (shown in status, history and the Web UI)
 * and its default timeouts and retry policy. Config can override any of these per step (`steps:` in YAML).
 */
import type { StepOverride } from '../config/schema';
import type { Duration } from './duration';
import type { Stage } from './release';

export type { Duration };

export const STEP_NAMES = [
  'resolve',
  'preflight',
  'tag',
  'build',
  'deployStaging',
  'smoke',
  'deployProduction',
  'health',
  'rollback',
  'announce',
] as const;
export type StepName = (typeof STEP_NAMES)[number];

/**
 * A step of one release: a runbook step, or, for an environment between the first and the last (qa in
 * staging → qa → production), its deploy and smoke steps as `deploy:qa` and `smoke:qa`. The first environment
 * runs as deployStaging/smoke and the last as deployProduction/health/rollback, whatever their names.
 */
export type StepId = StepName | `deploy:${string}` | `smoke:${string}`;

/** The runbook step a step id runs as (its activity, options and retry policy). */
export function stepKind(id: StepId): StepName {
  if (id.startsWith('deploy:')) return 'deployStaging';
  if (id.startsWith('smoke:')) return 'smoke';
  return id as StepName;
}

/** The step's title, naming its environment when the config's names differ from staging/production. */
export function stepTitle(id: StepId, environment?: string): string {
  const kind = stepKind(id);
  if (!environment) return STEP_TITLES[kind];
  switch (kind) {
    case 'deployStaging': case 'deployProduction': return `Deploy to ${environment}`;
    case 'smoke': return `Smoke-check ${environment}`;
    case 'health': return `Health-check ${environment}`;
    case 'rollback': return `Roll ${environment} back`;
    default: return STEP_TITLES[kind];
  }
}

export const STEP_TITLES: Record<StepName, string> = {
  resolve: 'Resolve the plan on the worker',
  preflight: 'Preflight checks',
  tag: 'Tag the release commit',
  build: 'Build and push the image',
  deployStaging: 'Deploy to staging',
  smoke: 'Smoke-check staging',
  deployProduction: 'Deploy to production',
  health: 'Health-check production',
  rollback: 'Roll production back',
  announce: 'Announce the release',
};

/** Resolved activity options for one step: what the workflow passes to Temporal. */
export interface StepOptions {
  startToCloseTimeout: Duration;
  heartbeatTimeout?: Duration;
  retry: {
    maximumAttempts: number;
    initialInterval: Duration;
    backoffCoefficient: number;
    maximumInterval: Duration;
  };
}

const retry = (maximumAttempts: number, initialInterval: Duration, maximumInterval: Duration = '1m') => ({
  maximumAttempts,
  initialInterval,
  backoffCoefficient: 2,
  maximumInterval,
});

/**
 * Defaults. Every step but announce (whose per-channel activities set their own) heartbeats at least every 2 s
 * (src/activities/heartbeat.ts: also inside a silent wait: a clone, a pull, a remote script, an HTTP request, a
 * GitHub Actions run), with a 10 s heartbeat timeout and a 1 s first retry. So a step on a SIGKILLed worker is
 * noticed within 10 s of its last heartbeat and its next attempt starts on another worker about a second later:
 * within 15 s of the kill (test/e2e/crash-matrix.test.ts measures it per step). The heartbeat timeout measures
 * whether the worker is alive, not how long the work takes; that is the start-to-close timeout's job.
 *
 * Build retries up to 10 times (1 s doubling to 15 s apart): a registry or engine that does not answer for about
 * a minute and a half is ridden out, and a retry reuses what an earlier attempt pushed. Deploys retry 5 times
 * (about 15 s): a host whose sshd or engine restarts is waited for. Announce retries 7 times from 1 s (about a
 * minute): a chat service that answers 500 for a while is waited for.
 */
const ALIVE = '10s';

export const DEFAULT_STEP_OPTIONS: Record<StepName, StepOptions> = {
  // Reads the worker's config: quick, and a bad config is not fixed by retrying (non-retryable ConfigInvalid).
  resolve: { startToCloseTimeout: '1m', heartbeatTimeout: ALIVE, retry: retry(3, '1s', '10s') },
  preflight: { startToCloseTimeout: '10m', heartbeatTimeout: ALIVE, retry: retry(3, '1s') },
  tag: { startToCloseTimeout: '2m', heartbeatTimeout: ALIVE, retry: retry(5, '1s') },
  build: { startToCloseTimeout: '45m', heartbeatTimeout: ALIVE, retry: retry(10, '1s', '15s') },
  deployStaging: { startToCloseTimeout: '15m', heartbeatTimeout: ALIVE, retry: retry(5, '1s') },
  smoke: { startToCloseTimeout: '10m', heartbeatTimeout: ALIVE, retry: retry(2, '1s') },
  deployProduction: { startToCloseTimeout: '30m', heartbeatTimeout: ALIVE, retry: retry(5, '1s') },
  health: { startToCloseTimeout: '10m', heartbeatTimeout: ALIVE, retry: retry(2, '1s') },
  rollback: { startToCloseTimeout: '30m', heartbeatTimeout: ALIVE, retry: retry(5, '1s') },
  announce: { startToCloseTimeout: '5m', retry: retry(7, '1s', '2m') },
};

/** Merge config overrides onto the defaults; the result goes into the workflow input snapshot. */
export function resolveStepOptions(overrides: Partial<Record<StepName, StepOverride | undefined>> = {}): Record<StepName, StepOptions> {
  const out = {} as Record<StepName, StepOptions>;
  for (const name of STEP_NAMES) {
    const d = DEFAULT_STEP_OPTIONS[name];
    const o = overrides[name] ?? {};
    out[name] = {
      startToCloseTimeout: (o.startToCloseTimeout) ?? d.startToCloseTimeout,
      ...(o.heartbeatTimeout !== undefined || d.heartbeatTimeout !== undefined
        ? { heartbeatTimeout: (o.heartbeatTimeout) ?? d.heartbeatTimeout }
        : {}),
      retry: {
        maximumAttempts: o.retry?.maximumAttempts ?? d.retry.maximumAttempts,
        initialInterval: (o.retry?.initialInterval) ?? d.retry.initialInterval,
        backoffCoefficient: o.retry?.backoffCoefficient ?? d.retry.backoffCoefficient,
        maximumInterval: (o.retry?.maximumInterval) ?? d.retry.maximumInterval,
      },
    };
  }
  return out;
}

/** The searchable stage a step runs in. */
export function stageOf(id: StepId): Stage {
  const step = stepKind(id);
  const stages: Record<StepName, Stage> = {
    resolve: 'planning', preflight: 'preflight', tag: 'tag', build: 'build', deployStaging: 'deploy-staging', smoke: 'smoke',
    deployProduction: 'deploy-production', health: 'health', rollback: 'rollback', announce: 'announce',
  };
  return stages[step];
}
