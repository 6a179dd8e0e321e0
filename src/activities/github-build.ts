/**
 * The build step for `build.kind: github-actions`: the tag push started a GitHub Actions run; find it (by
 * workflow file, head SHA and tag), poll it to completion with heartbeats and backoff, and read the image
 * digest from where the config says (an artifact of the run holding a JSON manifest, or the registry).
 *
 * A retry after a lost worker resumes the same run from the heartbeat details. A run that does not succeed
 * fails the step non-retryably with the run's URL; GitHub being unavailable is retryable.
 */
import { CancelledFailure } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import type { BuildConfig, GithubConfig } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { BuildRequest, BuildResult } from './types';
import { type GithubClient, type GithubClientTuning, githubClientFor, repoName } from '../github/client';
import { githubFailure, isGithubHttpError, isRateLimited, rateLimitWaitMs } from '../github/errors';
import { ArtifactContentError, digestFromArtifactZip } from '../github/artifact';
import { RegistryError, registryDigest } from '../github/registry';
import { activityContext, beat, cancellation, currentAttempt, HEARTBEAT_EVERY_MS, heartbeating, pause } from './heartbeat';

type ActionsBuild = Extract<BuildConfig, { kind: 'github-actions' }>;

export interface GithubBuildDeps {
  /** Where `{ env: NAME }` token references are resolved. */
  env: NodeJS.ProcessEnv;
  tuning?: Partial<GithubClientTuning>;
  /** How long the tag push may take to start a run before the step gives up. @default 600000 (10 minutes) */
  runAppearTimeoutMs?: number;
  /** Polling starts at `build.pollInterval` and backs off (×1.5) up to this. @default 4 × pollInterval */
  maxPollIntervalMs?: number;
  /** Longest silence between heartbeats while waiting. @default HEARTBEAT_EVERY_MS (2000) */
  heartbeatEveryMs?: number;
  /** Longest wait for a GitHub rate limit to lift before the step fails (retryably). @default 900000 */
  maxRateLimitPauseMs?: number;
}

/** What the step heartbeats; a retry resumes from `runId`. */
export interface BuildProgress {
  phase: 'waiting for run' | 'polling run' | 'reading digest';
  runId?: number;
  runUrl?: string;
  status?: string | null;
}

interface Run {
  id: number;
  html_url: string;
  status: string | null;
  conclusion: string | null;
  head_branch: string | null;
  head_sha: string;
  event: string;
  run_number: number;
  run_attempt?: number;
}

const workflowPath = (file: string) => (file.includes('/') ? file : `.github/workflows/${file}`);

