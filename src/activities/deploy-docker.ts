/**
 * Deploy target `kind: docker`: a container on a Docker-compatible engine the worker reaches through dockerode
 * (a local socket: Docker, or Podman's API). See deploy.ts for the contract and the labels.
 */
import { readFileSync } from 'node:fs';
import type Docker from 'dockerode';
import type { DockerDeploy } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import {
  classifyEngineText,
  containerLabels,
  type Deployer,
  defaultEngine,
  engineAddress,
  engineErrorText,
  engineUnavailable,
  type EngineFactory,
  followStream,
  LABELS,
  parseEnvFile,
  parsePort,
  previousImageOf,
  type Restored,
  type RestoreRequest,
  rollbackLabels,
  statusCode,
  StreamError,
} from './docker';
import { beat, cancellation, pause } from './heartbeat';
import type { DeployedTarget, DeployRequest } from './types';

export interface DockerDeployDeps {
  /** Environment for bare KEY lines in env files. */
  env: NodeJS.ProcessEnv;
  engine?: EngineFactory;
  /** How long a new container may take to be running (steadily). @default 60000 */
  startTimeoutMs?: number;
}

interface Existing {
  id: string;
  /** The image reference the container was created with. */
  image: string;
  imageId: string;
  running: boolean;
  labels: Record<string, string>;
}

