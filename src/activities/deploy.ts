/**
 * Deploy step: dispatch on `target.kind` to a deployer (deploy-docker.ts: an engine API through dockerode;
 * deploy-ssh.ts: the container CLI on hosts over SSH). The contract, and how every deployer swaps a container
 * without deleting the running one first, are in deployer.ts. Already running that digest is success with
 * `changed: false`.
 *
 * The new container carries labels saying which release made it, what ran before (`gantry.previous-image`) and
 * which container was kept (`gantry.previous-container`). So a retry after a crash reports the true previous
 * image, and the rollback step can restore it: rollback acts on every target whose `previousImage` differs
 * from `image`, starting the kept container again.
 */
import { GantryErrorType, nonRetryable } from '../shared/errors';
import { createDockerDeployer, type DockerDeployDeps } from './deploy-docker';
import { createSshDeployer, type SshDeployDeps } from './deploy-ssh';
import { deployerFor, type Deployers } from './deployer';
import { currentAttempt, heartbeating } from './heartbeat';
import type { DeployRequest, DeployResult } from './types';

export type { Deployer, Deployers, Restored, RestoreRequest } from './deployer';
export { deployerFor, LABELS } from './deployer';

/** The deployers for every target kind, over the worker's environment (secret references, env-file values). */
export function createDeployers(deps: { env: NodeJS.ProcessEnv; docker?: Omit<DockerDeployDeps, 'env'>; ssh?: Omit<SshDeployDeps, 'env'> }): Deployers {
  return {
    docker: createDockerDeployer({ env: deps.env, ...deps.docker }),
    ssh: createSshDeployer({ env: deps.env, ...deps.ssh }),
  };
}

/** The deploy activity. Give it `deployers` (shared with rollback) or just `env` to make them. */
export function createDeploy(deps: { deployers: Deployers } | { env: NodeJS.ProcessEnv }): (req: DeployRequest) => Promise<DeployResult> {
  const deployers = 'deployers' in deps ? deps.deployers : createDeployers({ env: deps.env });
  return heartbeating(async function deploy(req: DeployRequest): Promise<DeployResult> {
    if (!/@sha256:[a-f0-9]{64}$/.test(req.imageRef)) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `Deploys pull by digest, but "${req.imageRef}" is not a {registry}/{image}@sha256:… reference; this comes from the build step, report it.`);
    }
    const targets = await deployerFor(deployers, req.target).deploy(req);
    return { attempt: currentAttempt(), environment: req.environment, targets };
  });
}
