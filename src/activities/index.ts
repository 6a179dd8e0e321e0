/**
 * The real step implementations, assembled over the worker's dependencies. Each step lives in its own module
 * as a factory; this is the only place that knows all of them. A new deploy target is one new deployer module
 * plus one line in `deployers` below.
 */
import type { AnnounceRequest, BuildRequest, BuildResult, GovernanceActivities, ReleaseActivities } from './types';
import { createPreflight } from './preflight';
import { createTag } from './tag';
import { createBuildDocker } from './build-docker';
import { createDeploy, type Deployers } from './deploy';
import { createDockerDeployer } from './deploy-docker';
import { createSshDeployer } from './deploy-ssh';
import { createChecks } from './checks';
import { createRollback } from './rollback';
import { createAnnounce } from './announce';
import { githubPreflightChecks } from './github-preflight';
import { createGithubActionsBuild } from './github-build';
import { githubChannel } from './announcers/github';
import { guardActivities } from './guard';
import { auditAnnouncer } from './announcers/audit';
import { resolveSecret } from './secrets';
import type { SecretRef } from '../config/schema';
import { createResolve, type ConfigSource } from './resolve';
import { createLaneActivities } from './lanes';
import { createFreezeActivities } from './freezes';
import { createNotify } from './notify';

export interface ActivityDeps {
  /** The worker's release config: read by the resolve step for every release and checked by every step. */
  config: ConfigSource;
  /** Environment used to resolve secret references (`{ env: NAME }`) on this worker. */
  env: NodeJS.ProcessEnv;
  /** Where steps put their temporary checkouts and build contexts. @default os.tmpdir() */
  workDir?: string;
}

/**
 * Every secret value the worker's config references and this worker can resolve: redacted from any output that
 * repository code produced (the test command's) before it reaches a message or an artifact.
 */
export function knownSecretValues(config: ConfigSource, env: NodeJS.ProcessEnv): string[] {
  const refs: SecretRef[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      if (keys.length === 1 && (typeof o.env === 'string' || typeof o.file === 'string')) refs.push(o as SecretRef);
      else keys.forEach((k) => visit(o[k]));
    }
  };
  try {
    visit(config.load().config.services);
  } catch {
    return [];
  }
  return refs.flatMap((ref) => {
    try {
      return [resolveSecret(ref, env)];
    } catch {
      return [];
    }
  });
}

export function createActivities(deps: ActivityDeps): ReleaseActivities & GovernanceActivities {
  const { env, workDir } = deps;
  const dirs = workDir ? { workDir } : {};

  const deployers: Deployers = {
    docker: createDockerDeployer({ env }),
    ssh: createSshDeployer({ env }),
  };
  // The audit log alone, for releases that end without an announcement (rejected, aborted, cancelled, failed).
  const recordEnd = createAnnounce({ env, ...dirs, only: [auditAnnouncer()] });
  const checks = createChecks();
  const builds = {
    docker: createBuildDocker({ env, ...dirs }),
    'github-actions': createGithubActionsBuild({ env }),
  } satisfies Record<BuildRequest['build']['kind'], (req: BuildRequest) => Promise<BuildResult>>;

  return {
    // Lanes and freezes are the lane and registry workflows' own, not a release's steps: outside the step guard.
    ...createLaneActivities(),
    ...createFreezeActivities({ config: deps.config }),
    // Notices to approvers: the webhook comes from the worker's config, never from the request.
    ...createNotify({ config: deps.config, env }),
    ...guardActivities({
      ...createResolve({ config: deps.config }),
      ...createPreflight({ env, ...dirs, extraChecks: githubPreflightChecks({ env }), knownSecrets: () => knownSecretValues(deps.config, env) }),
      ...createTag({ env, ...dirs }),
      build: (req) => builds[req.build.kind](req),
      deploy: createDeploy({ deployers }),
      smoke: checks.smoke,
      health: checks.health,
      rollback: createRollback({ deployers, verify: checks.health }),
      recordEnd: (req) => recordEnd.announce(req as unknown as AnnounceRequest),
      ...createAnnounce({ env, ...dirs, extraAnnouncers: [githubChannel({ env })] }),
    }, deps.config),
  };
}