export function createGithubActionsBuild(deps: GithubBuildDeps) {
  const heartbeatEveryMs = deps.heartbeatEveryMs ?? HEARTBEAT_EVERY_MS;

  /** Sleep `ms`, heartbeating at least every `heartbeatEveryMs`; ends early when the activity is cancelled. */
  async function wait(ms: number, progress: BuildProgress): Promise<void> {
    let left = ms;
    while (left > 0) {
      beat({ ...progress });
      const step = Math.min(left, heartbeatEveryMs);
      await pause(step);
      left -= step;
    }
    beat({ ...progress });
  }

  return heartbeating(async function build(req: BuildRequest): Promise<BuildResult> {
    if (req.build.kind !== 'github-actions') {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `The GitHub Actions build was asked to run a "${req.build.kind}" build; set build.kind: github-actions or use the ${req.build.kind} build.`);
    }
    if (!req.github) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, 'build.kind github-actions needs a github: section (owner, repo, token) in the service config; add it and start the release again.');
    }
    const github = req.github;
    const cfg = req.build;
    const pollMs = msToNumber(cfg.pollInterval);
    const maxPollMs = deps.maxPollIntervalMs ?? pollMs * 4;
    const gh = await githubClientFor(github, deps.env, deps.tuning);
    const workflow = workflowPath(cfg.workflow);

    /** One GitHub call; rate limits wait (heartbeating) and try again, anything else is classified. */
    async function call<T>(doing: string, progress: BuildProgress, fn: () => Promise<T>, on404?: () => Error): Promise<T> {
      let waitedMs = 0;
      for (;;) {
        try {
          return await fn();
        } catch (err) {
          if (cancellation().aborted) throw new CancelledFailure(`The build step was cancelled while ${doing}`);
          if (isRateLimited(err) && isGithubHttpError(err)) {
            const ms = rateLimitWaitMs(err);
            if (waitedMs + ms <= (deps.maxRateLimitPauseMs ?? 900_000)) {
              activityContext()?.log.warn(`GitHub rate limit while ${doing}; waiting ${Math.ceil(ms / 1000)}s`);
              waitedMs += ms;
              await wait(ms, progress);
              continue;
            }
          }
          if (on404 && isGithubHttpError(err) && err.status === 404) throw on404();
          throw githubFailure(err, github, doing);
        }
      }
    }

    const progress: BuildProgress = { phase: 'waiting for run' };
    const resumed = (activityContext()?.info.heartbeatDetails as BuildProgress | undefined)?.runId;
    let run: Run = resumed
      ? await call(`reading workflow run ${resumed}`, progress, async () => (await gh.rest.actions.getWorkflowRun({ owner: github.owner, repo: github.repo, run_id: resumed })).data)
      : await findRun(gh, github, cfg, req, progress, call, wait, deps.runAppearTimeoutMs ?? 600_000, pollMs, maxPollMs);

    Object.assign(progress, { phase: 'polling run', runId: run.id, runUrl: run.html_url, status: run.status } satisfies BuildProgress);
    let interval = pollMs;
    while (run.status !== 'completed') {
      await wait(interval, progress);
      interval = Math.min(Math.round(interval * 1.5), Math.max(maxPollMs, pollMs));
      run = await call(
        `polling workflow run ${run.id}`,
        progress,
        async () => (await gh.rest.actions.getWorkflowRun({ owner: github.owner, repo: github.repo, run_id: run.id })).data,
        () =>
          nonRetryable(
            GantryErrorType.BuildFailed,
            `GitHub Actions run ${run.id} (${run.html_url}) disappeared while gantry polled it (404): it was deleted, or the token lost access. ` +
              'Re-run the workflow for the tag and start the release again.',
          ),
      );
      progress.status = run.status;
    }

    const label = `GitHub Actions run #${run.run_number} of ${workflow} for ${req.tag}`;
    if (run.conclusion !== 'success') {
      throw nonRetryable(
        GantryErrorType.BuildFailed,
        `${label} concluded "${run.conclusion ?? 'unknown'}": ${run.html_url}. Nothing was deployed. Open the run to see why; ` +
          'after fixing the cause, re-run it on GitHub (or push a fix and release a new version), then start the release again.',
        { ciRunId: run.id, ciRunUrl: run.html_url, conclusion: run.conclusion },
      );
    }

    progress.phase = 'reading digest';
    beat({ ...progress });
    const image = `${req.image.registry}/${req.image.name}:v${req.release.version}`;
    const digest = 'artifact' in cfg.digestFrom
      ? await artifactDigest(gh, github, cfg.digestFrom, run, label, progress, call)
      : await registryImageDigest(req, image, run, label);

    return {
      attempt: currentAttempt(),
      image,
      digest,
      imageRef: `${req.image.registry}/${req.image.name}@${digest}`,
      built: true,
      ciRunId: run.id,
      ciRunUrl: run.html_url,
    };
  });
}

type Call = <T>(doing: string, progress: BuildProgress, fn: () => Promise<T>, on404?: () => Error) => Promise<T>;

/** The run the tag push triggered: the newest run of the workflow at this commit whose ref is the tag. */
async function findRun(
  gh: GithubClient,
  github: GithubConfig,
  cfg: ActionsBuild,
  req: BuildRequest,
  progress: BuildProgress,
  call: Call,
  wait: (ms: number, p: BuildProgress) => Promise<void>,
  appearTimeoutMs: number,
  pollMs: number,
  maxPollMs: number,
): Promise<Run> {
  const workflow = workflowPath(cfg.workflow);
  const missing = () =>
    nonRetryable(
      GantryErrorType.ConfigInvalid,
      `GitHub has no workflow "${cfg.workflow}" in ${repoName(github)} (404). Add ${workflow} to the repository's default branch ` +
        `(triggered on tag pushes, e.g. on: push: tags: ["v*"]) or set build.workflow to the file name of the workflow that builds the image; ` +
        'also check that the token can read Actions (actions: read). Then start the release again.',
      { workflow: cfg.workflow },
    );
  const started = Date.now();
  let interval = pollMs;
  let others: Run[] = [];
  for (;;) {
    const runs: Run[] = await call(
      `looking for the ${workflow} run of ${req.tag}`,
      progress,
      async () =>
        (
          await gh.rest.actions.listWorkflowRuns({
            owner: github.owner,
            repo: github.repo,
            workflow_id: cfg.workflow,
            head_sha: req.commit,
            per_page: 100,
          })
        ).data.workflow_runs,
      missing,
    );
    const atCommit = runs.filter((r) => r.head_sha === req.commit);
    const forTag = atCommit.filter((r) => r.head_branch === req.tag).sort((a, b) => b.id - a.id);
    if (forTag[0]) return forTag[0];
    others = atCommit;
    if (Date.now() - started >= appearTimeoutMs) break;
    await wait(interval, progress);
    interval = Math.min(Math.round(interval * 1.5), Math.max(maxPollMs, pollMs));
  }
  const seen = others.length
    ? ` It ran for this commit on other refs (${others.slice(0, 5).map((r) => `${r.head_branch ?? '?'} #${r.run_number} ${r.html_url}`).join('; ')}), not for the tag.`
    : '';
  throw nonRetryable(
    GantryErrorType.BuildFailed,
    `No run of ${workflow} for ${req.tag} (commit ${req.commit.slice(0, 12)}) started within ${Math.round(appearTimeoutMs / 1000)}s of the tag push.${seen} ` +
      `Make the workflow run on tag pushes (on: push: tags: ["v*"]) and check that Actions are enabled for ${repoName(github)}; ` +
      'then start the release again (the tag is kept, so the release reuses it).',
  );
}

