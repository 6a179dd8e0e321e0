/**
 * GitHub's part of preflight (plugged into the preflight step as extra checks): the release commit's check runs
 * and commit statuses are all green, and no open issue carries the release-blocker label. Each failed check
 * names the failing runs, statuses or issues with their URLs and says what to do.
 */
import type { GithubConfig } from '../config/schema';
import type { PreflightRequest } from './types';
import { type GithubClient, type GithubClientTuning, githubClientFor, repoName } from '../github/client';
import { githubFailure } from '../github/errors';
import { beat } from './heartbeat';

export interface GithubPreflightDeps {
  /** Where `{ env: NAME }` token references are resolved. */
  env: NodeJS.ProcessEnv;
  tuning?: Partial<GithubClientTuning>;
}

export interface PreflightCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export const CHECK_NAMES = {
  checkRuns: 'github-check-runs',
  statuses: 'github-commit-statuses',
  blockers: 'github-release-blockers',
} as const;

/** Conclusions that do not hold a release back. */
const GREEN_CONCLUSIONS = new Set(['success', 'neutral', 'skipped']);
/** How many failing items a detail lists before summarising the rest. */
const LIST_MAX = 10;

function listed(items: string[]): string {
  const shown = items.slice(0, LIST_MAX).join('; ');
  return items.length > LIST_MAX ? `${shown}; and ${items.length - LIST_MAX} more` : shown;
}

async function checkRuns(gh: GithubClient, github: GithubConfig, commit: string): Promise<PreflightCheck> {
  const short = commit.slice(0, 12);
  const runs = await gh.paginate(gh.rest.checks.listForRef, { owner: github.owner, repo: github.repo, ref: commit, filter: 'latest', per_page: 100 });
  beat({ check: CHECK_NAMES.checkRuns, runs: runs.length });
  if (runs.length === 0) return { name: CHECK_NAMES.checkRuns, ok: true, detail: `no check runs on ${short}` };
  const failing = runs.filter((r) => r.status === 'completed' && !GREEN_CONCLUSIONS.has(r.conclusion ?? ''));
  const pending = runs.filter((r) => r.status !== 'completed');
  if (failing.length === 0 && pending.length === 0) {
    return { name: CHECK_NAMES.checkRuns, ok: true, detail: `all ${runs.length} check runs on ${short} passed` };
  }
  const parts: string[] = [];
  if (failing.length) {
    parts.push(`${failing.length} of ${runs.length} check runs on ${short} did not pass: ${listed(failing.map((r) => `${r.name} (${r.conclusion}) ${r.html_url ?? r.details_url ?? ''}`.trim()))}`);
  }
  if (pending.length) {
    parts.push(`${pending.length} still running: ${listed(pending.map((r) => `${r.name} (${r.status}) ${r.html_url ?? r.details_url ?? ''}`.trim()))}`);
  }
  const fix = failing.length
    ? 'Fix or re-run the failing checks, then start the release again'
    : 'Wait for the checks to finish, then start the release again';
  return {
    name: CHECK_NAMES.checkRuns,
    ok: false,
    detail: `${parts.join('. ')}. ${fix} (or set github.requireGreenChecks: false to release without them).`,
  };
}

async function statuses(gh: GithubClient, github: GithubConfig, commit: string): Promise<PreflightCheck> {
  const short = commit.slice(0, 12);
  // The combined status pages its `statuses` (its `url` field stops octokit's paginate from seeing a list).
  const all: { state: string; context: string; target_url: string | null }[] = [];
  for (let page = 1; ; page++) {
    const { data } = await gh.rest.repos.getCombinedStatusForRef({ owner: github.owner, repo: github.repo, ref: commit, per_page: 100, page });
    all.push(...data.statuses);
    if (data.statuses.length === 0 || all.length >= data.total_count) break;
  }
  if (all.length === 0) return { name: CHECK_NAMES.statuses, ok: true, detail: `no commit statuses on ${short}` };
  const notGreen = all.filter((s) => s.state !== 'success');
  if (notGreen.length === 0) return { name: CHECK_NAMES.statuses, ok: true, detail: `all ${all.length} commit statuses on ${short} are success` };
  const failed = notGreen.some((s) => s.state !== 'pending');
  return {
    name: CHECK_NAMES.statuses,
    ok: false,
    detail:
      `${notGreen.length} of ${all.length} commit statuses on ${short} are not success: ` +
      `${listed(notGreen.map((s) => `${s.context} (${s.state}) ${s.target_url ?? ''}`.trim()))}. ` +
      `${failed ? 'Fix the failing ones' : 'Wait for them to finish'}, then start the release again (or set github.requireGreenChecks: false).`,
  };
}

async function blockers(gh: GithubClient, github: GithubConfig): Promise<PreflightCheck> {
  const open = await gh.paginate(gh.rest.issues.listForRepo, {
    owner: github.owner,
    repo: github.repo,
    labels: github.blockerLabel,
    state: 'open',
    per_page: 100,
  });
  beat({ check: CHECK_NAMES.blockers, open: open.length });
  if (open.length === 0) {
    return { name: CHECK_NAMES.blockers, ok: true, detail: `no open issues labelled "${github.blockerLabel}" in ${repoName(github)}` };
  }
  return {
    name: CHECK_NAMES.blockers,
    ok: false,
    detail:
      `${open.length} open ${open.length === 1 ? 'issue is' : 'issues are'} labelled "${github.blockerLabel}" in ${repoName(github)}: ` +
      `${listed(open.map((i) => `#${i.number} ${i.title} ${i.html_url}`))}. Resolve and close ${open.length === 1 ? 'it' : 'them'} ` +
      '(or remove the label if it does not block this release), then start the release again.',
  };
}

/**
 * Extra preflight checks for a service with a `github:` section (none without one). A check that could not be
 * asked (GitHub down, token refused) throws a classified failure instead of reporting a red check.
 */
export function githubPreflightChecks(deps: GithubPreflightDeps) {
  return async (req: PreflightRequest, commit: string): Promise<PreflightCheck[]> => {
    const github = req.github;
    if (!github) return [];
    const gh = await githubClientFor(github, deps.env, deps.tuning);
    const out: PreflightCheck[] = [];
    const run = async (doing: string, fn: () => Promise<PreflightCheck>) => {
      try {
        out.push(await fn());
      } catch (err) {
        throw githubFailure(err, github, doing);
      }
    };
    if (github.requireGreenChecks) {
      await run(`listing check runs for ${commit.slice(0, 12)}`, () => checkRuns(gh, github, commit));
      await run(`reading the combined status of ${commit.slice(0, 12)}`, () => statuses(gh, github, commit));
    }
    await run(`listing open issues labelled "${github.blockerLabel}"`, () => blockers(gh, github));
    return out;
  };
}
