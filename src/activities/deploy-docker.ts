/**
 * Deploy target `kind: docker`: a container on a Docker-compatible engine the worker reaches through dockerode
 * (a local socket: Docker, or Podman's API). It swaps the container as deployer.ts describes, with engine API
 * calls: rename, create, stop the kept one, start, wait (polling with short backoff); on a failure to start,
 * the kept container gets its name back and is started again.
 */
import { readFileSync } from 'node:fs';
import type Docker from 'dockerode';
import type { DockerDeploy } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import {
  classifyEngineText,
  defaultEngine,
  engineAddress,
  engineErrorText,
  engineUnavailable,
  type EngineFactory,
  followStream,
  parseEnvFile,
  parsePort,
  statusCode,
  StreamError,
} from './docker';
import {
  containerLabels,
  type ContainerState,
  type Deployer,
  failedName,
  LABELS,
  newProgress,
  planSwap,
  previousName,
  type RecordedPrevious,
  recordedPrevious,
  type Restored,
  type RestoreRequest,
  rollbackLabels,
  servingBefore,
} from './deployer';
import { beat, cancellation, pause } from './heartbeat';
import type { DeployedTarget, DeployRequest } from './types';

export interface DockerDeployDeps {
  /** Environment for bare KEY lines in env files. */
  env: NodeJS.ProcessEnv;
  engine?: EngineFactory;
  /** How long a new container may take to be running (steadily). @default 60000 */
  startTimeoutMs?: number;
  /** How long a started container must keep running, unrestarted, to count as started. @default 300 */
  settleMs?: number;
}

interface Inspected extends ContainerState {
  status: string;
  exitCode: number;
  startedAt: string;
  restarting: boolean;
  restartCount: number;
}

/** Why a container did not come up: it could not start, it stopped right away, or it took too long. */
class StartProblem extends Error {
  constructor(readonly kind: 'start' | 'crash' | 'slow', message: string) {
    super(message);
  }
}

