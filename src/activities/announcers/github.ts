/**
 * The GitHub channel: the release for the tag, the milestone's issues, the deployment status (released), or
 * a comment on the release commit (rolled back), for a service with a `github:` section. The work itself, and
 * its idempotency, is in ../github-announce.ts; this module puts it behind the channel contract.
 */
import { githubAnnouncer, type GithubAnnounceDeps } from '../github-announce';
import type { Announcer, ChannelResult } from './types';

export function githubChannel(deps: GithubAnnounceDeps): Announcer {
  const run = githubAnnouncer(deps);
  return {
    name: 'github',
    title: 'GitHub',
    enabled: (req) => Boolean(req.github),
    skipReason: () => 'the service has no github section',
    async announce(req, ctx): Promise<ChannelResult> {
      const github = req.github!;
      const out = await run(req, ctx.section);
      const repo = `${github.owner}/${github.repo}`;
      const env = github.deploymentEnvironment;
      const done: string[] = [];
      if (req.outcome === 'rolled_back') {
        if (github.release) done.push(`commented on commit ${req.commit.slice(0, 12)} that ${req.tag} was rolled back (no release published)`);
        if (env) done.push(`deployment to ${env} marked failure`);
      } else {
        if (out.githubReleaseUrl) done.push(`release ${req.tag} published at ${out.githubReleaseUrl}`);
        if (github.closeMilestone) done.push(`milestone ${req.tag} closed with its issues (if there was one)`);
        if (env) done.push(`deployment to ${env} marked success`);
      }
      return {
        channel: 'github',
        ok: true,
        detail: done.length ? `${repo}: ${done.join('; ')}` : `${repo}: nothing to do (github.release, closeMilestone and deploymentEnvironment are off)`,
        ...(out.githubReleaseUrl ? { url: out.githubReleaseUrl } : {}),
      };
    },
  };
}
