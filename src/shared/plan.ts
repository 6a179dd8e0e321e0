/**
 * The release plan: what each step will do, to which targets, with which image and checks. Pure, so the
 * workflow (dry run) and the CLI (`gantry start --dry-run`) compute the same plan.
 */
import type { DeployTarget, EnvironmentConfig } from '../config/schema';
import { releaseWorkflowId, type ReleaseInput, type ReleasePlan } from './release';
import { stepTitle, type StepId } from './steps';
import { describeNeeds, describeRule, gateRulesFor } from './gate';
import { environmentsOf, type EnvironmentStep } from './environments';

export function tagName(version: string): string {
  return `v${version}`;
}

export function imageName(input: Pick<ReleaseInput, 'config' | 'version'>): string {
  return `${input.config.image.registry}/${input.config.image.name}:${tagName(input.version)}`;
}

export function describeTarget(target: DeployTarget): string {
  if (target.kind === 'docker') return `container ${target.container} on the worker's container engine`;
  const hosts = target.hosts.map((h) => `${h.user}@${h.host}:${h.port}`).join(', ');
  return `container ${target.container} via ${target.containerCli} over SSH on ${hosts} (one host at a time)`;
}

export function targetHosts(target: DeployTarget): string[] {
  return target.kind === 'docker' ? [`docker:${target.container}`] : target.hosts.map((h) => `${h.user}@${h.host}:${h.port}`);
}

function describeChecks(env: EnvironmentConfig, version: string): string {
  return env.checks
    .map((c) => `${c.method} ${c.url.replaceAll('{version}', version)} → ${c.expect.status}` +
      (c.expect.json ? ` with ${c.expect.json.path} = ${String(c.expect.json.equals).replaceAll('{version}', version)}` : '') +
      (c.expect.bodyContains ? ` containing "${c.expect.bodyContains}"` : ''))
    .join('; ');
}

export function planRelease(input: ReleaseInput): ReleasePlan {
  const { config, version } = input;
  const tag = tagName(version);
  const image = imageName(input);
  const build =
    config.build.kind === 'docker'
      ? `build ${config.build.dockerfile} from the tagged tree and push ${image}; record the digest`
      : `wait for GitHub Actions workflow ${config.build.workflow} on ${tag}; read the digest of ${image}`;
  const envs = environmentsOf(config);
  const production = envs[envs.length - 1]!;
  const gateWords = (env: EnvironmentStep) => {
    const rules = gateRulesFor(input, env.name);
    return `once the ${env.final ? '' : `${env.name} `}gate ${describeNeeds([], rules)} (rule: ${describeRule(rules)}; gate times out after ${String(config.timeouts.approval)})`;
  };
  const lane = (env: EnvironmentStep) => `waits for the ${env.name} lane (one release at a time), `;
  const detail: Partial<Record<StepId, string>> = {
    resolve: `read the worker's release config${input.configSource ? ` (${input.configSource})` : ''}, check the request and who signed it`,
    preflight: `${version} is semver and unreleased; ${config.repo.changelog} has a ${version} section; head of ${config.repo.branch} in ${config.repo.url}` +
      (config.repo.testCommand ? `; run \`${config.repo.testCommand}\`` : '') +
      (config.github ? `; GitHub checks green and no open ${config.github.blockerLabel} issue` : ''),
    tag: `annotated tag ${tag} at the release commit, pushed to ${config.repo.url} and verified there`,
    build,
  };
  for (const env of envs.slice(0, -1)) {
    detail[env.deploy] = `${lane(env)}${env.gated ? `${gateWords(env)}, ` : ''}then ${describeTarget(env.config.deploy)} runs ${image} by digest`;
    detail[env.check] = describeChecks(env.config, version) + ` (window ${String(env.config.window)})` + (config.steps.smoke?.skippable ? '; skippable by decision' : '');
  }
  if (envs.length < 2) {
    detail.deployStaging = 'no environment before production is configured';
    detail.smoke = 'no environment before production is configured';
  }
  detail.deployProduction = `${lane(production)}${gateWords(production)}: ${describeTarget(production.config.deploy)}` +
    (config.hotfix?.allowed ? `; a hotfix skips ${envs.slice(0, -1).map((e) => e.name).join(', ') || 'nothing'} and needs ${describeRule(gateRulesFor(input, production.name, { hotfix: true }))}` : '');
  detail.health = describeChecks(production.config, version) + ` (window ${String(production.config.window)})`;
  detail.rollback = `only if health fails: restore the image each ${production.name} target ran before and check it`;
  detail.announce = [
    config.announce.webhook ? 'chat webhook' : undefined,
    config.announce.auditLog ? `audit line in ${config.announce.auditLog}` : undefined,
    config.announce.artifactsDir ? `release-notes.md and release-metadata.json in ${config.announce.artifactsDir}` : undefined,
    config.github?.release ? `GitHub release ${tag} on ${config.github.owner}/${config.github.repo}` : undefined,
  ]
    .filter(Boolean)
    .join('; ') || 'nothing configured (no webhook, audit log, artifacts folder or GitHub)';
  const order: StepId[] = ['resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke',
    ...envs.filter((e) => e.deploy.startsWith('deploy:')).flatMap((e) => [e.deploy, e.check]), 'deployProduction', 'health', 'rollback', 'announce'];
  const envOf = (id: StepId) => envs.find((e) => e.deploy === id || e.check === id || (id === 'rollback' && e.final))?.name;
  return {
    service: input.service,
    version,
    workflowId: releaseWorkflowId(input.service, version),
    tag,
    image,
    steps: order.map((step) => ({ step, title: stepTitle(step, envOf(step)), detail: detail[step] ?? '' })),
  };
}
