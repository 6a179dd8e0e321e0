/**
 * Build step, `build.kind: docker`: export the tagged tree from the repository, build it with the engine through
 * dockerode, push `{registry}/{image}:v{version}` and record the manifest digest the registry serves.
 *
 * Idempotent across retries: before building, the registry is asked for that tag; an image labelled with this
 * release's commit is reused (`built: false`), one built from another commit is a non-retryable conflict
 * (a version is immutable). Heartbeats carry the phase and the build step being run.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { BuildConfig } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import {
  buildLogTail,
  classifyEngineText,
  defaultEngine,
  engineAddress,
  engineErrorText,
  engineUnavailable,
  type EngineFactory,
  followStream,
  getRegistryImageLabels,
  getRegistryManifest,
  type StreamEvent,
  StreamError,
} from './docker';
import { Git, gitFailure, withTempDir } from './git';
import { beat, cancellation, currentAttempt, heartbeating, withHeartbeat } from './heartbeat';
import { describeSecretRef, resolveSecret } from './secrets';
import type { BuildRequest, BuildResult } from './types';

export const COMMIT_LABEL = 'gantry.commit';
export const VERSION_LABEL = 'gantry.version';

export interface BuildDockerDeps {
  /** Resolves `repo.token` references. */
  env: NodeJS.ProcessEnv;
  engine?: EngineFactory;
  /** Where build contexts are exported (a fresh temp dir per attempt). @default os.tmpdir() */
  workDir?: string;
}

export interface BuildProgress {
  phase: 'check-registry' | 'export' | 'build' | 'push' | 'verify';
  detail?: string;
}

