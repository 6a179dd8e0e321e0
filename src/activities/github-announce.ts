/**
 * GitHub's part of the announce step. Released: the GitHub release for the tag (CHANGELOG section as body),
 * created or brought up to date; the open issues of the milestone named after the version closed with a comment
 * linking the release, then the milestone itself; the deployment status `success` when configured.
 *
 * Rolled back: no release is published (the tag stays, but nothing on the Releases page may suggest that this
 * version runs anywhere, and a draft would wait for someone to publish it by mistake). Instead a comment on the
 * release commit says what happened and what to do, and the deployment status is `failure` when configured.
 *
 * Every effect happens once, however often this runs: each write is checked for first and made only when it is
 * missing (releases are found by tag, comments by their hidden marker, deployments by tag and commit, closed
 * issues are no longer listed, a deployment status already in the wanted state is not repeated). The client
 * never re-sends a write on its own (src/github/client.ts); a write that failed in a way that may have landed
 * (5xx, no answer in time) is looked for again before it is sent again (`writeOnce`). So neither a retry of
 * the step on another worker nor a lost answer makes a second release, comment or deployment.
 *
 * The announce step runs this as its `github` channel through announcers/github.ts (the channel contract).
 */
import * as semver from 'semver';
import { ApplicationFailure } from '@temporalio/common';
import type { GithubConfig } from '../config/schema';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import type { AnnounceRequest, AnnounceResult } from './types';
import { DEFAULT_TUNING, type GithubClient, type GithubClientTuning, githubClientFor, mayHaveLanded, repoName } from '../github/client';
import { githubFailure, isGithubHttpError } from '../github/errors';
import { changelogSection } from './preflight';
import { activityContext, beat, cancellation, pause } from './heartbeat';

export interface GithubAnnounceDeps {
  /** Where `{ env: NAME }` token references are resolved. */
  env: NodeJS.ProcessEnv;
  tuning?: Partial<GithubClientTuning>;
}

/** The hidden marker that makes a comment idempotent. */
export function commentMarker(kind: 'released' | 'rolled_back', version: string): string {
  return `<!-- gantry:${kind}:v${version.replace(/^v/, '')} -->`;
}

function log(message: string): void {
  const ctx = activityContext();
  if (ctx) ctx.log.info(message);
}

/** The release body: the CHANGELOG section (or a note that there is none) and what was deployed. */
export function releaseBody(req: AnnounceRequest, notes: string | undefined): string {
  const lines = [
    notes?.trim() || `_No section for ${req.release.version} in ${req.repo.changelog}._`,
    '',
    '---',
    `Image: \`${req.imageRef}\``,
  ];
  if (req.ciRunUrl) lines.push(`Build: ${req.ciRunUrl}`);
  return lines.join('\n');
}

async function step<T>(github: GithubConfig, doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    // Already classified (a look inside a write, say): kept as it is.
    if (err instanceof ApplicationFailure) throw err;
    throw githubFailure(err, github, doing);
  }
}

const is404 = (err: unknown) => isGithubHttpError(err) && err.status === 404;

/**
 * A write that must land once. It is sent without the client's retries; when it fails in a way that may have
 * landed (a 5xx, no answer within the request timeout), `landed` looks for its effect first, and only when that
 * is not there is the write sent again (up to `retries` more times, waiting 1, 4, 9 … × `retryBaseMs` before
 * each look). A refusal (4xx) is thrown at once, as is the last failure; the caller classifies it.
 */
export async function writeOnce<T>(
  t: Pick<GithubClientTuning, 'retries' | 'retryBaseMs'>,
  doing: string,
  write: () => Promise<T>,
  landed: () => Promise<T | undefined>,
): Promise<T> {
  for (let retry = 0; ; retry++) {
    try {
      return await write();
    } catch (err) {
      if (cancellation().aborted || !mayHaveLanded(err) || retry >= t.retries) throw err;
      const status = (err as { status?: unknown }).status;
      log(`github: ${doing} got ${typeof status === 'number' ? `a ${status}` : 'no answer'}; looking whether it landed before sending it again`);
      await pause(t.retryBaseMs * (retry + 1) ** 2);
      const found = await landed();
      if (found !== undefined) {
        log(`github: ${doing} had landed; not sending it again`);
        return found;
      }
    }
  }
}

