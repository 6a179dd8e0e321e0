/**
 * The release lab itself: what it serves, that its config is a valid release config, that its parts answer
 * (registry, sshd reaching the engine, webhook receiver), and that status/cleanup/restart do what they say.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeSSH } from 'node-ssh';
import { checkLabPrerequisites, cleanupLab, labStatus, startLab } from '../../src/lab';
import { isAlive } from '../../src/lab/daemon';
import { requireProvisionedLab, useLab } from '../helpers/lab';

const ctx = useLab();

function show(repo: string, rev: string, file: string): string {
  return execFileSync('git', ['show', `${rev}:${file}`], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the lab repository', () => {
  it('holds a healthy 1.0.0 on main and a broken 1.1.0 beside it, each version agreeing across its files', () => {
    const { repo } = ctx.lab;
    expect(execFileSync('git', ['rev-parse', 'refs/heads/main'], { cwd: repo.url, encoding: 'utf8' }).trim()).toBe(repo.good.commit);
    expect(execFileSync('git', ['rev-parse', 'refs/heads/broken'], { cwd: repo.url, encoding: 'utf8' }).trim()).toBe(repo.broken.commit);
    expect(execFileSync('git', ['rev-parse', `${repo.broken.commit}^`], { cwd: repo.url, encoding: 'utf8' }).trim()).toBe(repo.good.commit);
    for (const rev of [repo.good, repo.broken]) {
      expect(JSON.parse(show(repo.url, rev.commit, 'package.json')).version).toBe(rev.version);
      expect(JSON.parse(show(repo.url, rev.commit, 'version.json'))).toEqual({ version: rev.version });
      expect(show(repo.url, rev.commit, 'CHANGELOG.md')).toContain(`## [${rev.version}]`);
    }
    expect(show(repo.url, repo.good.commit, 'www/health')).toBe('ok\n');
    expect(() => show(repo.url, repo.broken.commit, 'www/health')).toThrow();
    expect([repo.good.version, repo.broken.version]).toEqual(['1.0.0', '1.1.0']);
  });
});

describe('the lab config', () => {
  it('is a valid release config for service hello wired to the lab', () => {
    const { lab, service } = ctx;
    expect(service.repo.url).toBe(lab.repo.url);
    expect(service.image.registry).toBe(`127.0.0.1:${lab.registry.port}`);
    expect(service.environments.staging!.deploy).toMatchObject({ kind: 'docker', socketPath: lab.engine.socketPath, ports: [`127.0.0.1:${lab.staging.port}:80`] });
    expect(service.environments.production!.deploy).toMatchObject({
      kind: 'ssh',
      hosts: [{ host: '127.0.0.1', port: lab.ssh.port, user: lab.ssh.user }],
      privateKey: { file: lab.ssh.privateKeyFile },
      containerCli: 'docker',
      cliEnv: { DOCKER_HOST: `unix://${lab.engine.socketPath}` },
    });
    for (const env of ['staging', 'production'] as const) {
      expect(service.environments[env]!.checks.map((c) => [c.name, c.expect.json])).toEqual([
        ['health', undefined],
        ['version', { path: 'version', equals: '{version}' }],
      ]);
    }
    expect(service.announce).toEqual({
      webhook: { env: 'GANTRY_LAB_WEBHOOK_URL' }, auditLog: path.join(lab.dir, 'audit.jsonl'), artifactsDir: path.join(lab.dir, 'artifacts', '{service}', '{version}'),
      signingKey: { file: lab.releaseSigningKey },
    });
    expect(service.approvals.approvers).toEqual(['alice', 'bob']);
    expect(service.approvals.identity).toBe('signed');
    expect(lab.env.GANTRY_LAB_WEBHOOK_URL).toBe(lab.webhook.url);
    expect(lab.configYaml).not.toContain(lab.webhook.url);
  });
});

describe('the lab components', () => {
  it('serves a registry on the configured loopback port', async () => {
    const res = await fetch(`${ctx.lab.registry.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('has the base image built from busybox-static in the engine', async () => {
    const image = await ctx.lab.docker.getImage(ctx.lab.baseImage).inspect();
    expect(image.RepoTags).toContain('localhost/gantry-lab/busybox:1');
  });

  it('runs an sshd that takes the lab key, shows the pinned host key and reaches the engine with the docker CLI', async () => {
    const { lab } = ctx;
    const ssh = new NodeSSH();
    let seen = '';
    await ssh.connect({
      host: lab.ssh.host,
      port: lab.ssh.port,
      username: lab.ssh.user,
      privateKeyPath: lab.ssh.privateKeyFile,
      hostVerifier: (key: Buffer) => {
        seen = `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
        return true;
      },
    });
    try {
      expect(seen).toBe(lab.ssh.hostKeyFingerprint);
      const r = await ssh.execCommand(`DOCKER_HOST=${lab.engine.dockerHost} docker image inspect --format '{{.Id}}' ${lab.baseImage}`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe((await lab.docker.getImage(lab.baseImage).inspect()).Id);
    } finally {
      ssh.dispose();
    }
  });

  it('records each webhook message as a JSON line and reports the count', async () => {
    const { webhook } = ctx.lab;
    const before = webhook.count();
    const res = await fetch(webhook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'hello 1.0.0 released' }) });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');
    const wrong = await fetch(webhook.url.replace(/\/hooks\/.*/, '/hooks/wrong'), { method: 'POST', body: '{}' });
    expect(wrong.status).toBe(404);
    expect(webhook.count()).toBe(before + 1);
    expect(webhook.requests().at(-1)).toMatchObject({ method: 'POST', contentType: 'application/json', body: { text: 'hello 1.0.0 released' } });
    const counted = (await (await fetch(`http://127.0.0.1:${webhook.port}/_count`)).json()) as { count: number };
    expect(counted.count).toBe(before + 1);
  });
});

