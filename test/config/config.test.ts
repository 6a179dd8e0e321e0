import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load';
import { buildReleaseInput } from '../../src/config/input';
import { DEFAULT_STEP_OPTIONS } from '../../src/shared/steps';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

function problemsOf(yaml: string): string[] {
  try {
    parseConfig(yaml, 'gantry.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the config to be refused');
}

describe('release config', () => {
  it('accepts the sample config and fills in defaults', () => {
    const config = parseConfig(SAMPLE_CONFIG_YAML, 'sample.yaml');
    const svc = config.services.hello!;
    expect(svc.build).toEqual({ kind: 'docker', dockerfile: 'Dockerfile', context: '.', args: {} });
    expect(svc.environments.staging.checks[0]!.expect.status).toBe(200);
    expect(svc.environments.production.deploy.kind).toBe('ssh');
    expect(svc.repo.changelog).toBe('CHANGELOG.md');
  });

  it('rejects an unknown key and names its path', () => {
    const problems = problemsOf(SAMPLE_CONFIG_YAML.replace('approvers: [alice, bob, carol]', 'aprovers: [alice]'));
    expect(problems.join('\n')).toContain('services.hello.approvals: unknown key "aprovers"');
    expect(problems.join('\n')).toContain('services.hello.approvals.approvers: is required');
  });

  it('rejects a duration it cannot read and says how to write one', () => {
    const problems = problemsOf(SAMPLE_CONFIG_YAML.replace('approval: 72h', 'approval: three days'));
    expect(problems).toEqual([expect.stringContaining('services.hello.timeouts.approval: "three days" is not a duration; write it like 30s, 5m, 2h or 3d')]);
  });

  it('rejects more required approvals than approvers', () => {
    const problems = problemsOf(SAMPLE_CONFIG_YAML.replace('required: 1', 'required: 4'));
    expect(problems.join('\n')).toMatch(/services\.hello\.approvals\.required: requires 4 approvals but only 3 approvers are listed/);
  });

  it('rejects a secret written inline instead of by reference', () => {
    const problems = problemsOf(SAMPLE_CONFIG_YAML.replace('privateKey: { file: /etc/gantry/deploy_key }', 'privateKey: "-----BEGIN KEY-----"'));
    expect(problems.join('\n')).toContain('services.hello.environments.production.deploy.privateKey');
  });

  it('reports YAML syntax errors with the fix', () => {
    expect(problemsOf('services:\n  hello: [unclosed\n')[0]).toMatch(/^YAML syntax: .*; fix the file's indentation or quoting$/);
  });

  it('names a missing config file and how to pass one', () => {
    expect(() => loadConfig('/nonexistent/gantry.yaml')).toThrow(/file not found; pass --config <file> or set GANTRY_CONFIG/);
  });

  it('records where the config came from with its hash', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-config-'));
    const file = path.join(dir, 'gantry.yaml');
    writeFileSync(file, SAMPLE_CONFIG_YAML);
    expect(loadConfig(file).source).toMatch(new RegExp(`^${file}@sha256:[0-9a-f]{16}$`));
  });
});

describe('release input snapshot', () => {
  const config = parseConfig(SAMPLE_CONFIG_YAML, 'sample.yaml');

  it('merges step overrides onto the defaults', () => {
    const input = buildReleaseInput(config, { service: 'hello', version: '1.2.3', requestedBy: 'op', dryRun: false });
    expect(input.steps.build.retry).toEqual({ ...DEFAULT_STEP_OPTIONS.build.retry, maximumAttempts: 2, initialInterval: '1s' });
    expect(input.steps.tag).toEqual(DEFAULT_STEP_OPTIONS.tag);
  });

  it('accepts a leading v and refuses a version that is not semver', () => {
    expect(buildReleaseInput(config, { service: 'hello', version: 'v2.0.0', requestedBy: 'op', dryRun: false }).version).toBe('2.0.0');
    expect(() => buildReleaseInput(config, { service: 'hello', version: '2.0', requestedBy: 'op', dryRun: false }))
      .toThrow(/version "2.0" is not semver; give it as MAJOR.MINOR.PATCH/);
  });

  it('names the services the config defines when the service is unknown', () => {
    expect(() => buildReleaseInput(config, { service: 'nope', version: '1.0.0', requestedBy: 'op', dryRun: false }))
      .toThrow(/no service "nope"; the config defines hello/);
  });

  it('is a snapshot that does not share objects with the config', () => {
    const input = buildReleaseInput(config, { service: 'hello', version: '1.2.3', requestedBy: 'op', dryRun: false });
    input.config.approvals.approvers.push('mallory');
    expect(config.services.hello!.approvals.approvers).not.toContain('mallory');
  });
});