/** The CHANGELOG section for the version, read from the repository at the tag; undefined when there is none. */
async function notesAtTag(gh: GithubClient, github: GithubConfig, req: AnnounceRequest): Promise<string | undefined> {
  let data: unknown;
  try {
    data = (await gh.rest.repos.getContent({ owner: github.owner, repo: github.repo, path: req.repo.changelog, ref: req.tag })).data;
  } catch (err) {
    if (is404(err)) return undefined;
    throw githubFailure(err, github, `reading ${req.repo.changelog} at ${req.tag}`);
  }
  const file = data as { type?: string; content?: string; encoding?: string };
  if (file.type !== 'file' || file.encoding !== 'base64' || typeof file.content !== 'string') return undefined;
  return changelogSection(Buffer.from(file.content, 'base64').toString('utf8'), req.release.version);
}

interface ReleaseOut {
  url: string;
  created: boolean;
}

async function upsertRelease(gh: GithubClient, github: GithubConfig, t: GithubClientTuning, req: AnnounceRequest, body: string): Promise<ReleaseOut> {
  const owner = github.owner;
  const repo = github.repo;
  const wanted = { name: req.tag, body, draft: false, prerelease: semver.prerelease(req.release.version) !== null };
  type Existing = { id: number; html_url: string; name: string | null; body?: string | null; draft: boolean; prerelease: boolean };
  const current = (r: Existing) => r.name === wanted.name && (r.body ?? '') === body && !r.draft && r.prerelease === wanted.prerelease;
  const byTag = async () => {
    try {
      return (await gh.rest.repos.getReleaseByTag({ owner, repo, tag: req.tag })).data;
    } catch (err) {
      if (is404(err)) return undefined;
      throw githubFailure(err, github, `looking up the GitHub release ${req.tag}`);
    }
  };
  const update = async (existing: Existing) => {
    if (current(existing)) return { url: existing.html_url, created: false };
    const doing = `updating the GitHub release ${req.tag}`;
    const data = await step(github, doing, () => writeOnce(t, doing,
      async () => (await gh.rest.repos.updateRelease({ owner, repo, release_id: existing.id, tag_name: req.tag, ...wanted })).data,
      async () => { const r = await byTag(); return r && r.id === existing.id && current(r) ? r : undefined; }));
    return { url: data.html_url, created: false };
  };

  const existing = await byTag();
  if (existing) return update(existing);
  const doing = `creating the GitHub release ${req.tag}`;
  try {
    const data = await writeOnce(t, doing, async () => (await gh.rest.repos.createRelease({ owner, repo, tag_name: req.tag, ...wanted })).data, byTag);
    return { url: data.html_url, created: true };
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    if (!(isGithubHttpError(err) && err.status === 422)) throw githubFailure(err, github, doing);
    // A draft holding the tag is not found by tag; find it among the releases and publish it instead.
    const all = await step(github, 'listing GitHub releases', () => gh.paginate(gh.rest.repos.listReleases, { owner, repo, per_page: 100 }));
    const draft = all.find((r) => r.tag_name === req.tag);
    if (!draft) throw githubFailure(err, github, doing);
    return update(draft);
  }
}

