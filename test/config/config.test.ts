import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load';
import type { SshDeploy } from '../../src/config/schema';
import { buildReleaseInput } from '../../src/config/input';
import { DEFAULT_STEP_OPTIONS } from '../../src/shared/steps';
import { formatPublish, parsePort } from '../../src/activities/docker';
import { SAMPLE_CONFIG_YAML, configProblems, loadedFrom } from '../helpers/fixtures';

const problemsOf = configProblems;

describe('release config', () => {
  it('accepts the sample config and fills in defaults', () => {
    const config = parseConfig(SAMPLE_CONFIG_YAML, 'sample.yaml');
    const svc = config.services.hello!;
    expect(svc.build).toEqual({ kind: 'docker', dockerfile: 'Dockerfile', context: '.', args: {} });
    expect(svc.environments.staging!.checks[0]!.expect.status).toBe(200);
    expect(svc.environments.production!.deploy.kind).toBe('ssh');
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
    expect(() => loadConfig('/nonexistent/gantry.yaml')).toThrow(/not found; give the worker its release config with --config <file or directory> or GANTRY_CONFIG/);
  });

  it('records where the config came from with its hash', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-config-'));
    const file = path.join(dir, 'gantry.yaml');
    writeFileSync(file, SAMPLE_CONFIG_YAML);
    expect(loadConfig(file).source).toMatch(new RegExp(`^${file}@sha256:[0-9a-f]{16}$`));
  });
});