export function createDockerDeployer(deps: DockerDeployDeps): Deployer<DockerDeploy> {
  const engine = deps.engine ?? defaultEngine;
  const startTimeoutMs = deps.startTimeoutMs ?? 60_000;

  async function inspectContainer(docker: Docker, target: DockerDeploy): Promise<Existing | null> {
    try {
      const c = await docker.getContainer(target.container).inspect();
      return { id: c.Id, image: c.Config.Image, imageId: c.Image, running: c.State.Running, labels: c.Config.Labels ?? {} };
    } catch (err) {
      if (statusCode(err) === 404) return null;
      throw engineUnavailable(`inspect container ${target.container}`, target.socketPath, err);
    }
  }

  async function pull(docker: Docker, target: DockerDeploy, imageRef: string, name: string): Promise<string> {
    const signal = cancellation();
    try {
      const stream = await docker.pull(imageRef);
      await followStream(docker, stream, (e) => {
        if (e.status) beat({ phase: 'pull', target: name, detail: `${e.status}${e.id ? ` ${e.id}` : ''}` });
      }, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      // The engine itself did not answer (no socket, refused): not the registry's fault.
      if (!(err instanceof StreamError) && statusCode(err) === undefined) throw engineUnavailable(`pull ${imageRef}`, target.socketPath, err);
      const text = err instanceof StreamError ? err.message : engineErrorText(err);
      const kind = classifyEngineText(text);
      if (kind === 'not-found') {
        throw nonRetryable(GantryErrorType.DeployFailed, `The registry has no ${imageRef} (${text}). The build step's image is gone from the registry: ` +
          'rebuild by releasing a new version, or restore the image in the registry.', { target: name, image: imageRef });
      }
      if (kind === 'auth') {
        throw nonRetryable(GantryErrorType.DeployFailed, `The registry refused ${engineAddress(target.socketPath)} access to ${imageRef} (${text}). ` +
          'Log the engine in to the registry (`docker login`) and retry the release.', { target: name, image: imageRef });
      }
      throw retryable(`Pulling ${imageRef} on ${engineAddress(target.socketPath)} failed: ${text}. Gantry retries; if it persists, check the registry is ` +
        'running and reachable from the engine.', { target: name, image: imageRef });
    }
    try {
      return (await docker.getImage(imageRef).inspect()).Id;
    } catch (err) {
      throw engineUnavailable(`inspect image ${imageRef}`, target.socketPath, err);
    }
  }

  /** Stop and remove the named container, create it anew with `image`, start it and wait until it runs. */
  async function replace(docker: Docker, target: DockerDeploy, image: string, labels: Record<string, string>, name: string): Promise<void> {
    const existing = docker.getContainer(target.container);
    beat({ phase: 'replace', target: name, detail: 'removing the old container' });
    try {
      await existing.stop({ t: 10 });
    } catch (err) {
      if (statusCode(err) !== 304 && statusCode(err) !== 404) throw engineUnavailable(`stop container ${target.container}`, target.socketPath, err);
    }
    try {
      await existing.remove({ force: true });
    } catch (err) {
      if (statusCode(err) !== 404) throw engineUnavailable(`remove container ${target.container}`, target.socketPath, err);
    }

    let env: string[] = [];
    if (target.envFile) {
      try {
        env = parseEnvFile(readFileSync(target.envFile, 'utf8'), deps.env);
      } catch (err) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `The env file ${target.envFile} for ${name} cannot be read on the worker ` +
          `(${(err as NodeJS.ErrnoException).code ?? String(err)}). For docker targets the worker reads it; create it there or fix envFile in the release config.`);
      }
    }
    const ports = target.ports.map(parsePort);
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const p of ports) {
      const key = `${p.containerPort}/${p.protocol}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort });
    }
    beat({ phase: 'replace', target: name, detail: `starting ${image}` });
    let container: Docker.Container;
    try {
      container = await docker.createContainer({
        name: target.container,
        Image: image,
        Env: env,
        Labels: labels,
        ExposedPorts: exposed,
        HostConfig: { PortBindings: bindings, RestartPolicy: { Name: target.restart === 'no' ? '' : target.restart } },
      });
      await container.start();
    } catch (err) {
      const text = engineErrorText(err);
      if (classifyEngineText(text) === 'unreachable') throw engineUnavailable(`start ${target.container}`, target.socketPath, err);
      await docker.getContainer(target.container).remove({ force: true }).catch(() => undefined);
      throw nonRetryable(GantryErrorType.DeployFailed, `The engine at ${engineAddress(target.socketPath)} could not start ${target.container} from ${image}: ${text}. ` +
        'Check the ports (another process may hold one) and the env file in the release config, then retry the release.', { target: name, image });
    }
    await waitRunning(container, target, name, image);
  }

  /** Running now and still running (same start, no restarts) a moment later. */
  async function waitRunning(container: Docker.Container, target: DockerDeploy, name: string, image: string): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    let seenRunningSince: string | undefined;
    for (;;) {
      const info = await container.inspect().catch((err: unknown) => {
        throw engineUnavailable(`inspect ${target.container}`, target.socketPath, err);
      });
      const st = info.State;
      if (st.Running && !st.Restarting && info.RestartCount === 0) {
        if (seenRunningSince === st.StartedAt) return;
        seenRunningSince = st.StartedAt;
      } else if ((!st.Running && !st.Restarting && st.Status !== 'created' && st.Status !== 'configured') || info.RestartCount > 0) {
        const logs = await containerLogs(container);
        throw nonRetryable(GantryErrorType.DeployFailed, `${target.container} stopped right after starting (status ${st.Status}, exit code ${st.ExitCode}, ` +
          `${info.RestartCount} restarts) with ${image}. Its last output:\n${logs || '(none)'}\nFix the image and release a new version; the rollback step ` +
          'or a redeploy of the previous image restores service.', { target: name, image, exitCode: st.ExitCode });
      }
      if (Date.now() > deadline) {
        throw retryable(`${target.container} was not running ${startTimeoutMs / 1000}s after it was started (status ${st.Status}); gantry retries.`, { target: name });
      }
      beat({ phase: 'wait', target: name, detail: st.Status });
      await pause(500);
    }
  }

  return {
    async deploy(req: DeployRequest & { target: DockerDeploy }): Promise<DeployedTarget[]> {
      const { target } = req;
      const name = `docker:${target.container}`;
      const docker = engine(target.socketPath);
      beat({ phase: 'pull', target: name, detail: req.imageRef });
      const imageId = await pull(docker, target, req.imageRef, name);
      const existing = await inspectContainer(docker, target);
      const previousImage = previousImageOf(existing, req.release);
      if (existing && existing.imageId === imageId && existing.running) {
        return [{ target: name, previousImage, image: req.imageRef, changed: false }];
      }
      await replace(docker, target, req.imageRef, containerLabels(req, req.imageRef, previousImage), name);
      return [{ target: name, previousImage, image: req.imageRef, changed: true }];
    },

    async restore(req: RestoreRequest<DockerDeploy>): Promise<Restored> {
      const { target } = req;
      const name = `docker:${target.container}`;
      const docker = engine(target.socketPath);
      const image = req.deployed.previousImage;
      if (image === null) {
        beat({ phase: 'remove', target: name });
        try {
          await docker.getContainer(target.container).remove({ force: true });
        } catch (err) {
          if (statusCode(err) !== 404) throw engineUnavailable(`remove ${target.container}`, target.socketPath, err);
        }
        return { target: name, image: null };
      }
      const imageId = await ensureImage(docker, target, image, name);
      const version = (await docker.getImage(imageId).inspect().catch(() => undefined))?.Config?.Labels?.[LABELS.version];
      const existing = await inspectContainer(docker, target);
      if (!(existing && existing.imageId === imageId && existing.running)) {
        await replace(docker, target, image, rollbackLabels(req, image, version), name);
      }
      return { target: name, image, ...(version ? { version } : {}) };
    },
  };

  /** Use the local copy of a previous image when the engine still has it; pull it otherwise. */
  async function ensureImage(docker: Docker, target: DockerDeploy, image: string, name: string): Promise<string> {
    try {
      return (await docker.getImage(image).inspect()).Id;
    } catch (err) {
      if (statusCode(err) !== 404) throw engineUnavailable(`inspect image ${image}`, target.socketPath, err);
    }
    return pull(docker, target, image, name);
  }
}

async function containerLogs(container: Docker.Container): Promise<string> {
  try {
    const buf = await container.logs({ stdout: true, stderr: true, tail: 20, follow: false });
    // Multiplexed frames: 8-byte headers before each chunk; keep printable text.
    return buf.toString('utf8').replace(/[\x00-\x08\x0e-\x1f]/g, '').trim().slice(-1500);
  } catch {
    return '';
  }
}