/** Close the open issues of the milestone `v{version}` / `{version}` with a comment, then the milestone. */
async function closeMilestone(gh: GithubClient, github: GithubConfig, t: GithubClientTuning, req: AnnounceRequest, link: string): Promise<number[]> {
  const owner = github.owner;
  const repo = github.repo;
  const version = req.release.version;
  const titles = [`v${version}`, version];
  const milestones = await step(github, 'listing milestones', () => gh.paginate(gh.rest.issues.listMilestones, { owner, repo, state: 'all', per_page: 100 }));
  const milestone = titles.map((t) => milestones.find((m) => m.title === t)).find((m) => m !== undefined);
  if (!milestone) {
    log(`github: no milestone named ${titles.join(' or ')} in ${repoName(github)}; no issues to close`);
    return [];
  }
  const issues = await step(github, `listing the open issues of milestone ${milestone.title}`, () =>
    gh.paginate(gh.rest.issues.listForRepo, { owner, repo, milestone: String(milestone.number), state: 'open', per_page: 100 }),
  );
  const marker = commentMarker('released', version);
  const closed: number[] = [];
  for (const issue of issues) {
    // Pull requests share the issues list; a release does not close them.
    if (issue.pull_request) continue;
    beat({ closing: issue.number });
    const marked = async () => {
      const comments = await step(github, `reading the comments of #${issue.number}`, () =>
        gh.paginate(gh.rest.issues.listComments, { owner, repo, issue_number: issue.number, per_page: 100 }),
      );
      return comments.find((c) => c.body?.includes(marker));
    };
    if (!(await marked())) {
      const doing = `commenting on #${issue.number}`;
      await step(github, doing, () => writeOnce(t, doing,
        async () => (await gh.rest.issues.createComment({ owner, repo, issue_number: issue.number, body: `Released in ${req.tag}: ${link}\n\n${marker}` })).data,
        marked));
    }
    const closing = `closing #${issue.number}`;
    await step(github, closing, () => writeOnce(t, closing,
      async () => (await gh.rest.issues.update({ owner, repo, issue_number: issue.number, state: 'closed', state_reason: 'completed' })).data,
      async () => { const { data } = await gh.rest.issues.get({ owner, repo, issue_number: issue.number }); return data.state === 'closed' ? data : undefined; }));
    closed.push(issue.number);
  }
  if (milestone.state === 'open') {
    const doing = `closing milestone ${milestone.title}`;
    await step(github, doing, () => writeOnce(t, doing,
      async () => (await gh.rest.issues.updateMilestone({ owner, repo, milestone_number: milestone.number, state: 'closed' })).data,
      async () => { const { data } = await gh.rest.issues.getMilestone({ owner, repo, milestone_number: milestone.number }); return data.state === 'closed' ? data : undefined; }));
  }
  return closed;
}

/** Record the outcome on the configured GitHub environment: one deployment per tag, one status per outcome. */
async function markDeployment(gh: GithubClient, github: GithubConfig, t: GithubClientTuning, req: AnnounceRequest, environment: string, state: 'success' | 'failure', logUrl?: string): Promise<void> {
  const owner = github.owner;
  const repo = github.repo;
  const find = async () => {
    const existing = await step(github, `listing deployments of ${req.tag} to ${environment}`, () =>
      gh.paginate(gh.rest.repos.listDeployments, { owner, repo, ref: req.tag, environment, per_page: 100 }),
    );
    return existing.filter((d) => d.sha === req.commit).sort((a, b) => b.id - a.id)[0];
  };
  let deployment = await find();
  if (!deployment) {
    const creating = `creating a deployment of ${req.tag} to ${environment}`;
    const data = await step(github, creating, () => writeOnce(t, creating, async () => (await gh.rest.repos.createDeployment({
        owner,
        repo,
        ref: req.tag,
        environment,
        auto_merge: false,
        // gantry already checked the commit in preflight; GitHub must not refuse or wait on contexts here.
        required_contexts: [],
        description: `gantry ${req.release.service} ${req.tag}`.slice(0, 140),
        payload: { gantry: { workflowId: req.release.workflowId, digest: req.digest, imageRef: req.imageRef } },
      })).data, find));
    if (!('id' in data)) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `GitHub did not create a deployment of ${req.tag} to ${environment}: ${data.message ?? 'no reason given'}. Check the environment's protection rules.`);
    }
    deployment = data;
  }
  const deploymentId = deployment.id;
  const latest = async () => {
    const statuses = await step(github, `reading the statuses of deployment ${deploymentId}`, () =>
      gh.rest.repos.listDeploymentStatuses({ owner, repo, deployment_id: deploymentId, per_page: 1 }),
    );
    const last = statuses.data[0];
    return last?.state === state ? last : undefined;
  };
  if (await latest()) return;
  const description = state === 'success' ? `${req.tag} released by gantry` : `${req.tag} rolled back by gantry`;
  const setting = `setting deployment ${deploymentId} to ${state}`;
  await step(github, setting, () => writeOnce(t, setting, async () => (await gh.rest.repos.createDeploymentStatus({
      owner,
      repo,
      deployment_id: deploymentId,
      state,
      environment,
      description: description.slice(0, 140),
      ...(logUrl ? { log_url: logUrl } : {}),
      auto_inactive: state === 'success',
    })).data, latest));
}