describe('ssh hosts: pinned host keys', () => {
  const HOSTS = /hosts: \[\{ host: 127\.0\.0\.1, port: 2222, user: root, hostKey: "SHA256:[^"]+" \}\]/;
  const PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICM2i6ErXIUYHEOj1I6TfG2qN9mgZAieYntbVguSgDlt root@web1';
  const withHost = (host: string) => {
    expect(SAMPLE_CONFIG_YAML).toMatch(HOSTS);
    return SAMPLE_CONFIG_YAML.replace(HOSTS, `hosts: [${host}]`);
  };
  const hostOf = (yaml: string) => (parseConfig(yaml, 'gantry.yaml').services.hello!.environments.production!.deploy as SshDeploy).hosts[0]!;

  it('refuses a host without a pin and says how to get its key', () => {
    const problems = problemsOf(withHost('{ host: web1.acme.dev, port: 2200, user: deploy }'));
    expect(problems).toEqual([expect.stringContaining('services.hello.environments.production.deploy.hosts[0].hostKey: web1.acme.dev has no pinned SSH host key')]);
    expect(problems[0]).toContain('gantry does not trust a production host on first use');
    expect(problems[0]).toContain('`ssh-keyscan -p 2200 web1.acme.dev` from a trusted network');
    expect(problems[0]).toContain('`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the host');
    expect(problemsOf(withHost('{ host: web1.acme.dev, user: deploy }'))[0]).toContain('`ssh-keyscan -p 22 web1.acme.dev`');
  });

  it('refuses the old target-level hostKeyFingerprint and says to move it onto each host', () => {
    const yaml = SAMPLE_CONFIG_YAML.replace('privateKey: { file: /etc/gantry/deploy_key }',
      'privateKey: { file: /etc/gantry/deploy_key }\n          hostKeyFingerprint: "SHA256:y3cNoc18t+79Vpq8+aoFpz/m55XuHjFcZdri80K19UQ"');
    expect(problemsOf(yaml)).toEqual([
      'services.hello.environments.production.deploy.hostKeyFingerprint: target-level hostKeyFingerprint is no longer read; ' +
        'move it to each host as hostKey: "SHA256:y3cNoc18t+79Vpq8+aoFpz/m55XuHjFcZdri80K19UQ" (every host pins its own key), then remove it here',
    ]);
  });

  it('accepts a public key line, an ssh-keyscan line, a SHA256 fingerprint or a known_hosts path', () => {
    expect(hostOf(withHost(`{ host: web1, user: deploy, hostKey: "${PUBLIC_KEY}" }`)).hostKey).toBe(PUBLIC_KEY);
    expect(hostOf(withHost(`{ host: web1, user: deploy, hostKey: "web1 ${PUBLIC_KEY.replace(' root@web1', '')}" }`)).port).toBe(22);
    expect(hostOf(withHost('{ host: web1, user: deploy, hostKey: "SHA256:y3cNoc18t+79Vpq8+aoFpz/m55XuHjFcZdri80K19UQ" }')).user).toBe('deploy');
    expect(hostOf(withHost('{ host: web1, port: 2200, user: deploy, knownHosts: /etc/gantry/known_hosts }')).knownHosts).toBe('/etc/gantry/known_hosts');
  });

  it('refuses pins it cannot check, two pins on one host and a relative known_hosts path', () => {
    const problem = (host: string) => problemsOf(withHost(host)).join('\n');
    // Cut short when copied (a whole base64 group missing), and a key of another type than the line says.
    expect(problem(`{ host: web1, user: deploy, hostKey: "${PUBLIC_KEY.replace('gDlt root@web1', '')}" }`)).toContain('is damaged (it is not the base64 of a ssh-ed25519 key)');
    expect(problem(`{ host: web1, user: deploy, hostKey: "${PUBLIC_KEY.replace('ssh-ed25519', 'ecdsa-sha2-nistp256')}" }`)).toContain('is damaged (it is not the base64 of a ecdsa-sha2-nistp256 key)');
    expect(problem('{ host: web1, user: deploy, hostKey: "SHA256:tooshort" }')).toContain('is not a SHA256 host key fingerprint');
    expect(problem('{ host: web1, user: deploy, hostKey: "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48" }')).toContain('is an MD5 fingerprint');
    expect(problem(`{ host: web1, user: deploy, hostKey: "${PUBLIC_KEY}\\n${PUBLIC_KEY}" }`)).toContain('pin one key per host');
    expect(problem('{ host: web1, user: deploy, hostKey: "ssh-dss AAAAB3NzaC1kc3M=" }')).toContain('a ssh-dss host key cannot be pinned');
    expect(problem('{ host: web1, user: deploy, hostKey: "hunter2" }')).toContain('is neither a public key line ("ssh-ed25519 AAAA…") nor a fingerprint');
    expect(problem(`{ host: web1, user: deploy, hostKey: "${PUBLIC_KEY}", knownHosts: /etc/gantry/known_hosts }`))
      .toContain("hosts[0].knownHosts: pins web1's key twice; keep either hostKey or knownHosts, not both");
    expect(problem('{ host: web1, user: deploy, knownHosts: known_hosts }')).toContain('"known_hosts" is not an absolute path');
  });
});

describe('ssh cliEnv and port mappings', () => {
  const deployOf = (yaml: string) => parseConfig(yaml, 'gantry.yaml').services.hello!.environments.production!.deploy as SshDeploy;
  const withCliEnv = (env: string) => SAMPLE_CONFIG_YAML.replace('privateKey: { file: /etc/gantry/deploy_key }', `privateKey: { file: /etc/gantry/deploy_key }\n          cliEnv: ${env}`);
  const withPorts = (ports: string[]) => SAMPLE_CONFIG_YAML.replace('ports: ["18082:80"]', `ports: ${JSON.stringify(ports)}`);

  it('refuses cliEnv keys that are not shell variable names', () => {
    expect(problemsOf(withCliEnv('{ "FOO BAR": x, "1X": y, DOCKER_HOST: "unix:///run/docker.sock" }'))).toEqual([
      'services.hello.environments.production.deploy.cliEnv.FOO BAR: "FOO BAR" is not an environment variable name; use letters, digits and _ and do not start with a digit, e.g. DOCKER_HOST',
      'services.hello.environments.production.deploy.cliEnv.1X: "1X" is not an environment variable name; use letters, digits and _ and do not start with a digit, e.g. DOCKER_HOST',
    ]);
    expect(deployOf(withCliEnv('{ DOCKER_HOST: "unix:///run/docker.sock", _X1: y }')).cliEnv).toEqual({ DOCKER_HOST: 'unix:///run/docker.sock', _X1: 'y' });
  });

  it('refuses ports out of range and addresses that are not IP addresses, naming the fix', () => {
    expect(problemsOf(withPorts(['99999:0', '0:80', '300.1.1.1:80:80', '8080:0', 'localhost:80:80', '[::zz]:80:80', '::1:80:80', '80:80/sctp']))).toEqual([
      'services.hello.environments.production.deploy.ports[0]: "99999:0": the host port 99999 is out of range; use a port from 1 to 65535',
      'services.hello.environments.production.deploy.ports[1]: "0:80": the host port 0 is out of range; use a port from 1 to 65535',
      expect.stringMatching(/^services\.hello\.environments\.production\.deploy\.ports\[2\]: "300\.1\.1\.1:80:80": 300\.1\.1\.1 is not an IP address; give the host address as IPv4 with four numbers from 0 to 255/),
      'services.hello.environments.production.deploy.ports[3]: "8080:0": the container port 0 is out of range; use a port from 1 to 65535',
      expect.stringContaining('ports[4]: "localhost:80:80": localhost is not an IP address'),
      'services.hello.environments.production.deploy.ports[5]: "[::zz]:80:80": [::zz] is not an IPv6 address; write it like [::1]:8080:80',
      expect.stringContaining('ports[6]: "::1:80:80" is not a port mapping; write HOST_PORT:CONTAINER_PORT such as "8080:80"'),
      expect.stringContaining('ports[7]: "80:80/sctp" is not a port mapping'),
    ]);
    // The docker target shares the container spec.
    expect(problemsOf(SAMPLE_CONFIG_YAML.replace('ports: ["18081:80"]', 'ports: ["65536:80"]'))).toEqual([
      'services.hello.environments.staging.deploy.ports[0]: "65536:80": the host port 65536 is out of range; use a port from 1 to 65535',
    ]);
  });

  it('accepts valid mappings, IPv6 in brackets included, and hands them to the engine unchanged', () => {
    const valid = ['8080:80', '1:65535', '127.0.0.1:8080:80', '0.0.0.0:443:8443/tcp', '255.255.255.255:53:53/udp', '[::1]:8080:80', '[2001:db8::1]:8080:80/udp'];
    expect(deployOf(withPorts(valid)).ports).toEqual(valid);
    expect(parsePort('[::1]:8080:80')).toEqual({ hostIp: '::1', hostPort: '8080', containerPort: '80', protocol: 'tcp' });
    expect(parsePort('127.0.0.1:8080:80/udp')).toEqual({ hostIp: '127.0.0.1', hostPort: '8080', containerPort: '80', protocol: 'udp' });
    expect(valid.map((p) => formatPublish(parsePort(p)))).toEqual([
      '8080:80/tcp', '1:65535/tcp', '127.0.0.1:8080:80/tcp', '0.0.0.0:443:8443/tcp', '255.255.255.255:53:53/udp', '[::1]:8080:80/tcp', '[2001:db8::1]:8080:80/udp',
    ]);
  });
});

describe('release input snapshot', () => {
  const config = loadedFrom(SAMPLE_CONFIG_YAML);

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
    expect(config.config.services.hello!.approvals.approvers).not.toContain('mallory');
  });
});
