/**
 * Governance settings the config refuses because they would promise what releases do not do: a deny window over
 * an environment no gate guards (releases check windows and freezes only at gates), and break-glass without a
 * notices channel (a break-glass is always announced). Parsed as the worker parses them, and once through the
 * built CLI for its exit code.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load';
import { configProblems, sampleConfigWith } from '../helpers/fixtures';
import { gantry, removeTempDirs, requireBuild, show, tempDir } from '../cli/harness';

afterAll(() => removeTempDirs());

const edited = sampleConfigWith;
const problemsOf = configProblems;

const serviceWindow = (envs: string) => ['    timeouts:\n', `    denyWindows: [{ name: backup, cron: "0 2 * * *", duration: 1h, environments: ${envs} }]\n    timeouts:\n`] as [string, string];
const topWindow = (envs: string) => ['\nservices:\n', `\ndenyWindows: [{ name: weekend, cron: "0 18 * * 5", duration: 62h, environments: ${envs} }]\nservices:\n`] as [string, string];
const STAGING_GATE: [string, string] = ['        window: 30s\n', '        window: 30s\n        gate: { approvers: [alice] }\n'];
const NOTICES = '    notices: { webhook: { env: APPROVERS_WEBHOOK } }\n';
const BREAK_GLASS: [string, string][] = [
  ['\nservices:\n', '\ngroups: { sre: [alice, bob] }\nservices:\n'],
  ['    timeouts:\n', '    breakGlass: { group: sre }\n    timeouts:\n'],
];

describe('deny windows cover gated environments only', () => {
  it('refuses a service\'s window over an ungated environment, naming the field and the fix', () => {
    expect(problemsOf(edited([serviceWindow('[production, staging]')]))).toEqual([
      'services.hello.denyWindows[0].environments[1]: deny window "backup" covers staging, which has no approval gate, so it would hold nothing ' +
        '(releases check deny windows and freezes at their gates); cover production instead, or give staging a gate (environments.staging.gate)',
    ]);
  });

  it('refuses a top-level window over an environment no service gates', () => {
    expect(problemsOf(edited([topWindow('[staging]')]))).toEqual([
      expect.stringMatching(/^denyWindows\[0\]\.environments\[0\]: deny window "weekend" covers staging, which has no approval gate, so it would hold nothing .*cover production instead/),
    ]);
  });

  it('refuses a top-level window naming an environment no service has, once however many services there are', () => {
    const one = edited([topWindow('[prod, production]')]);
    // A second service: the same block under another name (the sample's only service is the file's last block).
    const two = `${one}${one.slice(one.indexOf('\n  hello:\n') + 1).replace('  hello:\n', '  world:\n')}`;
    expect(Object.keys(parseConfig(two.replace('[prod, production]', '[production]'), 'gantry.yaml').services)).toEqual(['hello', 'world']);
    const problem = 'denyWindows[0].environments[0]: deny window "weekend" names environment prod, which no service has (they have staging, production)';
    expect(problemsOf(one)).toEqual([problem]);
    expect(problemsOf(two)).toEqual([problem]);
  });

  it('accepts windows over gated environments, a gated staging, and windows that name no environment (production\'s gate holds them)', () => {
    expect(() => parseConfig(edited([serviceWindow('[production]'), topWindow('[production]')]), 'gantry.yaml')).not.toThrow();
    expect(() => parseConfig(edited([STAGING_GATE, serviceWindow('[staging]'), topWindow('[staging]')]), 'gantry.yaml')).not.toThrow();
    expect(() => parseConfig(edited([['    timeouts:\n', '    denyWindows: [{ name: backup, cron: "0 2 * * *", duration: 1h }]\n    timeouts:\n']]), 'gantry.yaml')).not.toThrow();
  });

  it('`gantry start --dry-run` refuses such a config with exit 3, naming the field', async () => {
    requireBuild();
    const file = path.join(tempDir('gantry-config-'), 'gantry.yaml');
    writeFileSync(file, edited([serviceWindow('[staging]')]));
    const r = await gantry(['start', 'hello', '1.0.0', '--config', file, '--dry-run']);
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain(`Invalid config ${file}`);
    expect(r.stderr).toContain('services.hello.denyWindows[0].environments[0]: deny window "backup" covers staging, which has no approval gate');
  });
});

describe('break-glass is always announced', () => {
  it('refuses breakGlass without a notices channel, saying to add one', () => {
    expect(problemsOf(edited(BREAK_GLASS))).toEqual([
      'services.hello.breakGlass: needs a notices: channel: a break-glass is always announced, and without one the only announcement is the ' +
        'release\'s, which `decide skip` may skip; add notices: { webhook: { env: APPROVERS_WEBHOOK } } (the approvers\' channel), or remove breakGlass',
    ]);
  });

  it('accepts breakGlass with notices', () => {
    const svc = parseConfig(edited([...BREAK_GLASS, ['    timeouts:\n', `${NOTICES}    timeouts:\n`]]), 'gantry.yaml').services.hello!;
    expect(svc.breakGlass).toEqual({ group: 'sre', required: 1 });
    expect(svc.notices?.webhook).toEqual({ env: 'APPROVERS_WEBHOOK' });
  });
});
