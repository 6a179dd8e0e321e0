/**
 * Small builders for the governance workflow tests: a ConfigSource over the sample config with extra service
 * keys (notices, deny windows…), for the real activities that read the worker's config (checkFreeze, notify).
 */
import type { ConfigSource } from '../../src/activities/resolve';
import type { ReleaseInput, ReleaseStatus } from '../../src/shared/release';
import { loadedFrom, SAMPLE_CONFIG_YAML } from './fixtures';

/**
 * The sample config with extra lines under `services.hello` (each a `key: value` in YAML flow form), as the
 * worker would load it from its file. The lines go before `approvals:`, at the service's indentation.
 */
export function configSourceWith(serviceLines: string[]): ConfigSource {
  const extra = serviceLines.map((l) => `    ${l}\n`).join('');
  const yaml = SAMPLE_CONFIG_YAML.replace('    approvals:\n', `${extra}    approvals:\n`);
  if (yaml === SAMPLE_CONFIG_YAML && serviceLines.length > 0) throw new Error('the sample config changed: no "approvals:" line to insert before');
  const loaded = loadedFrom(yaml);
  return { path: 'governance-test.yaml', load: () => loaded };
}

/** The service's config as a ConfigSource loads it (to copy sections into a test input). */
export function serviceConfigOf(source: ConfigSource): ReleaseInput['config'] {
  const svc = source.load().config.services.hello;
  if (!svc) throw new Error('the config has no service hello');
  return svc;
}

/** One step's status by id (the harness's stepOf takes only the fixed step names). */
export function stepById(s: ReleaseStatus, id: string): ReleaseStatus['steps'][number] {
  const step = s.steps.find((x) => x.name === id);
  if (!step) throw new Error(`status has no step ${id}; it has ${s.steps.map((x) => x.name).join(', ')}`);
  return step;
}

/** A notices section whose webhook the test doubles never call (the fakes record notices; nothing is sent). */
export const RECORDED_NOTICES: NonNullable<ReleaseInput['config']['notices']> = {
  webhook: { env: 'GANTRY_TEST_UNUSED_WEBHOOK' }, reminderBefore: '1h', laneWaitLongerThan: '30m',
};
