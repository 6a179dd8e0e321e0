/** Release inputs for workflow tests, built through the same config path as the CLI. */
import { parseConfig } from '../../src/config/load';
import { buildReleaseInput } from '../../src/config/input';
import type { ReleaseInput } from '../../src/shared/release';

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
          hosts: [{ host: 127.0.0.1, port: 2222, user: root }]
          privateKey: { file: /etc/gantry/deploy_key }
        checks:
          - { name: health, url: "http://127.0.0.1:18082/health" }
        window: 1m
    approvals:
      approvers: [alice, bob, carol]
      required: 1
    timeouts:
      approval: 72h
      decision: 24h
    steps:
      build: { retry: { maximumAttempts: 2, initialInterval: 1s } }
      deployStaging: { retry: { maximumAttempts: 2, initialInterval: 1s } }
`;

export function sampleInput(overrides: { version?: string; required?: number; dryRun?: boolean; approval?: string } = {}): ReleaseInput {
  const config = parseConfig(SAMPLE_CONFIG_YAML, 'sample.yaml');
  const svc = config.services.hello!;
  if (overrides.required) svc.approvals.required = overrides.required;
  if (overrides.approval) svc.timeouts.approval = overrides.approval;
  return buildReleaseInput(config, {
    service: 'hello',
    version: overrides.version ?? '1.2.3',
    requestedBy: 'tester',
    dryRun: overrides.dryRun ?? false,
  });
}