async function artifactDigest(
  gh: GithubClient,
  github: GithubConfig,
  from: { artifact: string; file: string; field: string },
  run: Run,
  label: string,
  progress: BuildProgress,
  call: Call,
): Promise<string> {
  const where = `artifact "${from.artifact}" of ${label} (${run.html_url})`;
  const artifacts = await call(`listing the artifacts of run ${run.id}`, progress, async () =>
    gh.paginate(gh.rest.actions.listWorkflowRunArtifacts, { owner: github.owner, repo: github.repo, run_id: run.id, name: from.artifact, per_page: 100 }),
  );
  const named = artifacts.filter((a) => a.name === from.artifact).sort((a, b) => b.id - a.id);
  const artifact = named.find((a) => !a.expired);
  if (!artifact) {
    throw nonRetryable(
      GantryErrorType.BuildFailed,
      named.length
        ? `The ${where} has expired; re-run the workflow (or raise its retention-days), then start the release again.`
        : `${label} succeeded but has no artifact named "${from.artifact}" (${run.html_url}). Upload one from the workflow ` +
            `(actions/upload-artifact with name: ${from.artifact}) holding ${from.file} with {"${from.field}": "sha256:…"}, ` +
            'or set build.digestFrom to the artifact it does upload; then start the release again.',
    );
  }
  const zip = await call(
    `downloading the ${where}`,
    progress,
    async () => (await gh.rest.actions.downloadArtifact({ owner: github.owner, repo: github.repo, artifact_id: artifact.id, archive_format: 'zip' })).data,
  );
  if (!(zip instanceof ArrayBuffer)) {
    throw retryable(`Downloading the ${where} gave no archive (GitHub answered ${typeof zip}); the step retries.`);
  }
  try {
    return digestFromArtifactZip(new Uint8Array(zip), from.file, from.field);
  } catch (err) {
    if (!(err instanceof ArtifactContentError)) throw err;
    throw nonRetryable(
      GantryErrorType.BuildFailed,
      `Could not read the image digest from the ${where}: ${err.message}. Make the workflow write ${from.file} with ` +
        `{"${from.field}": "sha256:…"} (the pushed manifest digest) into that artifact, or fix build.digestFrom; then start the release again.`,
    );
  }
}

async function registryImageDigest(req: BuildRequest, image: string, run: Run, label: string): Promise<string> {
  try {
    return await registryDigest(req.image.registry, req.image.name, `v${req.release.version}`, { signal: cancellation() });
  } catch (err) {
    if (!(err instanceof RegistryError)) throw err;
    switch (err.kind) {
      case 'unreachable':
        throw retryable(`${label} succeeded, but reading the digest of ${image} failed: ${err.message}. The step retries.`);
      case 'not-found':
        throw nonRetryable(
          GantryErrorType.BuildFailed,
          `${label} succeeded (${run.html_url}) but ${image} is not in the registry. Make the workflow push the image tagged v${req.release.version} ` +
            'to image.registry/image.name, re-run it, then start the release again.',
        );
      case 'unauthorized':
        throw nonRetryable(
          GantryErrorType.ConfigInvalid,
          `${label} succeeded, but ${err.message}: gantry reads registry digests anonymously. Upload the digest as a run artifact and set ` +
            'build.digestFrom: { artifact: NAME } instead, or make the image pullable anonymously; then start the release again.',
        );
      default:
        throw nonRetryable(GantryErrorType.BuildFailed, `${label} succeeded, but ${err.message}. Check image.registry and image.name, then start the release again.`);
    }
  }
}