export function createDockerDeployer(deps: DockerDeployDeps): Deployer<DockerDeploy> {
  const engine = deps.engine ?? defaultEngine;
  const startTimeoutMs = deps.startTimeoutMs ?? 60_000;
  const settleMs = deps.settleMs ?? 300;

  async function inspect(docker: Docker, target: DockerDeploy, container: string): Promise<Inspected | null> {
    try {
      const c = await docker.getContainer(container).inspect();
      return {
        id: c.Id, image: c.Config.Image, imageId: c.Image, running: c.State.Running, labels: c.Config.Labels ?? {},
        status: c.State.Status, exitCode: c.State.ExitCode, startedAt: c.State.StartedAt, restarting: c.State.Restarting, restartCount: c.RestartCount ?? 0,
      };
    } catch (err) {
      if (statusCode(err) === 404) return null;
      throw engineUnavailable(`inspect container ${container}`, target.socketPath, err);
    }
  }

  /** An engine call that must work; a refusal is the engine's answer, anything else means it did not answer. */
  async function call<T>(target: DockerDeploy, what: string, fn: () => Promise<T>, ignore: number[] = []): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (ignore.includes(statusCode(err) ?? -1)) return undefined;
      if (statusCode(err) === undefined) throw engineUnavailable(what, target.socketPath, err);
      throw retryable(`Could not ${what} on ${engineAddress(target.socketPath)}: ${engineErrorText(err)}. Gantry retries; if it persists, look at the engine's containers ` +
        `(\`docker ps -a --filter name=${target.container}\`).`, { engine: engineAddress(target.socketPath) });
    }
  }

  const remove = (docker: Docker, target: DockerDeploy, container: string) =>
    call(target, `remove container ${container}`, () => docker.getContainer(container).remove({ force: true }), [404]);
  const rename = (docker: Docker, target: DockerDeploy, from: string, to: string) =>
    call(target, `rename container ${from} to ${to}`, () => docker.getContainer(from).rename({ name: to }));
  const stop = (docker: Docker, target: DockerDeploy, container: string) =>
    call(target, `stop container ${container}`, () => docker.getContainer(container).stop({ t: 10 }), [304, 404]);
  /** A kept container must not come back by itself (an engine restart with `restart: always`); best effort, not every engine can. */
  const setRestart = (docker: Docker, container: string, policy: string) =>
    docker.getContainer(container).update({ RestartPolicy: { Name: policy === 'no' ? '' : policy } }).catch(() => undefined);

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

  /** The local copy of an image when the engine has it (a digest never changes), else null. */
  async function localImage(docker: Docker, target: DockerDeploy, image: string): Promise<{ id: string; labels: Record<string, string> } | null> {
    try {
      const i = await docker.getImage(image).inspect();
      return { id: i.Id, labels: i.Config?.Labels ?? {} };
    } catch (err) {
      if (statusCode(err) === 404) return null;
      throw engineUnavailable(`inspect image ${image}`, target.socketPath, err);
    }
  }

  function createOptions(target: DockerDeploy, image: string, labels: Record<string, string>, name: string): Docker.ContainerCreateOptions {
    let env: string[] = [];
    if (target.envFile) {
      try {
        env = parseEnvFile(readFileSync(target.envFile, 'utf8'), deps.env);
      } catch (err) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `The env file ${target.envFile} for ${name} cannot be read on the worker ` +
          `(${(err as NodeJS.ErrnoException).code ?? String(err)}). For docker targets the worker reads it; create it there or fix envFile in the release config.`);
      }
    }
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const p of target.ports.map(parsePort)) {
      const key = `${p.containerPort}/${p.protocol}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort });
    }
    return {
      name: target.container,
      Image: image,
      Env: env,
      Labels: labels,
      ExposedPorts: exposed,
      HostConfig: { PortBindings: bindings, RestartPolicy: { Name: target.restart === 'no' ? '' : target.restart } },
    };
  }

  async function create(docker: Docker, target: DockerDeploy, options: Docker.ContainerCreateOptions): Promise<void> {
    try {
      await docker.createContainer(options);
    } catch (err) {
      if (statusCode(err) === undefined || classifyEngineText(engineErrorText(err)) === 'unreachable') throw engineUnavailable(`create ${target.container}`, target.socketPath, err);
      throw new StartProblem('start', `the engine could not create it: ${engineErrorText(err)}`);
    }
  }

  /**
   * Start `container` and wait until it runs steadily: running, not restarting, no restarts and the same start for
   * settleMs (from the start of the first look when that look sees it so, since it then has run since before the
   * look, else from the end of the look that first saw it so; to the start of the look that proves it). Looks again
   * after 25 ms, doubling to 400 ms, never sleeping past the end of the settle window.
   */
  async function startAndWait(docker: Docker, target: DockerDeploy, container: string, name: string): Promise<void> {
    try {
      await docker.getContainer(container).start();
    } catch (err) {
      if (statusCode(err) === 304) {
        // already running
      } else if (statusCode(err) === undefined || classifyEngineText(engineErrorText(err)) === 'unreachable') {
        throw engineUnavailable(`start ${container}`, target.socketPath, err);
      } else {
        throw new StartProblem('start', `the engine could not start it: ${engineErrorText(err)}`);
      }
    }
    const deadline = Date.now() + startTimeoutMs;
    let since: { startedAt: string; at: number } | undefined;
    let delay = 25;
    for (let first = true; ; first = false) {
      const before = Date.now();
      const st = await inspect(docker, target, container);
      if (!st) throw new StartProblem('crash', 'it vanished right after it was started');
      let nap = delay;
      if (st.running && !st.restarting && st.restartCount === 0) {
        if (since?.startedAt !== st.startedAt) since = { startedAt: st.startedAt, at: first ? before : Date.now() };
        else if (before - since.at >= settleMs) return;
        nap = Math.min(nap, settleMs - Math.max(0, before - since.at));
      } else if ((!st.running && !st.restarting && st.status !== 'created' && st.status !== 'configured') || st.restartCount > 0) {
        const logs = await containerLogs(docker.getContainer(container));
        throw new StartProblem('crash', `it stopped right after starting (status ${st.status}, exit code ${st.exitCode}, ${st.restartCount} restarts). ` +
          `Its last output:\n${logs || '(none)'}\n`);
      }
      if (Date.now() > deadline) throw new StartProblem('slow', `it was not running ${startTimeoutMs / 1000}s after it was started (status ${st.status})`);
      beat({ phase: 'wait', target: name, detail: st.status });
      await pause(nap);
      delay = Math.min(delay * 2, 400);
    }
  }

  /** Give the kept container its name back and start it; what happened, in words for the failure message. */
  async function putBack(docker: Docker, target: DockerDeploy, kept: RecordedPrevious, name: string): Promise<string> {
    const keptName = previousName(target.container);
    try {
      await remove(docker, target, target.container);
      await rename(docker, target, keptName, target.container);
      await setRestart(docker, target.container, target.restart);
      await startAndWait(docker, target, target.container, name);
      return `The previous container (${kept.image}) was started again and serves as ${target.container}.`;
    } catch (err) {
      return `The previous container (${kept.image}) could not be started again (${(err as Error).message}). Start it by hand: ` +
        `\`docker rename ${keptName} ${target.container}; docker start ${target.container}\` (or \`docker start ${target.container}\` if it was already renamed).`;
    }
  }

  return {
    async deploy(req: DeployRequest & { target: DockerDeploy }): Promise<DeployedTarget[]> {
      const { target } = req;
      const name = `docker:${target.container}`;
      const docker = engine(target.socketPath);
      const keptName = previousName(target.container);
      const progress = newProgress();
      const recorded = recordedPrevious(name);

      // What runs, recorded before anything is touched: a retry on another worker reads it from the heartbeat.
      const [main, prev] = await Promise.all([inspect(docker, target, target.container), inspect(docker, target, keptName)]);
      progress.previous[name] = recorded !== undefined ? recorded : servingBefore(main, prev, req.release);
      beat({ ...progress, phase: 'pull', target: name, detail: req.imageRef });
      const imageId = await pull(docker, target, req.imageRef, name);
      const plan = planSwap(main, prev, imageId, req.release, recorded);
      if (plan.kind === 'unchanged') return [{ target: name, previousImage: plan.previousImage, image: req.imageRef, changed: false }];

      // Read the env file before anything changes: a missing one must not leave the target half swapped.
      const labels = containerLabels(req, req.imageRef, plan.previousImage, { [LABELS.previousContainer]: plan.kept?.id ?? '' });
      const options = createOptions(target, req.imageRef, labels, name);
      const step = (detail: string) => beat({ ...progress, phase: 'swap', target: name, detail });
      if (plan.removeMain) {
        step(`removing ${target.container} left by an earlier attempt`);
        await remove(docker, target, target.container);
      }
      if (plan.keepMain) {
        if (plan.removeStalePrevious) await remove(docker, target, keptName);
        step(`keeping ${target.container} as ${keptName}`);
        await rename(docker, target, target.container, keptName);
      }
      try {
        step(`creating ${target.container} from ${req.imageRef}`);
        await create(docker, target, options);
        if (plan.kept) {
          await setRestart(docker, keptName, 'no');
          await stop(docker, target, keptName);
        }
        step(`starting ${target.container}`);
        await startAndWait(docker, target, target.container, name);
      } catch (err) {
        if (!(err instanceof StartProblem)) throw err;
        const logsNote = err.kind === 'crash' ? '' : ' Check the ports (another process may hold one, or the engine may not bind it) and the env file in the release config.';
        const back = plan.kept ? await putBack(docker, target, plan.kept, name) : await remove(docker, target, target.container).then(() => 'Nothing ran there before; the new container was removed.');
        const what = `${target.container} did not start from ${req.imageRef} on ${engineAddress(target.socketPath)}: ${err.message}`;
        if (err.kind === 'slow') throw retryable(`${what}. ${back} Gantry retries.`, { target: name, image: req.imageRef });
        throw nonRetryable(GantryErrorType.DeployFailed, `${what}.${logsNote} ${back} Fix the image or the release config, then release again.`,
          { target: name, image: req.imageRef, previousImage: plan.previousImage });
      }
      return [{ target: name, previousImage: plan.previousImage, image: req.imageRef, changed: true }];
    },

    async restore(req: RestoreRequest<DockerDeploy>): Promise<Restored> {
      const { target } = req;
      const name = `docker:${target.container}`;
      const docker = engine(target.socketPath);
      const image = req.deployed.previousImage;
      if (image === null) {
        beat({ phase: 'remove', target: name });
        await remove(docker, target, target.container);
        return { target: name, image: null, via: 'removed' };
      }
      const keptName = previousName(target.container);
      const failed = failedName(target.container);
      const [main, prev, local] = await Promise.all([inspect(docker, target, target.container), inspect(docker, target, keptName), localImage(docker, target, image)]);
      const isPrevious = (c: Inspected | null) => c !== null && (c.image === image || (local !== null && c.imageId === local.id));
      const restored = (via: Restored['via'], labels: Record<string, string>) => {
        const version = local?.labels[LABELS.version] || labels[LABELS.version];
        return { target: name, image, ...(version ? { version } : {}), via };
      };
      if (main && isPrevious(main) && main.running) return restored('running', main.labels);

      // Everything that can fail without touching a container first: without a kept container, the pull.
      let via: Restored['via'] = 'kept';
      let labels = main && isPrevious(main) ? main.labels : prev && isPrevious(prev) ? prev.labels : {};
      let options: Docker.ContainerCreateOptions | undefined;
      if (!isPrevious(main) && !isPrevious(prev)) {
        via = 'created';
        beat({ phase: 'restore', target: name, detail: `no kept container: pulling ${image}` });
        const id = local?.id ?? (await pull(docker, target, image, name));
        const version = local?.labels[LABELS.version] ?? (await localImage(docker, target, id))?.labels[LABELS.version];
        labels = rollbackLabels(req, image, version);
        options = createOptions(target, image, labels, name);
      }
      // The failed version steps aside under another name (still running until the previous one starts).
      if (main && !isPrevious(main)) {
        await remove(docker, target, failed);
        await rename(docker, target, target.container, failed);
      }
      if (!isPrevious(main)) {
        if (options) {
          try {
            await create(docker, target, options);
          } catch (err) {
            if (main) await rename(docker, target, failed, target.container);
            throw err instanceof StartProblem ? nonRetryable(GantryErrorType.DeployFailed, `${target.container} from ${image}: ${err.message}.`) : err;
          }
        } else {
          beat({ phase: 'restore', target: name, detail: `starting the kept container ${keptName}` });
          await rename(docker, target, keptName, target.container);
        }
      }
      await setRestart(docker, target.container, target.restart);
      await stop(docker, target, failed);
      try {
        await startAndWait(docker, target, target.container, name);
      } catch (err) {
        if (!(err instanceof StartProblem)) throw err;
        throw nonRetryable(GantryErrorType.DeployFailed, `${target.container} did not start again from ${image}: ${err.message}. The failed version's container is ` +
          `kept, stopped, as ${failed}.`);
      }
      await remove(docker, target, failed);
      return restored(via, labels);
    },
  };
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
