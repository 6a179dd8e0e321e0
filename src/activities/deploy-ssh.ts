/**
 * Deploy target `kind: ssh`, the production path: node-ssh to each host in turn, then the container CLI there
 * (`docker` by default; `containerCli` and `cliEnv` from config): pull by digest, note the previous image, stop,
 * rm, run with the restart policy, wait until it runs. Hosts go one after another; the first failure stops the
 * deploy and its error lists the hosts already changed. See deploy.ts for the labels that make retries and
 * rollbacks safe.
 *
 * The private key is a reference resolved here, on the worker; it never leaves this process. A pinned
 * `hostKeyFingerprint` (SHA256:…, as `ssh-keygen -l` prints it) is checked before authenticating.
 */
import { createHash } from 'node:crypto';
import { NodeSSH } from 'node-ssh';
import type { SshDeploy } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { classifyEngineText, containerLabels, type Deployer, LABELS, parsePort, previousImageOf, type Restored, type RestoreRequest, rollbackLabels } from './docker';
import { beat, cancellation, pause } from './heartbeat';
import { describeSecretRef, redact, resolveSecret } from './secrets';
import type { DeployedTarget, DeployRequest } from './types';

export interface SshDeployDeps {
  /** Resolves `privateKey` references. */
  env: NodeJS.ProcessEnv;
  /** @default 20000 */
  connectTimeoutMs?: number;
  /** Per remote command. @default 600000 (a pull can be slow) */
  commandTimeoutMs?: number;
  /** How long a new container may take to be running. @default 60000 */
  startTimeoutMs?: number;
}

type Host = SshDeploy['hosts'][number];

/** POSIX shell quoting for one argument. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_/.:@%+=,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function sshTargetName(host: Host, container: string): string {
  return `ssh:${host.user}@${host.host}:${host.port}/${container}`;
}

/** A failure on one host, before it is reported with what the other hosts did. */
class HostError extends Error {
  constructor(message: string, readonly retry: boolean, readonly type: GantryErrorType = GantryErrorType.DeployFailed) {
    super(message);
  }
}

interface RemoteContainer {
  image: string;
  imageId: string;
  running: boolean;
  restarting: boolean;
  status: string;
  exitCode: number;
  startedAt: string;
  restartCount: number;
  labels: Record<string, string>;
}

/** One SSH session to one host, running the container CLI. */
class RemoteCli {
  private constructor(private readonly ssh: NodeSSH, private readonly target: SshDeploy, private readonly name: string, private readonly timeoutMs: number) {}

  static async connect(host: Host, target: SshDeploy, key: string, deps: SshDeployDeps): Promise<RemoteCli> {
    const name = sshTargetName(host, target.container);
    const ssh = new NodeSSH();
    let keyMismatch: string | undefined;
    try {
      await ssh.connect({
        host: host.host,
        port: host.port,
        username: host.user,
        privateKey: key,
        readyTimeout: deps.connectTimeoutMs ?? 20_000,
        ...(target.hostKeyFingerprint
          ? {
              hostVerifier: (blob: Buffer) => {
                const fp = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
                if (fp !== target.hostKeyFingerprint) keyMismatch = fp;
                return fp === target.hostKeyFingerprint;
              },
            }
          : {}),
      });
    } catch (err) {
      ssh.dispose();
      const text = redact(String((err as Error)?.message ?? err), [key]);
      if (keyMismatch) {
        throw new HostError(`${name}: the host key is ${keyMismatch}, not the pinned ${target.hostKeyFingerprint}. Someone may be intercepting the ` +
          'connection, or the host was reinstalled: check the host key out of band, then update hostKeyFingerprint in the release config.', false);
      }
      if (/authentication methods failed|permission denied|auth/i.test(text)) {
        throw new HostError(`${name}: the host refused the deploy key (${text}). Add the key's public half to ~${host.user}/.ssh/authorized_keys ` +
          `on the host, or fix privateKey (${describeSecretRef(target.privateKey)}) or the user in the release config.`, false, GantryErrorType.ConfigInvalid);
      }
      if (/privatekey|private key|unsupported key|parse/i.test(text)) {
        throw new HostError(`${name}: the deploy key from ${describeSecretRef(target.privateKey)} cannot be used (${text}). ` +
          'Point privateKey at an unencrypted OpenSSH private key.', false, GantryErrorType.ConfigInvalid);
      }
      throw new HostError(`${name}: could not connect over SSH (${text}). Gantry retries; if it persists, check the host is up and sshd listens on port ${host.port}.`, true);
    }
    return new RemoteCli(ssh, target, name, deps.commandTimeoutMs ?? 600_000);
  }

