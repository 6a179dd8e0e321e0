/**
 * Activities validate what they receive. The release's plan comes from the worker's own config (resolvePlan),
 * but a step still checks its request against that config before it touches a secret: the repository (URL and
 * token reference), the GitHub section (API base URL and token reference), the deploy target (hosts, key
 * reference, host keys) and the webhook reference must be exactly what the worker's config says for that
 * service. So a secret only ever goes where the worker's config binds it, whatever a workflow input says.
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigError } from '../config/load';
import type { ServiceConfig } from '../config/schema';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import { releaseWorkflowId, SEMVER, SERVICE_NAME } from '../shared/release';
import type { ConfigSource } from './resolve';
import type { ReleaseActivities, ReleaseRef } from './types';

type Slice = { what: string; got: unknown; want: (svc: ServiceConfig) => unknown };

function serviceFor(source: ConfigSource, release: ReleaseRef, step: string): ServiceConfig {
  if (!SERVICE_NAME.test(release.service) || !SEMVER.test(release.version) || release.workflowId !== releaseWorkflowId(release.service, release.version)) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `Refusing ${step}: the request names no valid release (service, version and workflow id must agree).`);
  }
  let svc: ServiceConfig | undefined;
  try {
    svc = source.load().config.services[release.service];
  } catch (err) {
    if (err instanceof ConfigError) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `Refusing ${step}: the worker's release config is invalid now. ${err.message}\nFix ${source.path} on the worker.`);
    }
    throw err;
  }
  if (!svc) throw nonRetryable(GantryErrorType.ConfigInvalid, `Refusing ${step}: the worker's config defines no service "${release.service}".`);
  return svc;
}

function check(source: ConfigSource, release: ReleaseRef, step: string, slices: Slice[]): void {
  const svc = serviceFor(source, release, step);
  const differ = slices.filter((s) => !isDeepStrictEqual(normalize(s.got), normalize(s.want(svc)))).map((s) => s.what);
  if (differ.length > 0) {
    throw nonRetryable(GantryErrorType.ConfigInvalid,
      `Refusing ${step} for ${release.service} ${release.version}: the request's ${differ.join(', ')} differ${differ.length === 1 ? 's' : ''} from the worker's config ` +
      `(${source.path}). A step only uses secrets where the worker's config binds them. If the config was changed during this release, ` +
      'start a new release to run on the new config.');
  }
}

/** JSON round trip: what crossed Temporal's payload converter, without undefined members. */
function normalize(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

const repoBinding = (repo: { url: string; token?: unknown }): Slice => ({
  what: 'repository (repo.url, repo.token)',
  got: { url: repo.url, token: repo.token },
  want: (svc) => ({ url: svc.repo.url, token: svc.repo.token }),
});
const githubBinding = (github: { baseUrl: string; token: unknown; owner: string; repo: string } | undefined): Slice => ({
  what: 'GitHub section (github.baseUrl, github.token, owner/repo)',
  got: github && { baseUrl: github.baseUrl, token: github.token, owner: github.owner, repo: github.repo },
  want: (svc) => svc.github && { baseUrl: svc.github.baseUrl, token: svc.github.token, owner: svc.github.owner, repo: svc.github.repo },
});
const targetBinding = (environment: string, target: unknown): Slice => ({
  what: `${environment} deploy target`,
  got: target,
  // An environment the worker's config does not have never matches, whatever the request says.
  want: (svc) => (Object.hasOwn(svc.environments, environment) ? svc.environments[environment]?.deploy : { unknownEnvironment: environment }),
});

/** Wrap the steps so each validates its request against the worker's config first. */
export function guardActivities(acts: ReleaseActivities, source: ConfigSource): ReleaseActivities {
  return {
    resolvePlan: (req) => acts.resolvePlan(req),
    preflight: async (req) => {
      check(source, req.release, 'preflight', [repoBinding(req.repo), githubBinding(req.github)]);
      return acts.preflight(req);
    },
    tag: async (req) => {
      check(source, req.release, 'tag', [repoBinding(req.repo)]);
      return acts.tag(req);
    },
    build: async (req) => {
      check(source, req.release, 'build', [repoBinding(req.repo), githubBinding(req.github),
        { what: 'build section', got: req.build, want: (svc) => svc.build }]);
      return acts.build(req);
    },
    deploy: async (req) => {
      check(source, req.release, `deploy to ${req.environment}`, [targetBinding(req.environment, req.target)]);
      return acts.deploy(req);
    },
    smoke: (req) => acts.smoke(req),
    health: (req) => acts.health(req),
    rollback: async (req) => {
      check(source, req.release, 'rollback', [targetBinding(req.environment, req.target)]);
      return acts.rollback(req);
    },
    recordEnd: async (req) => {
      check(source, req.release, 'the release record', [{ what: 'announce section', got: req.announce, want: (svc) => svc.announce }]);
      return acts.recordEnd(req);
    },
    announce: async (req) => {
      check(source, req.release, 'announce', [repoBinding(req.repo), githubBinding(req.github),
        { what: 'announce section', got: req.announce, want: (svc) => svc.announce }]);
      return acts.announce(req);
    },
    announcePlan: async (req) => {
      check(source, req.release, 'announce', [repoBinding(req.repo), githubBinding(req.github),
        { what: 'announce section', got: req.announce, want: (svc) => svc.announce }]);
      return acts.announcePlan(req);
    },
    announceChannel: async (req) => {
      check(source, req.release, `announce (${req.channel})`, [repoBinding(req.repo), githubBinding(req.github),
        { what: 'announce section', got: req.announce, want: (svc) => svc.announce }]);
      return acts.announceChannel(req);
    },
  };
}