describe('lab status, cleanup and restart', () => {
  it('refuses a second lab in a directory a live process runs, restarts with the same data, and cleans up its containers', async () => {
    requireProvisionedLab();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-lab-restart-'));
    const cli = path.resolve(__dirname, '..', '..', 'scripts', 'lab', 'lab.ts');
    const tsx = path.resolve(__dirname, '..', '..', 'node_modules', '.bin', 'tsx');
    const child = spawn(tsx, [cli, 'start', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the lab CLI did not come up:\n${out}`)), 60_000);
        const onData = (b: Buffer) => {
          out += b.toString();
          if (out.includes('The lab is up')) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('exit', (code) => reject(new Error(`the lab CLI exited (${code}):\n${out}`)));
      });
      const running = await labStatus(dir);
      expect(running.running).toBe(true);
      expect(running.daemons.map((d) => [d.name, d.alive])).toEqual([['engine', true], ['registry', true], ['sshd', true]]);

      await expect(startLab({ dir })).rejects.toThrow(/A lab is already running in .* \(process \d+\)/);

      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
      const stopped = await labStatus(dir);
      expect(stopped.running).toBe(false);
      expect(stopped.daemons).toEqual([]);
      for (const d of running.daemons) expect(isAlive(d.pid), `${d.name} (pid ${d.pid}) should be gone`).toBe(false);

      // Restart in the same directory: same lab id, repository and host key. (The registry port is reused when it
      // is still free; on a shared machine another lab may have taken it meanwhile, so that is not asserted.)
      const hostKey = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'ssh', 'ssh_host_ed25519_key.pub')], { encoding: 'utf8' }).split(' ')[1];
      const mainBefore = execFileSync('git', ['rev-parse', 'refs/heads/main'], { cwd: path.join(dir, 'git', 'hello.git'), encoding: 'utf8' }).trim();
      const again = await startLab({ dir });
      try {
        expect(again.id).toBe(running.id);
        expect(again.ssh.hostKeyFingerprint).toBe(hostKey);
        expect(again.repo.good.commit).toBe(mainBefore);
        expect(again.registry.port).toBeGreaterThanOrEqual(Number(process.env.GANTRY_LAB_REGISTRY_PORT ?? 5005));
        // A container of the lab's, as a deploy would leave it, is listed and then removed by cleanup.
        const c = await again.docker.createContainer({ name: again.staging.container, Image: again.baseImage, Cmd: ['sleep', '300'] });
        await c.start();
        expect((await labStatus(dir)).containers).toEqual([{ name: again.staging.container, state: 'running', image: again.baseImage }]);
        const cleaned = await cleanupLab(dir, { quiet: true });
        expect(cleaned.removedContainers).toEqual([again.staging.container]);
        expect(cleaned.stoppedDaemons.sort()).toEqual(['engine', 'registry', 'sshd']);
        expect((await labStatus(dir)).containers).toEqual([]);
      } finally {
        await again.stop();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await cleanupLab(dir, { purge: true, quiet: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the provisioning command when a component is missing', () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(() => checkLabPrerequisites({ managedEngine: true })).toThrow(/docker-registry.*podman.*run `bash scripts\/lab\/provision.sh` as root/s);
    } finally {
      process.env.PATH = saved;
    }
  });
});
