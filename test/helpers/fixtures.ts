/** Release inputs for workflow tests, built through the same config path as the worker's resolve step. */
import { createHash } from 'node:crypto';
import { ConfigError, parseConfig, type LoadedConfig } from '../../src/config/load';
import { buildReleaseInput } from '../../src/config/input';
import type { PrincipalKey } from '../../src/shared/gate';
import type { ReleaseInput, StartRequest } from '../../src/shared/release';

export const SAMPLE_CONFIG_YAML = `
services:
  hello:
    repo:
      url: /srv/git/hello.git
      branch: main
    image:
      registry: 127.0.0.1:5000
      name: hello
    environments:
      staging:
        deploy: { kind: docker, container: hello-staging, ports: ["18081:80"] }
        checks:
          - { name: health, url: "http://127.0.0.1:18081/health" }
          - { name: version, url: "http://127.0.0.1:18081/version", expect: { json: { path: version, equals: "{version}" } } }
        window: 30s
      production:
        deploy:
          kind: ssh
          container: hello
          ports: ["18082:80"]
          hosts: [{ host: 127.0.0.1, port: 2222, user: root, hostKey: "SHA256:CwlnmVba5SnmUVU0oUGxM7lXAvvvHHRaGFmRm/8keSI" }]
          privateKey: { file: /etc/gantry/deploy_key }
        checks:
          - { name: health, url: "http://127.0.0.1:18082/health" }
        window: 1m
    approvals:
      approvers: [alice, bob, carol]
      required: 1
      identity: declared
    timeouts:
      approval: 72h
      decision: 24h
    steps:
      build: { retry: { maximumAttempts: 2, initialInterval: 1s } }
      deployStaging: { retry: { maximumAttempts: 2, initialInterval: 1s } }
`;

/** The sample config with text replacements applied in order; each `from` must be there. */
export function sampleConfigWith(edits: [string, string][]): string {
  let yaml = SAMPLE_CONFIG_YAML;
  for (const [from, to] of edits) {
    if (!yaml.includes(from)) throw new Error(`test config edit: "${from}" not found in SAMPLE_CONFIG_YAML`);
    yaml = yaml.replace(from, to);
  }
  return yaml;
}

/** The problems the config loader reports for a config it refuses (it must refuse it). */
export function configProblems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'gantry.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

/** A parsed config as the worker's loader returns it (no files: keys given directly). */
export function loadedFrom(yaml: string, keys: PrincipalKey[] = [], source = 'sample.yaml'): LoadedConfig {
  const sha256 = createHash('sha256').update(yaml).digest('hex');
  return { config: parseConfig(yaml, source), source: `${source}@sha256:${sha256.slice(0, 16)}`, sha256, keys };
}

export interface SampleOverrides {
  version?: string;
  required?: number;
  dryRun?: boolean;
  approval?: string;
  /** signed mode with these keys (default: declared, as the sample config says). */
  signedWith?: PrincipalKey[];
  allowSelfApproval?: boolean;
  operators?: string[];
  requestedBy?: string;
}

export function sampleInput(overrides: SampleOverrides = {}): ReleaseInput {
  const loaded = loadedFrom(SAMPLE_CONFIG_YAML, overrides.signedWith ?? []);
  const svc = loaded.config.services.hello!;
  if (overrides.required) svc.approvals.required = overrides.required;
  if (overrides.approval) svc.timeouts.approval = overrides.approval;
  if (overrides.signedWith) svc.approvals.identity = 'signed';
  if (overrides.allowSelfApproval) svc.approvals.allowSelfApproval = true;
  if (overrides.operators) svc.operators = overrides.operators;
  return buildReleaseInput(loaded, {
    service: 'hello',
    version: overrides.version ?? '1.2.3',
    requestedBy: overrides.requestedBy ?? 'tester',
    dryRun: overrides.dryRun ?? false,
  });
}

/** The start request `gantry start` would send for a resolved input (unsigned unless `signed` is given). */
export function startRequestFor(input: ReleaseInput, extra: Partial<StartRequest> = {}): StartRequest {
  return { service: input.service, version: input.version, requestedBy: input.requestedBy, ...(input.dryRun ? { dryRun: true } : {}), ...extra };
}
