/**
 * Production host keys against real sshds: the lab's "production host", and an impostor sshd on another loopback
 * port that has a different host key but takes the same deploy key for the same user (a machine-in-the-middle
 * that would happily run the deploy). The pin, inline or in a known_hosts file, is all that stands between them.
 * Nothing here is mocked: "nothing ran" is checked on the engine, in a marker file the container CLI on the host
 * writes, and in the impostor's own log.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { createDeploy } from '../../src/activities/deploy';
import type { SshDeploy } from '../../src/config/schema';
import type { BuildResult, DeployRequest } from '../../src/activities/types';
import { type Daemon, freePort, logTail, startDaemon, tcpOpen, waitUntilReady } from '../../src/lab/daemon';
import { GantryErrorType } from '../../src/shared/errors';
import { buildRevision, releaseRef, runActivity, useLab } from '../helpers/lab';

const ctx = useLab();
const deploy = createDeploy({ env: process.env });
let good: BuildResult;
let work: string;
let marker: string;
let markedCli: string;
let impostor: { daemon: Daemon; port: number; publicKey: string; fingerprint: string; log: string };

type Host = SshDeploy['hosts'][number];

function fingerprintOf(pubFile: string): string {
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile], { encoding: 'utf8' }).split(' ')[1]!;
}

/** A second sshd with its own host key, the lab's authorized_keys and the same user. */
async function startImpostor(dir: string): Promise<typeof impostor> {
  const { lab } = ctx;
  const hostKey = path.join(dir, 'impostor_host_ed25519_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'impostor', '-f', hostKey], { stdio: 'ignore' });
  // Not a port the lab holds for its containers (they bind theirs only when a deploy starts them).
  let port = await freePort();
  while ([lab.staging.port, lab.production.port, lab.ssh.port].includes(port)) port = await freePort();
  const config = path.join(dir, 'impostor_sshd_config');
  writeFileSync(config, [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${path.join(lab.dir, 'ssh', 'authorized_keys')}`,
    `PidFile ${path.join(dir, 'impostor_sshd.pid')}`,
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    `AllowUsers ${lab.ssh.user}`,
    'LogLevel INFO',
    '',
  ].join('\n'));
  const log = path.join(dir, 'impostor_sshd.log');
  const daemon = startDaemon('impostor sshd', '/usr/sbin/sshd', ['-D', '-e', '-f', config], log);
  await waitUntilReady(daemon, `listening on 127.0.0.1:${port}`, () => tcpOpen(port), 15_000);
  return { daemon, port, publicKey: readFileSync(`${hostKey}.pub`, 'utf8').trim(), fingerprint: fingerprintOf(`${hostKey}.pub`), log };
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'gantry-host-keys-'));
  marker = path.join(work, 'cli-ran');
  // The container CLI on the host: records that it ran, then is docker.
  markedCli = path.join(work, 'docker-marked');
  writeFileSync(markedCli, `#!/bin/sh\necho "$*" >> '${marker}'\nexec docker "$@"\n`);
  chmodSync(markedCli, 0o755);
  impostor = await startImpostor(work);
  good = await buildRevision(ctx.lab, ctx.service, 'good');
});

afterAll(async () => {
  await impostor?.daemon.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

beforeEach(() => rmSync(marker, { force: true }));

/** The lab config's production host: the lab sshd, its key pinned inline. */
function labHost(): Host {
  return (ctx.service.environments.production!.deploy as SshDeploy).hosts[0]!;
}
function target(hosts: Host[]): SshDeploy {
  return { ...(ctx.service.environments.production!.deploy as SshDeploy), containerCli: markedCli, hosts };
}
function request(t: SshDeploy): DeployRequest {
  return { release: releaseRef('1.0.0'), environment: 'production', target: t, imageRef: good.imageRef, digest: good.digest };
}
async function expectFailure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'the deploy should have failed').toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}
async function productionContainerExists(): Promise<boolean> {
  return ctx.lab.docker.getContainer(ctx.lab.production.container).inspect().then(() => true, (e: { statusCode?: number }) => {
    if (e.statusCode === 404) return false;
    throw e;
  });
}
function knownHostsFile(name: string, text: string): string {
  const file = path.join(work, name);
  writeFileSync(file, text);
  return file;
}
function keyscan(args: string[]): string {
  return execFileSync('ssh-keyscan', [...args, '-p', String(ctx.lab.ssh.port), '127.0.0.1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('an impostor host', () => {
  it('is refused before authentication: no command runs there and no container is created', async () => {
    const { lab } = ctx;
    expect(impostor.fingerprint).not.toBe(lab.ssh.hostKeyFingerprint);
    expect(await productionContainerExists()).toBe(false);

    // The address answers with another key, while the config pins the real host's key.
    const err = await expectFailure(runActivity(deploy, [request(target([{ ...labHost(), port: impostor.port }]))]));
    expect(err.type).toBe(GantryErrorType.DeployFailed);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`the host key is ${impostor.fingerprint} (ssh-ed25519), not the pinned ${lab.ssh.hostKeyFingerprint} (hostKey in the release config)`);
    expect(err.message).toContain('nothing was run there and the deploy key was not offered');
    expect(err.message).toContain('ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub');

    expect(existsSync(marker), 'the container CLI ran on the impostor').toBe(false);
    expect(await productionContainerExists()).toBe(false);
    expect(readFileSync(impostor.log, 'utf8')).not.toMatch(/Accepted publickey/);
  });

  it('is refused when the pin comes from a known_hosts file too', async () => {
    const realKey = labHost().hostKey!;
    const file = knownHostsFile('known_hosts_impostor', `[127.0.0.1]:${impostor.port} ${realKey}\n`);
    const err = await expectFailure(runActivity(deploy, [request(target([{ host: '127.0.0.1', port: impostor.port, user: ctx.lab.ssh.user, knownHosts: file }]))]));
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`the host key is ${impostor.fingerprint} (ssh-ed25519), not the pinned ${ctx.lab.ssh.hostKeyFingerprint} (the known_hosts file ${file})`);
    expect(existsSync(marker)).toBe(false);
    expect(await productionContainerExists()).toBe(false);
  });

  it('would have taken the deploy: pinned to its own key, the same deploy runs there (so the pin alone refused it)', async () => {
    const { result } = await runActivity(deploy, [request(target([{ ...labHost(), hostKey: impostor.publicKey, port: impostor.port }]))]);
    expect(result.targets).toMatchObject([{ changed: true, image: good.imageRef }]);
    expect(readFileSync(marker, 'utf8')).toMatch(/^create --name /m);
    expect(logTail(impostor.log, 200)).toMatch(/Accepted publickey for \S+ from 127\.0\.0\.1/);
    expect(await productionContainerExists()).toBe(true);
  });
});

describe('pinning the real host', () => {
  it('deploys with the host key inline (the lab config) and by its SHA256 fingerprint', async () => {
    const inline = await runActivity(deploy, [request(target([labHost()]))]);
    expect(inline.result.targets).toMatchObject([{ image: good.imageRef }]);
    expect(labHost().hostKey).toMatch(/^ssh-ed25519 AAAA\S+ gantry-lab-host$/);

    rmSync(marker, { force: true });
    const byFingerprint = await runActivity(deploy, [request(target([{ ...labHost(), hostKey: ctx.lab.ssh.hostKeyFingerprint }]))]);
    expect(byFingerprint.result.targets).toMatchObject([{ image: good.imageRef }]);
    expect(existsSync(marker)).toBe(true);
  });

  it('deploys with a known_hosts file from ssh-keyscan, plain and hashed (-H)', async () => {
    const { lab } = ctx;
    const plain = keyscan([]);
    expect(plain).toContain(`[127.0.0.1]:${lab.ssh.port} ssh-ed25519 `);
    const hashed = keyscan(['-H']);
    expect(hashed).toMatch(/^\|1\|\S+\|\S+ ssh-ed25519 /m);
    expect(hashed).not.toContain('127.0.0.1');

    for (const [name, text] of [['known_hosts_plain', `# written by ssh-keyscan\n${plain}`], ['known_hosts_hashed', hashed]] as const) {
      rmSync(marker, { force: true });
      const file = knownHostsFile(name, text);
      const { result } = await runActivity(deploy, [request(target([{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user, knownHosts: file }]))]);
      expect(result.targets, name).toMatchObject([{ image: good.imageRef }]);
      expect(existsSync(marker), name).toBe(true);
    }
  });

  it('refuses a known_hosts file without an entry for the host (port 22 names do not cover [host]:port)', async () => {
    const { lab } = ctx;
    // The real key, but listed under the bare address (port 22), and another host's entry under the right port.
    const file = knownHostsFile('known_hosts_other', `127.0.0.1 ${labHost().hostKey}\n[10.0.0.9]:${lab.ssh.port} ${labHost().hostKey}\n`);
    const err = await expectFailure(runActivity(deploy, [request(target([{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user, knownHosts: file }]))]));
    expect(err.type).toBe(GantryErrorType.ConfigInvalid);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`the known_hosts file ${file} has no key for [127.0.0.1]:${lab.ssh.port}`);
    expect(err.message).toContain(`ssh-keyscan -H -p ${lab.ssh.port} 127.0.0.1 >> ${file}`);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a pinned key type the host does not have, and a key known_hosts marks @revoked', async () => {
    const { lab } = ctx;
    const rsa = path.join(work, 'other_rsa_key');
    rmSync(rsa, { force: true });
    rmSync(`${rsa}.pub`, { force: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-C', 'other', '-f', rsa], { stdio: 'ignore' });
    const wrongType = await expectFailure(runActivity(deploy, [request(target([{ ...labHost(), hostKey: readFileSync(`${rsa}.pub`, 'utf8') }]))]));
    expect(wrongType.nonRetryable).toBe(true);
    expect(wrongType.message).toContain('the host offers no ssh-rsa host key, the type pinned by hostKey in the release config');

    const name = `[127.0.0.1]:${lab.ssh.port}`;
    const file = knownHostsFile('known_hosts_revoked', `${name} ${labHost().hostKey}\n@revoked ${name} ${labHost().hostKey}\n`);
    const revoked = await expectFailure(runActivity(deploy, [request(target([{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user, knownHosts: file }]))]));
    expect(revoked.type).toBe(GantryErrorType.DeployFailed);
    expect(revoked.nonRetryable).toBe(true);
    expect(revoked.message).toContain(`the host key is ${lab.ssh.hostKeyFingerprint} (ssh-ed25519), which the known_hosts file ${file} marks @revoked`);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a known_hosts file that is missing or unreadable, naming the path', async () => {
    const { lab } = ctx;
    const missing = path.join(work, 'no-such-known_hosts');
    const err = await expectFailure(runActivity(deploy, [request(target([{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user, knownHosts: missing }]))]));
    expect(err.type).toBe(GantryErrorType.ConfigInvalid);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`cannot read the known_hosts file ${missing} (it does not exist)`);

    const dir = path.join(work, 'a-directory');
    rmSync(dir, { recursive: true, force: true });
    execFileSync('mkdir', [dir]);
    const unreadable = await expectFailure(runActivity(deploy, [request(target([{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user, knownHosts: dir }]))]));
    expect(unreadable.type).toBe(GantryErrorType.ConfigInvalid);
    expect(unreadable.message).toContain(`cannot read the known_hosts file ${dir} (EISDIR)`);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses an unpinned host in a release input made before pins were required, and honours its old target-level fingerprint', async () => {
    const { lab } = ctx;
    const unpinned = { host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user };
    const err = await expectFailure(runActivity(deploy, [request(target([unpinned]))]));
    expect(err.type).toBe(GantryErrorType.ConfigInvalid);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain('no host key is pinned for this host, and gantry does not trust a host on first use');
    expect(err.message).toContain(`ssh-keyscan -p ${lab.ssh.port} 127.0.0.1`);
    expect(existsSync(marker)).toBe(false);

    const legacy = { ...target([unpinned]), hostKeyFingerprint: lab.ssh.hostKeyFingerprint } as unknown as SshDeploy;
    const { result } = await runActivity(deploy, [request(legacy)]);
    expect(result.targets).toMatchObject([{ image: good.imageRef }]);
    const legacyWrong = { ...target([{ ...unpinned, port: impostor.port }]), hostKeyFingerprint: lab.ssh.hostKeyFingerprint } as unknown as SshDeploy;
    expect((await expectFailure(runActivity(deploy, [request(legacyWrong)]))).message).toContain(`the host key is ${impostor.fingerprint}`);
  });
});