  dispose(): void {
    this.ssh.dispose();
  }

  /** `{cliEnv…} {containerCli} args…`, each word quoted. */
  command(args: string[]): string {
    const env = Object.entries(this.target.cliEnv).map(([k, v]) => `${k}=${shellQuote(v)}`);
    const cli = this.target.containerCli.trim().split(/\s+/).map(shellQuote);
    return [...(env.length ? ['env', ...env] : []), ...cli, ...args.map(shellQuote)].join(' ');
  }

  async run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; command: string }> {
    const command = this.command(args);
    const signal = cancellation();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HostError(`${this.name}: \`${command}\` did not finish within ${this.timeoutMs / 1000}s; gantry retries.`, true)), this.timeoutMs);
    });
    try {
      const res = await Promise.race([this.ssh.execCommand(command, {}), timeout]);
      if (signal.aborted) throw signal.reason;
      return { code: res.code, stdout: res.stdout, stderr: res.stderr, command };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Run and require exit 0; a failure is classified from the CLI's output. */
  async must(args: string[], what: string): Promise<string> {
    const r = await this.run(args);
    if (r.code === 0) return r.stdout;
    const out = (r.stderr || r.stdout).trim().slice(-800);
    if (r.code === 127 || /command not found|not found in \$?PATH|executable file not found/i.test(out)) {
      throw new HostError(`${this.name}: \`${this.target.containerCli}\` is not installed there (${out}). Install it on the host or set containerCli in the release config.`,
        false, GantryErrorType.ConfigInvalid);
    }
    const kind = classifyEngineText(out);
    if (kind === 'unreachable' || /cannot connect to the docker daemon|is the docker daemon running/i.test(out)) {
      throw new HostError(`${this.name}: ${what} failed because something did not answer (\`${r.command}\`: ${out}). Gantry retries; if it persists, ` +
        'check the engine on the host and the registry it pulls from.', true);
    }
    if (kind === 'not-found' && args[0] === 'pull') {
      throw new HostError(`${this.name}: the registry has no ${args[1]} (${out}). Release a new version to rebuild it, or restore the image in the registry.`, false);
    }
    throw new HostError(`${this.name}: ${what} failed (\`${r.command}\` exited ${r.code}: ${out}). Fix it on the host, then retry the release.`, false);
  }

  async inspect(container: string): Promise<RemoteContainer | null> {
    const r = await this.run(['inspect', '--type', 'container', '--format', '{{json .}}', container]);
    if (r.code !== 0) {
      if (/no such (object|container)|no container with name/i.test(r.stderr + r.stdout)) return null;
      await this.must(['inspect', '--type', 'container', '--format', '{{json .}}', container], `inspecting ${container}`);
    }
    const c = JSON.parse(r.stdout) as {
      Config: { Image: string; Labels?: Record<string, string> | null };
      Image: string;
      RestartCount?: number;
      State: { Running: boolean; Restarting?: boolean; Status: string; ExitCode: number; StartedAt: string };
    };
    return {
      image: c.Config.Image,
      imageId: c.Image,
      running: c.State.Running,
      restarting: c.State.Restarting ?? false,
      status: c.State.Status,
      exitCode: c.State.ExitCode,
      startedAt: c.State.StartedAt,
      restartCount: c.RestartCount ?? 0,
      labels: c.Config.Labels ?? {},
    };
  }

  async imageId(image: string): Promise<string | null> {
    const r = await this.run(['image', 'inspect', '--format', '{{.Id}}', image]);
    return r.code === 0 ? r.stdout.trim() : null;
  }

  async imageLabels(image: string): Promise<Record<string, string>> {
    const r = await this.run(['image', 'inspect', '--format', '{{json .Config.Labels}}', image]);
    try {
      return r.code === 0 ? ((JSON.parse(r.stdout) as Record<string, string> | null) ?? {}) : {};
    } catch {
      return {};
    }
  }

  async pull(image: string): Promise<string> {
    beat({ phase: 'pull', target: this.name, detail: image });
    await this.must(['pull', image], `pulling ${image}`);
    const id = await this.imageId(image);
    if (!id) throw new HostError(`${this.name}: pulled ${image} but the CLI cannot inspect it; gantry retries.`, true);
    return id;
  }

  async remove(container: string): Promise<void> {
    const stop = await this.run(['stop', '--time', '10', container]);
    if (stop.code !== 0 && !/no such (object|container)|no container with name/i.test(stop.stderr + stop.stdout)) {
      await this.must(['stop', '--time', '10', container], `stopping ${container}`);
    }
    const rm = await this.run(['rm', '--force', container]);
    if (rm.code !== 0 && !/no such (object|container)|no container with name/i.test(rm.stderr + rm.stdout)) {
      await this.must(['rm', '--force', container], `removing ${container}`);
    }
  }

  /** stop, rm, run; then wait until it runs steadily. */
  async replace(image: string, labels: Record<string, string>, startTimeoutMs: number): Promise<void> {
    const t = this.target;
    beat({ phase: 'replace', target: this.name, detail: `stopping ${t.container}` });
    await this.remove(t.container);
    const args = ['run', '--detach', '--name', t.container, '--restart', t.restart];
    for (const p of t.ports.map(parsePort)) args.push('--publish', `${p.hostIp ? `${p.hostIp}:` : ''}${p.hostPort}:${p.containerPort}/${p.protocol}`);
    if (t.envFile) args.push('--env-file', t.envFile);
    for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
    args.push(image);
    beat({ phase: 'replace', target: this.name, detail: `starting ${image}` });
    await this.must(args, `starting ${t.container} from ${image}`);

    const deadline = Date.now() + startTimeoutMs;
    let seenRunningSince: string | undefined;
    for (;;) {
      const c = await this.inspect(t.container);
      if (!c) throw new HostError(`${this.name}: ${t.container} vanished right after it was started; gantry retries.`, true);
      if (c.running && !c.restarting && c.restartCount === 0) {
        if (seenRunningSince === c.startedAt) return;
        seenRunningSince = c.startedAt;
      } else if ((!c.running && !c.restarting && c.status !== 'created') || c.restartCount > 0) {
        const logs = await this.run(['logs', '--tail', '20', t.container]);
        throw new HostError(`${this.name}: ${t.container} stopped right after starting (status ${c.status}, exit code ${c.exitCode}, ${c.restartCount} restarts) ` +
          `with ${image}. Its last output:\n${(logs.stdout + logs.stderr).trim().slice(-1500) || '(none)'}\nFix the image and release a new version.`, false);
      }
      if (Date.now() > deadline) throw new HostError(`${this.name}: ${t.container} was not running ${startTimeoutMs / 1000}s after it was started (status ${c.status}); gantry retries.`, true);
      beat({ phase: 'wait', target: this.name, detail: c.status });
      await pause(500);
    }
  }
}

