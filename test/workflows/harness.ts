/**
 * Shared plumbing for the workflow test files: one server per file, the workflow code bundled once per file,
 * a worker per test on its own task queue (each test brings its own fake activities), unique workflow ids.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as pause } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { workflowBundleOptions } from '../../src/worker';
import { releaseWorkflow } from '../../src/workflows';
import { releaseWorkflowId, SEARCH_ATTRIBUTES, startSearchAttributes, statusQuery, type ReleaseInput, type ReleaseStatus, type StartRequest } from '../../src/shared/release';
import { STEP_NAMES, type StepName } from '../../src/shared/steps';
import { sampleInput, startRequestFor } from '../helpers/fixtures';
import type { FakeActivities } from '../helpers/fake-activities';

export type ReleaseHandle = WorkflowHandle<typeof releaseWorkflow>;

/**
 * Workers log every state change at INFO and every (expected) activity failure at WARN; keep errors only so a
 * failing test's output is readable. Must run before the first server or worker is created in this process.
 */
export function quietRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  } catch {
    // Already installed by an earlier test file in this process: keep that one.
  }
}
quietRuntime();

export function bundleReleaseWorkflow(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ ...workflowBundleOptions(), logger: quietLogger });
}

const noop = (): void => undefined;
/** The bundler logs every module it adds; tests only care about errors, which still throw. */
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

let counter = 0;
/** A version no other test uses, so the derived workflow id is unique too. */
export function uniqueVersion(): string {
  counter += 1;
  return `1.${counter}.0-t${randomUUID().slice(0, 8)}`;
}

/**
 * A release input for tests: the sample config, a unique version, and short retry intervals. The time-skipping
 * server only skips time while a client awaits a result, so backoffs between activity attempts would otherwise
 * cost real seconds while a test waits for the gate; attempt counts and retry policies stay as configured.
 */
export function testInput(overrides: Parameters<typeof sampleInput>[0] = {}): ReleaseInput {
  const input = sampleInput({ version: uniqueVersion(), ...overrides });
  for (const name of STEP_NAMES) input.steps[name].retry.initialInterval = '20ms';
  return input;
}

export interface ReleaseRun {
  handle: ReleaseHandle;
  input: ReleaseInput;
}

/**
 * Start a release on a fresh task queue with a worker running `fake`, run `body`, then stop the worker.
 * Started without search attributes (the workflow then skips upserts) unless `indexed`: then with those
 * `gantry start` gives, which the server must know ({@link registerSearchAttributes}).
 */
export async function withRelease<T>(
  env: TestWorkflowEnvironment,
  bundle: WorkflowBundleWithSourceMap,
  fake: FakeActivities,
  input: ReleaseInput,
  body: (run: ReleaseRun) => Promise<T>,
  /** What the workflow is started with (default: the request `gantry start` sends for `input`). */
  start?: unknown,
  /** Start with gantry's search attributes (register them on the server first). */
  indexed = false,
): Promise<T> {
  const taskQueue = `wf-test-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue,
    workflowBundle: bundle,
    // The worker's resolve step, doubled: it answers with the test's input, as the real one reads it from config.
    activities: { ...fake, resolvePlan: fake.resolvePlan ?? (async () => ({ attempt: 1, input })) },
  });
  let started: ReleaseHandle | undefined;
  try {
    return await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(releaseWorkflow, {
        taskQueue,
        workflowId: releaseWorkflowId(input.service, input.version),
        args: [(start ?? startRequestFor(input)) as StartRequest],
        ...(indexed ? { typedSearchAttributes: startSearchAttributes(input) } : {}),
      });
      started = handle;
      return body({ handle, input });
    });
  } finally {
    // A release the test left running would keep an activity or task pending once this worker is gone, and the
    // time-skipping server skips time only when nothing is pending: end it so later tests in the file can skip.
    if (started) await started.terminate('test finished').catch(() => undefined);
  }
}

/**
 * Register gantry's search attributes on the time-skipping server, once per server. It takes them and describe()
 * reads them back, but it has no ListSearchAttributes (so not ensureSearchAttributes) and cannot list or count
 * workflows by them: visibility queries need a dev server.
 */
export async function registerSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTES.map((k) => [k.name, encodeSearchAttributeIndexedValueType(k.type)!])),
  });
}

/** Poll the status query until `ok` holds (real time: polling does not unlock time skipping). */
export async function waitForStatus(
  handle: ReleaseHandle,
  ok: (s: ReleaseStatus) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<ReleaseStatus> {
  const until = Date.now() + timeoutMs;
  let last: ReleaseStatus | undefined;
  for (;;) {
    last = await handle.query(statusQuery);
    if (ok(last)) return last;
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last status: stage ${last.stage}, ` +
        `gate ${last.gate.state}, outcome ${last.outcome ?? 'none'}, message: ${last.message}`);
    }
    await pause(50);
  }
}

/**
 * The gate is open and, on the governed path, its first freeze check has answered. Acting before that answer
 * (a cancel in particular) races the check's activity: the time-skipping test server then refuses the workflow
 * task that cancels a scheduled, not yet started activity and leaves it started forever (temporalio/sdk-java#3088,
 * temporalio/sdk-typescript#1058). A real server handles that race; test/cli/ covers it on dev servers.
 */
export const gateOpen = (s: ReleaseStatus): boolean => s.gate.state === 'open' && (s.environments === undefined || s.gate.freeze !== undefined);

/** Await the workflow's failure and return its cause (an ApplicationFailure for gantry's end types). */
export async function expectFailure(handle: ReleaseHandle): Promise<ApplicationFailure> {
  const err = await handle.result().then(
    (r) => { throw new Error(`expected the release to fail, it returned outcome ${r.outcome}`); },
    (e: unknown) => e,
  );
  if (!(err instanceof WorkflowFailedError)) throw err;
  if (!(err.cause instanceof ApplicationFailure)) {
    throw new Error(`expected an ApplicationFailure cause, got ${String(err.cause)}`, { cause: err });
  }
  return err.cause;
}

/** Await an update the workflow must refuse; return the reason its validator gave. */
export async function expectUpdateRefused(call: Promise<unknown>): Promise<string> {
  const err = await call.then(
    (r) => { throw new Error(`expected the update to be refused, it was accepted: ${JSON.stringify(r)}`); },
    (e: unknown) => e,
  );
  if (!(err instanceof WorkflowUpdateFailedError)) throw err;
  return err.cause?.message ?? err.message;
}

export function stepOf(s: ReleaseStatus, name: StepName): ReleaseStatus['steps'][number] {
  const step = s.steps.find((x) => x.name === name);
  if (!step) throw new Error(`status has no step ${name}`);
  return step;
}

/** The states of all steps, for one readable assertion. */
export function stepStates(s: ReleaseStatus): Record<string, string> {
  return Object.fromEntries(s.steps.map((x) => [x.name, x.state]));
}

/** A promise the test resolves when it is ready (hand it to the fake's `holdUntil`). */
export function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => { open = resolve; });
  return { promise, open };
}

/** Steps before the gate, as the fake records them. */
export const BEFORE_GATE = ['preflight', 'tag', 'build', 'deploy:staging', 'smoke'];
