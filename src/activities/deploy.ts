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
import { currentAttempt } from './heartbeat';
import type { DeployedTarget, DeployRequest, DeployResult, EnvironmentName, ReleaseRef } from './types';

export const LABELS = {
  service: 'gantry.service',
  version: 'gantry.version',
  environment: 'gantry.environment',
  release: 'gantry.release',
  digest: 'gantry.digest',
  previousImage: 'gantry.previous-image',
  rollback: 'gantry.rollback',
} as const;

export interface RestoreRequest<T extends DeployTarget = DeployTarget> {
  release: ReleaseRef;
  environment: EnvironmentName;
  target: T;
  /** The entry the deploy reported for this target. */
  deployed: DeployedTarget;
}

export interface Restored {
  target: string;
  image: string | null;
  version?: string;
}

export interface Deployer<T extends DeployTarget> {
  /** Deploy to every host of the target; throws on the first failure (details name what changed). */
  deploy(req: DeployRequest & { target: T }): Promise<DeployedTarget[]>;
  /**
   * Put `deployed.previousImage` back on that one target (or remove the container when it is null). `version`
   * is the restored image's `gantry.version` label when it has one (rollback verifies `{version}` checks with it).
   */
  restore(req: RestoreRequest<T>): Promise<Restored>;
}

export interface Deployers {
  docker: Deployer<Extract<DeployTarget, { kind: 'docker' }>>;
  ssh: Deployer<Extract<DeployTarget, { kind: 'ssh' }>>;
}

export function deployerFor(deployers: Deployers, target: DeployTarget): Deployer<DeployTarget> {
  const d = (deployers as unknown as Record<string, Deployer<DeployTarget> | undefined>)[target.kind];
  if (!d) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `No deployer for target kind "${(target as { kind: string }).kind}"; use kind docker or ssh in the release config.`);
  }
  return d;
}

export function createDeploy(deps: { deployers: Deployers }): (req: DeployRequest) => Promise<DeployResult> {
  return async function deploy(req: DeployRequest): Promise<DeployResult> {
    if (!/@sha256:[a-f0-9]{64}$/.test(req.imageRef)) {
      throw nonRetryable(GantryErrorType.ConfigInvalid, `Deploys pull by digest, but "${req.imageRef}" is not a {registry}/{image}@sha256:… reference; this comes from the build step, report it.`);
    }
    const targets = await deployerFor(deps.deployers, req.target).deploy(req);
    return { attempt: currentAttempt(), environment: req.environment, targets };
  };
}

// --- shared by the deployers ---------------------------------------------------------------------------------

/** Labels for a container gantry creates. */
export function containerLabels(req: { release: ReleaseRef; environment: EnvironmentName }, image: string, previousImage: string | null, extra: Record<string, string> = {}): Record<string, string> {
  return {
    [LABELS.service]: req.release.service,
    [LABELS.version]: req.release.version,
    [LABELS.environment]: req.environment,
    [LABELS.release]: req.release.workflowId,
    [LABELS.digest]: /@(sha256:[a-f0-9]+)$/.exec(image)?.[1] ?? '',
    [LABELS.previousImage]: previousImage ?? '',
    ...extra,
  };
}

/**
 * What ran before this release, seen on a container that exists now: the image recorded in its label when this
 * release (same workflow id) made it, else the image it runs.
 */
export function previousImageOf(existing: { image: string; labels: Record<string, string> } | null, release: ReleaseRef): string | null {
  if (!existing) return null;
  if (existing.labels[LABELS.release] === release.workflowId && LABELS.previousImage in existing.labels && existing.labels[LABELS.rollback] !== 'true') {
    return existing.labels[LABELS.previousImage] || null;
  }
  return existing.image;
}

export interface PortMapping {
  hostIp: string;
  hostPort: string;
  containerPort: string;
  protocol: 'tcp' | 'udp';
}

/** `8080:80`, `127.0.0.1:8080:80`, `8080:80/udp` (validated by the config schema). */
export function parsePort(spec: string): PortMapping {
  const [mapping, protocol = 'tcp'] = spec.split('/') as [string, string?];
  const parts = mapping.split(':');
  const containerPort = parts.pop()!;
  const hostPort = parts.pop()!;
  return { hostIp: parts.pop() ?? '', hostPort, containerPort, protocol: protocol as 'tcp' | 'udp' };
}

/** Parse an env file the way `docker run --env-file` does: KEY=value lines, # comments, bare KEY taken from `env`. */
export function parseEnvFile(text: string, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trimStart();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) {
      const v = env[line.trim()];
      if (v !== undefined) out.push(`${line.trim()}=${v}`);
    } else {
      out.push(`${line.slice(0, eq).trim()}=${line.slice(eq + 1)}`);
    }
  }
  return out;
}
