/**
 * Deploy step: dispatch on `target.kind` to a deployer (deploy-docker.ts: an engine API through dockerode;
 * deploy-ssh.ts: the container CLI on hosts over SSH). A new kind of target is one new deployer.
 *
 * What every deployer does to one container: pull the image by digest, note the image that ran before, replace
 * the container (ports, env file, restart policy), wait until it runs. Already running that digest is success
 * with `changed: false`.
 *
 * The container carries labels saying which release made it and what ran before (`gantry.previous-image`).
 * So a retry after a crash that had already replaced the container still reports the true previous image, and
 * the rollback step can restore it: rollback acts on every target whose `previousImage` differs from `image`.
 */
import type { DeployTarget } from '../config/schema';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import { createDockerDeployer, type DockerDeployDeps } from './deploy-docker';
import { createSshDeployer, type SshDeployDeps } from './deploy-ssh';
import type { Deployer, Deployers } from './docker';
import { currentAttempt } from './heartbeat';
import type { DeployRequest, DeployResult } from './types';

export type { Deployer, Deployers, Restored, RestoreRequest } from './docker';
export { LABELS } from './docker';

/** The deployers for every target kind, over the worker's environment (secret references, env-file values). */
export function createDeployers(deps: { env: NodeJS.ProcessEnv; docker?: Omit<DockerDeployDeps, 'env'>; ssh?: Omit<SshDeployDeps, 'env'> }): Deployers {
  return {
    docker: createDockerDeployer({ env: deps.env, ...deps.docker }),
    ssh: createSshDeployer({ env: deps.env, ...deps.ssh }),
  };
}

export function deployerFor(deployers: Deployers, target: DeployTarget): Deployer<DeployTarget> {
  const d = (deployers as unknown as Record<string, Deployer<DeployTarget> | undefined>)[target.kind];
  if (!d) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `No deployer for target kind "${(target as { kind: string }).kind}"; use kind docker or ssh in the release config.`);
  }
  return d;
}

/** The deploy activity. Give it `deployers` (shared with rollback) or just `env` to make them. */
export function createDeploy(deps: { deployers: Deployers } | { env: NodeJS.ProcessEnv }): (req: DeployRequest) => Promise<DeployResult> {
  const deployers = 'deployers' in deps ? deps.deployers : createDeployers({ env: deps.env });
  return async function deploy(req: DeployRequest): Promise<DeployResult> {
    if (!/@sha256:[a-f0-9]{64}$/.test(req.imageRef)) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `Deploys pull by digest, but "${req.imageRef}" is not a {registry}/{image}@sha256:… reference; this comes from the build step, report it.`);
    }
    const targets = await deployerFor(deployers, req.target).deploy(req);
    return { attempt: currentAttempt(), environment: req.environment, targets };
  };
}