/** On a rollback: a comment on the release commit saying what happened and what to do (once). */
async function commentRollback(gh: GithubClient, github: GithubConfig, t: GithubClientTuning, req: AnnounceRequest): Promise<void> {
  const owner = github.owner;
  const repo = github.repo;
  const marker = commentMarker('rolled_back', req.release.version);
  const marked = async () => {
    const comments = await step(github, `reading the comments of commit ${req.commit.slice(0, 12)}`, () =>
      gh.paginate(gh.rest.repos.listCommentsForCommit, { owner, repo, commit_sha: req.commit, per_page: 100 }),
    );
    return comments.find((c) => c.body.includes(marker));
  };
  if (await marked()) return;
  const body = [
    `**${req.release.service} ${req.tag} was rolled back.** Production failed its health checks after the deploy, and gantry put the previous image back.`,
    req.reason ? `\nReason: ${req.reason}` : '',
    `\nImage that failed: \`${req.imageRef}\``,
    req.ciRunUrl ? `Build: ${req.ciRunUrl}` : '',
    '\nNo GitHub release was published for this tag. Fix the cause and release a new version.',
    '',
    marker,
  ]
    .filter((l) => l !== '')
    .join('\n');
  const doing = `commenting on commit ${req.commit.slice(0, 12)}`;
  await step(github, doing, () => writeOnce(t, doing, async () => (await gh.rest.repos.createCommitComment({ owner, repo, commit_sha: req.commit, body })).data, marked));
}

/**
 * GitHub announcements for a service with a `github:` section (nothing without one). `notes` is the CHANGELOG
 * section when the caller already has it; otherwise it is read from the repository at the tag.
 */
export function githubAnnouncer(deps: GithubAnnounceDeps) {
  return async (req: AnnounceRequest, notes?: string): Promise<Partial<AnnounceResult>> => {
    const github = req.github;
    if (!github) return {};
    const gh = await githubClientFor(github, deps.env, deps.tuning);
    const t: GithubClientTuning = { ...DEFAULT_TUNING, ...deps.tuning };
    const env = github.deploymentEnvironment;

    if (req.outcome === 'rolled_back') {
      // The comment stands in for the release that is not published; `release: false` turns both off.
      if (github.release) await commentRollback(gh, github, t, req);
      if (env) await markDeployment(gh, github, t, req, env, 'failure', req.ciRunUrl);
      return {};
    }

    let releaseUrl: string | undefined;
    if (github.release) {
      const section = notes ?? (await notesAtTag(gh, github, req));
      if (section === undefined) log(`github: no ${req.repo.changelog} section for ${req.release.version} at ${req.tag}; the release says so`);
      const out = await upsertRelease(gh, github, t, req, releaseBody(req, section));
      releaseUrl = out.url;
      log(`github: release ${req.tag} ${out.created ? 'created' : 'up to date'}: ${out.url}`);
    }
    if (github.closeMilestone) {
      const link = releaseUrl ?? `${req.tag} (${req.imageRef})`;
      const closed = await closeMilestone(gh, github, t, req, link);
      if (closed.length) log(`github: closed ${closed.map((n) => `#${n}`).join(', ')}`);
    }
    if (env) await markDeployment(gh, github, t, req, env, 'success', releaseUrl ?? req.ciRunUrl);
    return releaseUrl ? { githubReleaseUrl: releaseUrl } : {};
  };
}