export function createBuildDocker(deps: BuildDockerDeps): (req: BuildRequest) => Promise<BuildResult> {
  const engine = deps.engine ?? defaultEngine;

  return heartbeating(async function buildDocker(req: BuildRequest): Promise<BuildResult> {
    if (req.build.kind !== 'docker') {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `The docker build step was handed a ${req.build.kind} build; this is a gantry wiring bug, report it.`);
    }
    const build: Extract<BuildConfig, { kind: 'docker' }> = req.build;
    const attempt = currentAttempt();
    const signal = cancellation();
    const { registry, name } = req.image;
    const repository = `${registry}/${name}`;
    const tag = `v${req.release.version}`;
    const image = `${repository}:${tag}`;
    const progress = (p: BuildProgress) => beat(p);
    const result = (digest: string, built: boolean): BuildResult => ({ attempt, image, digest, imageRef: `${repository}@${digest}`, built });

    // 1. Already pushed (a retry after a crash, or a rerun)? Reuse it when it is this commit's image.
    progress({ phase: 'check-registry', detail: image });
    const existing = await getRegistryManifest(registry, name, tag, signal);
    if (existing && existing !== 'unauthorized') {
      const labels = await getRegistryImageLabels(registry, name, existing, signal);
      if (labels[COMMIT_LABEL] === req.commit) return result(existing.digest, false);
      throw nonRetryable(
        GantryErrorType.BuildFailed,
        `The registry already has ${image} (${existing.digest}), built from ${labels[COMMIT_LABEL] ? `commit ${labels[COMMIT_LABEL]}` : 'an unknown commit (no gantry.commit label)'}, ` +
          `not from the release commit ${req.commit}. A released version is immutable: release a new version, or delete that tag ` +
          'from the registry if the image was never deployed.',
        { image, digest: existing.digest, registryCommit: labels[COMMIT_LABEL] ?? null, commit: req.commit },
      );
    }

    // 2. Export the tagged tree.
    const docker = engine(build.socketPath);
    return withTempDir('build', async (dir) => {
      progress({ phase: 'export', detail: `${req.tag} from ${req.repo.url}` });
      const token = req.repo.token ? resolveSecret(req.repo.token, deps.env) : undefined;
      const git = new Git({ env: deps.env, ...(token ? { token, remote: req.repo.url } : {}) });
      const repoDir = path.join(dir, 'repo');
      const tokenRef = req.repo.token ? describeSecretRef(req.repo.token) : undefined;
      try {
        await withHeartbeat(() => ({ phase: 'export', detail: `fetching ${req.tag}` } satisfies BuildProgress), () => git.fetchTag(req.repo.url, req.tag, repoDir));
      } catch (err) {
        throw gitFailure(err, `fetch tag ${req.tag} from`, req.repo.url, tokenRef);
      }
      const tagged = (await git.run(['rev-parse', `refs/tags/${req.tag}^{commit}`], repoDir)).trim();
      if (tagged !== req.commit) {
        throw nonRetryable(GantryErrorType.TagConflict,
          `Tag ${req.tag} in ${req.repo.url} points at ${tagged}, not at the release commit ${req.commit}; the tag moved after the tag step. ` +
          'Find out who moved it, then release a new version.', { tag: req.tag, tagged, commit: req.commit });
      }
      const context = path.posix.normalize(build.context).replace(/^\.\/?/, '').replace(/\/$/, '');
      const dockerfilePath = context ? `${context}/${build.dockerfile}` : build.dockerfile;
      try {
        await git.run(['cat-file', '-e', `refs/tags/${req.tag}:${path.posix.normalize(dockerfilePath)}`], repoDir);
      } catch {
        throw nonRetryable(GantryErrorType.BuildFailed,
          `No ${dockerfilePath} in ${req.tag} (commit ${req.commit}). Set build.dockerfile and build.context in the release config to where the ` +
          'Dockerfile is in the repository, or add it and release a new version.', { dockerfile: dockerfilePath });
      }
      const tarFile = path.join(dir, 'context.tar');
      await git.run(['archive', '--format=tar', '-o', tarFile, context ? `refs/tags/${req.tag}:${context}` : `refs/tags/${req.tag}`], repoDir);

      // 3. Build.
      progress({ phase: 'build', detail: 'starting' });
      let buildStream: NodeJS.ReadableStream;
      try {
        buildStream = await docker.buildImage(createReadStream(tarFile), {
          t: image,
          dockerfile: build.dockerfile,
          buildargs: build.args,
          labels: { [COMMIT_LABEL]: req.commit, [VERSION_LABEL]: req.release.version },
          rm: true,
          forcerm: true,
        });
      } catch (err) {
        throw engineFailure(err, `build ${image}`, build.socketPath);
      }
      try {
        await followStream(docker, buildStream, (e: StreamEvent) => {
          const line = e.stream?.trim();
          if (line && /^(STEP|Step) \d+\/\d+/.test(line)) progress({ phase: 'build', detail: line.slice(0, 200) });
        }, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        if (err instanceof StreamError) {
          const log = buildLogTail(err.events);
          if (classifyEngineText(err.message) === 'unreachable') {
            throw retryable(`Building ${image} failed because something it needed did not answer: ${err.message}. Gantry retries.`, { log });
          }
          throw nonRetryable(GantryErrorType.BuildFailed,
            `Building ${image} from ${req.tag} failed: ${err.message}. Fix the Dockerfile (${dockerfilePath}) or the build args, then release a new version. ` +
            `Last build output:\n${log}`, { image, commit: req.commit, log });
        }
        throw engineFailure(err, `build ${image}`, build.socketPath);
      }

      // 4. Push, and take the digest the registry serves.
      progress({ phase: 'push', detail: image });
      let pushedDigest: string | undefined;
      try {
        const pushStream = await docker.getImage(repository).push({ tag });
        const events = await followStream(docker, pushStream, (e) => {
          if (e.status) progress({ phase: 'push', detail: e.status.slice(0, 200) });
        }, signal);
        for (const e of events) {
          pushedDigest = e.aux?.Digest ?? /digest: (sha256:[a-f0-9]{64})/.exec(e.status ?? '')?.[1] ?? pushedDigest;
        }
      } catch (err) {
        if (signal.aborted) throw err;
        const text = err instanceof StreamError ? err.message : engineErrorText(err);
        if (classifyEngineText(text) === 'auth') {
          throw nonRetryable(GantryErrorType.ConfigInvalid,
            `The registry ${registry} refused the push of ${image} (${text}). Log the engine on the worker in to the registry ` +
            `(\`docker login ${registry}\`) or fix image.registry in the release config.`, { image });
        }
        throw retryable(`Pushing ${image} failed: ${text}. Gantry retries (the built image is kept); if it persists, check the registry ` +
          `${registry} is running and reachable from the engine at ${engineAddress(build.socketPath)}.`, { image });
      }

      progress({ phase: 'verify', detail: image });
      const pushed = await getRegistryManifest(registry, name, tag, signal);
      const digest = pushed && pushed !== 'unauthorized' ? pushed.digest : pushedDigest;
      if (!digest) {
        throw retryable(`Pushed ${image} but neither the push nor the registry ${registry} reported its digest; gantry retries (the retry reuses the pushed image).`);
      }
      return result(digest, true);
    }, deps.workDir);
  });
}

function engineFailure(err: unknown, what: string, socketPath: string | undefined): Error {
  const text = engineErrorText(err);
  if (classifyEngineText(text) === 'unreachable' || (statusOf(err) ?? 0) >= 500) return engineUnavailable(what, socketPath, err);
  return nonRetryable(GantryErrorType.BuildFailed, `Could not ${what}: the engine at ${engineAddress(socketPath)} refused it (${text}). ` +
    'Fix the build settings in the release config (build.dockerfile, build.args) and release again.');
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}