export function createSshDeployer(deps: SshDeployDeps): Deployer<SshDeploy> {
  const startTimeoutMs = deps.startTimeoutMs ?? 60_000;

  async function withHost<T>(host: Host, target: SshDeploy, key: string, fn: (cli: RemoteCli) => Promise<T>): Promise<T> {
    const cli = await RemoteCli.connect(host, target, key, deps);
    try {
      return await fn(cli);
    } finally {
      cli.dispose();
    }
  }

  return {
    async deploy(req: DeployRequest & { target: SshDeploy }): Promise<DeployedTarget[]> {
      const { target } = req;
      const key = resolveSecret(target.privateKey, deps.env);
      const done: DeployedTarget[] = [];
      for (const host of target.hosts) {
        const name = sshTargetName(host, target.container);
        try {
          done.push(await withHost(host, target, key, async (cli) => {
            const imageId = await cli.pull(req.imageRef);
            const existing = await cli.inspect(target.container);
            const previousImage = previousImageOf(existing, req.release);
            if (existing && existing.imageId === imageId && existing.running) {
              return { target: name, previousImage, image: req.imageRef, changed: false };
            }
            await cli.replace(req.imageRef, containerLabels(req, req.imageRef, previousImage), startTimeoutMs);
            return { target: name, previousImage, image: req.imageRef, changed: true };
          }));
        } catch (err) {
          throw hostFailure(err, name, done, target, key);
        }
      }
      return done;
    },

    async restore(req: RestoreRequest<SshDeploy>): Promise<Restored> {
      const { target } = req;
      const host = target.hosts.find((h) => sshTargetName(h, target.container) === req.deployed.target);
      if (!host) {
        throw nonRetryable(GantryErrorType.RollbackFailed, `${req.deployed.target} is not among the hosts of the release config any more; ` +
          `restore ${req.deployed.previousImage ?? '(remove the container)'} there by hand.`);
      }
      const key = resolveSecret(target.privateKey, deps.env);
      const image = req.deployed.previousImage;
      try {
        return await withHost(host, target, key, async (cli) => {
          if (image === null) {
            beat({ phase: 'remove', target: req.deployed.target });
            await cli.remove(target.container);
            return { target: req.deployed.target, image: null };
          }
          const imageId = (await cli.imageId(image)) ?? (await cli.pull(image));
          const version = (await cli.imageLabels(imageId))[LABELS.version];
          const existing = await cli.inspect(target.container);
          if (!(existing && existing.imageId === imageId && existing.running)) {
            await cli.replace(image, rollbackLabels(req, image, version), startTimeoutMs);
          }
          return { target: req.deployed.target, image, ...(version ? { version } : {}) };
        });
      } catch (err) {
        if (err instanceof HostError) {
          throw err.retry ? retryable(err.message, { target: req.deployed.target }) : nonRetryable(err.type, err.message, { target: req.deployed.target });
        }
        throw err;
      }
    },
  };
}

/** The step's failure: what went wrong on which host, and which hosts had already changed. */
function hostFailure(err: unknown, failedHost: string, done: DeployedTarget[], target: SshDeploy, key: string): Error {
  const changed = done.filter((t) => t.changed).map((t) => t.target);
  const details = {
    failedHost,
    changedHosts: changed,
    targets: done,
    pendingHosts: target.hosts.map((h) => sshTargetName(h, target.container)).filter((n) => n !== failedHost && !done.some((d) => d.target === n)),
  };
  const tail = changed.length
    ? ` Hosts already changed (they run the new image): ${changed.join(', ')}.`
    : done.length ? ' No host had been changed.' : ' No host had been reached before it.';
  if (err instanceof HostError) {
    const message = redact(err.message, [key]) + tail;
    return err.retry ? retryable(message, details) : nonRetryable(err.type, message, details);
  }
  if (err instanceof Error && 'type' in err) return err; // already an ApplicationFailure (e.g. cancellation)
  return retryable(`${failedHost}: ${redact(String((err as Error)?.message ?? err), [key])}.${tail} Gantry retries.`, details);
}

