/**
 * What a release may be started with: the start request alone (service, version, requester, signature). A
 * start that carries a config, unknown fields, a bad service or version, or that does not match its workflow
 * id ends the release failed with the reason before any step runs, not even the worker's resolve step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ReleaseEndType } from '../../src/shared/errors';
import { releaseWorkflowId, statusQuery, type ReleaseInput, type ReleaseStatus } from '../../src/shared/release';
import { fakeActivities, type FakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { bundleReleaseWorkflow, expectFailure, testInput, uniqueVersion, withRelease } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

/** Step doubles whose resolve step is recorded too, so "no activity ran" includes it. */
function recordingFake(input: ReleaseInput): FakeActivities {
  const fake = fakeActivities();
  fake.resolvePlan = async () => {
    fake.calls.push('resolvePlan');
    return { attempt: 1, input };
  };
  return fake;
}

/** Start the release with `start`, expect it refused with `problem`, and check that nothing ran. */
async function expectStartRefused(start: unknown, problem: string, input: ReleaseInput = testInput()): Promise<ReleaseStatus> {
  const fake = recordingFake(input);
  return withRelease(env, bundle, fake, input, async ({ handle }) => {
    const failure = await expectFailure(handle);
    expect(failure.type).toBe(ReleaseEndType.Failed);
    expect(failure.message).toBe(`Start refused: ${problem}. Nothing was changed.`);
    const status = await handle.query(statusQuery);
    expect(status.outcome).toBe('failed');
    expect(status.message).toBe(failure.message);
    expect(status.input).toBeUndefined();
    expect(status.steps.map((s) => [s.name, s.state, s.runs])).toEqual(status.steps.map((s) => [s.name, 'skipped', 0]));
    expect(status.gate.state).toBe('closed');
    expect(fake.calls).toEqual([]);
    const history = await handle.fetchHistory();
    expect(history.events?.some((e) => e.activityTaskScheduledEventAttributes)).toBe(false);
    return status;
  }, start);
}

describe('a start request', () => {
  it('that carries a config (a whole old-style release input) is refused, and no activity runs, not even resolvePlan', async () => {
    const input = testInput();
    const status = await expectStartRefused(input, 'the start request carries a config; the worker owns the release config and resolves the plan itself. ' +
      'Send only service, version and requestedBy (`gantry start <service> <version>` does)', input);
    expect(status.request).toEqual({ service: 'hello', version: input.version, requestedBy: 'tester', dryRun: false });
  });

  it('that carries steps without a config is refused the same way', async () => {
    const input = testInput();
    await expectStartRefused({ service: 'hello', version: input.version, requestedBy: 'tester', steps: input.steps },
      'the start request carries a config; the worker owns the release config and resolves the plan itself. ' +
      'Send only service, version and requestedBy (`gantry start <service> <version>` does)', input);
  });

  it('with unknown fields is refused, naming them and the fields it takes', async () => {
    const input = testInput();
    await expectStartRefused({ service: 'hello', version: input.version, requestedBy: 'tester', approvers: ['mallory'], required: 0 },
      'the start request has unknown field(s) approvers, required; it takes service, version, requestedBy, dryRun, signed, localConfigSha256, hotfix', input);
  });

  it('with a version that is not semver is refused', async () => {
    const input = testInput();
    await expectStartRefused({ service: 'hello', version: 'latest', requestedBy: 'tester' }, '"version" must be a semantic version such as 1.4.0', input);
  });

  it('with a service name that is not one is refused', async () => {
    const input = testInput();
    await expectStartRefused({ service: '../Hello World', version: input.version, requestedBy: 'tester' },
      '"service" must be a service name (lowercase letters, digits, dashes)', input);
  });

  it('that is not an object at all is refused', async () => {
    const status = await expectStartRefused('hello 1.2.3', 'the start input is a string, not a start request');
    expect(status.request).toEqual({ service: '?', version: '?', requestedBy: '?', dryRun: false });
  });

  it('whose workflow id is not the id of its service and version is refused', async () => {
    const input = testInput(); // the workflow id is derived from this version…
    const other = uniqueVersion(); // …and the request asks for another
    await expectStartRefused({ service: 'hello', version: other, requestedBy: 'tester' },
      `the workflow id ${releaseWorkflowId('hello', input.version)} is not ${releaseWorkflowId('hello', other)}, the id of that service and version. ` +
      'Start releases with `gantry start`', input);
  });

  it('that is well formed and matches its workflow id runs the resolve step first (the control case)', async () => {
    const input = testInput({ dryRun: true });
    const fake = recordingFake(input);
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const result = await handle.result();
      expect(result.outcome).toBe('planned');
      expect(fake.calls).toEqual(['resolvePlan']);
    });
  });
});
