/**
 * Real Temporal servers for tests, started from the binaries scripts/provision.sh installs (never downloaded
 * at run time). A missing binary is a loud failure naming the fix; tests never skip for it.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../../src/shared/release';

const cache = process.env.GANTRY_CACHE ?? path.join(os.homedir(), '.cache', 'gantry');

export const TEMPORAL_CLI = process.env.GANTRY_TEMPORAL_CLI ?? path.join(cache, 'bin', 'temporal');
export const TEST_SERVER = process.env.GANTRY_TEST_SERVER ?? path.join(cache, 'test-server-venv', 'bin', 'temporal-test-server');

export function requireBinary(file: string, what: string): string {
  if (!existsSync(file)) {
    throw new Error(`${what} not found at ${file}. Provision it with \`bash scripts/provision.sh\` (or \`npm test\`, which runs it), ` +
      'or set GANTRY_TEMPORAL_CLI / GANTRY_TEST_SERVER to existing binaries.');
  }
  return file;
}

/** The time-skipping test server: timers (approval and decision timeouts) jump ahead when workflows wait. */
export function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: requireBinary(TEST_SERVER, 'The time-skipping test server') } },
  });
}

/** A real dev server (the Temporal CLI's `server start-dev`) with gantry's search attributes registered. */
export function devServerEnv(opts: { ui?: boolean; uiPort?: number; port?: number; httpPort?: number; dynamicConfig?: Record<string, string | number> } = {}): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: requireBinary(TEMPORAL_CLI, 'The Temporal CLI (dev server)') },
      ip: '127.0.0.1',
      searchAttributes: [...SEARCH_ATTRIBUTES],
      extraArgs: [
        '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
        ...Object.entries(opts.dynamicConfig ?? {}).flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${v}`]),
        ...(opts.httpPort ? ['--http-port', String(opts.httpPort)] : []),
      ],
      ...(opts.port ? { port: opts.port } : {}),
      ...(opts.ui ? { ui: true, ...(opts.uiPort ? { uiPort: opts.uiPort } : {}) } : {}),
    },
  });
}
