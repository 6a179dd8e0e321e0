/**
 * The deployer contract, shared by every deploy target kind (deploy-docker.ts: an engine API through dockerode;
 * deploy-ssh.ts: the container CLI on hosts over SSH), and the rules they share for swapping one container.
 *
 * A deploy never deletes before it creates. On each target it:
 *   1. records what runs (container id and image) in the heartbeat details, before touching anything;
 *   2. renames the running container to `<name>-gantry-previous` (it keeps serving), creates the new one as
 *      `<name>`, stops the previous one and starts the new one;
 *   3. waits until the new one runs steadily. When it does not start (a port clash, a port it may not bind, a
 *      crash on start) the previous container gets its name back and is started again, and the deploy fails
 *      saying so.
 * The previous container stays, stopped, until the next deploy of that target replaces it: the rollback step
 * starts it again (no pull, no create). New containers carry labels naming the release that made them, the
 * image that ran before and the kept container, so a retry after a crash at any point finds the true previous
 * image (see {@link planSwap}).
 *
 * A new target kind is its deployer module plus one line in `deployers` (src/activities/index.ts).
 */
import type { DeployTarget } from '../config/schema';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import { activityContext } from './heartbeat';
import type { DeployedTarget, DeployRequest, EnvironmentName, ReleaseRef } from './types';

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
  /** How the previous version came back: its kept container started again, or a container created anew. */
  via?: 'kept' | 'created' | 'running' | 'removed';
}

export interface Deployer<T extends DeployTarget> {
  /**
   * Deploy to every host of the target. On a failure it puts back what it changed (the kept previous
   * containers) and throws; the failure's details name every host and what happened there.
   */
  deploy(req: DeployRequest & { target: T }): Promise<DeployedTarget[]>;
  /**
   * Put `deployed.previousImage` back on that one target: start its kept container, or pull and create it when
   * there is none (remove the container when it is null). `version` is the restored image's `gantry.version`
   * label when it has one (rollback verifies `{version}` checks with it).
   */
  restore(req: RestoreRequest<T>): Promise<Restored>;
}

/** One deployer per target kind: adding a kind to DeployTarget makes this demand its deployer. */
export type Deployers = { [K in DeployTarget['kind']]: Deployer<Extract<DeployTarget, { kind: K }>> };

export function deployerFor(deployers: Deployers, target: DeployTarget): Deployer<DeployTarget> {
  const d = (deployers as Partial<Record<string, Deployer<DeployTarget>>>)[target.kind];
  if (!d) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `No deployer for target kind "${(target as { kind: string }).kind}"; use kind docker or ssh in the release config.`);
  }
  return d;
}

// --- labels -------------------------------------------------------------------------------------------------

export const LABELS = {
  service: 'gantry.service',
  version: 'gantry.version',
  environment: 'gantry.environment',
  release: 'gantry.release',
  digest: 'gantry.digest',
  previousImage: 'gantry.previous-image',
  /** The id of the container kept (stopped) as `<name>-gantry-previous` when this one replaced it. */
  previousContainer: 'gantry.previous-container',
  rollback: 'gantry.rollback',
} as const;

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

/** Labels of a container a rollback created anew: the version it runs (when the image says), and what it replaced. */
export function rollbackLabels(req: { release: ReleaseRef; environment: EnvironmentName; deployed: DeployedTarget }, image: string, version: string | undefined): Record<string, string> {
  return containerLabels(req, image, req.deployed.image, { [LABELS.rollback]: 'true', [LABELS.version]: version ?? '' });
}

/**
 * What ran before this release, seen on a container that exists now: the image recorded in its label when this
 * release (same workflow id) made it, else the image it runs.
 */
export function previousImageOf(existing: { image: string; labels: Record<string, string> } | null, release: ReleaseRef): string | null {
  if (!existing) return null;
  if (madeBy(existing, release) && LABELS.previousImage in existing.labels) return existing.labels[LABELS.previousImage] || null;
  return existing.image;
}

/** Made by this release's deploy (not by a rollback). */
function madeBy(c: { labels: Record<string, string> }, release: ReleaseRef): boolean {
  return c.labels[LABELS.release] === release.workflowId && c.labels[LABELS.rollback] !== 'true';
}

// --- the swap -----------------------------------------------------------------------------------------------

/** The name the previous container is kept under while (and after) a new one replaces it. */
export function previousName(container: string): string {
  return `${container}-gantry-previous`;
}

/** The name a failed version's container gets while a rollback brings the previous one back. */
export function failedName(container: string): string {
  return `${container}-gantry-failed`;
}

/** What a deployer knows about one container. */
export interface ContainerState {
  id: string;
  /** The image reference it was created with. */
  image: string;
  imageId: string;
  running: boolean;
  labels: Record<string, string>;
}

/** The container that ran before, as the heartbeat details record it (so a retry on another worker knows it). */
export interface RecordedPrevious {
  id: string;
  image: string;
}

export type SwapPlan =
  | { kind: 'unchanged'; previousImage: string | null }
  | {
    kind: 'swap';
    previousImage: string | null;
    /** The container named `<name>` is a leftover of an earlier attempt of this release (created, not running): remove it. */
    removeMain: boolean;
    /** `<name>` runs now: remove an older kept container, then rename `<name>` to `<name>-gantry-previous`. */
    keepMain: boolean;
    /** Remove `<name>-gantry-previous` first (a version older than the one running). */
    removeStalePrevious: boolean;
    /** The container kept as `<name>-gantry-previous` once renamed (what to start again on a failure). */
    kept: RecordedPrevious | null;
  };

/**
 * Decide a swap from what is there now. `main` is the container named `<name>`, `previous` the one named
 * `<name>-gantry-previous`, `imageId` the image to deploy, `recorded` what an earlier attempt of this step recorded
 * in its heartbeat before it touched anything.
 *
 * Whatever point an earlier attempt crashed at, the previous image is found: in the new container's label once it
 * exists, in the kept container while `<name>` is missing, and in the heartbeat details when both are gone.
 */
export function planSwap(main: ContainerState | null, previous: ContainerState | null, imageId: string, release: ReleaseRef, recorded?: RecordedPrevious | null): SwapPlan {
  if (main && main.running && main.imageId === imageId) return { kind: 'unchanged', previousImage: previousImageOf(main, release) };
  if (main && !madeBy(main, release)) {
    return { kind: 'swap', previousImage: main.image, removeMain: false, keepMain: true, removeStalePrevious: previous !== null, kept: { id: main.id, image: main.image } };
  }
  // `<name>` is missing, or an earlier attempt of this release created it and it does not run: the kept
  // container (if any) is what ran before.
  const removeMain = main !== null;
  if (previous) {
    return { kind: 'swap', previousImage: previousImageOf(previous, release), removeMain, keepMain: false, removeStalePrevious: false, kept: { id: previous.id, image: previous.image } };
  }
  const fromLabel = main ? previousImageOf(main, release) : null;
  return { kind: 'swap', previousImage: fromLabel ?? recorded?.image ?? null, removeMain, keepMain: false, removeStalePrevious: false, kept: null };
}

/** Heartbeat details of the deploy step: the phase, and what ran before on every target it looked at. */
export interface DeployProgress {
  phase: string;
  target?: string;
  detail?: string;
  /** Target name → the container that ran there before this step touched it (null: none). */
  previous: Record<string, RecordedPrevious | null>;
}

/** What an earlier attempt of this activity recorded about `target` before it touched it. */
export function recordedPrevious(target: string): RecordedPrevious | null | undefined {
  const details = activityContext()?.info.heartbeatDetails as Partial<DeployProgress> | undefined;
  const previous = details && typeof details === 'object' ? details.previous : undefined;
  return previous && Object.hasOwn(previous, target) ? previous[target] : undefined;
}

/** Carry over what earlier attempts recorded, so every heartbeat of this attempt still holds it. */
export function newProgress(): DeployProgress {
  const details = activityContext()?.info.heartbeatDetails as Partial<DeployProgress> | undefined;
  return { phase: 'start', previous: { ...(details && typeof details === 'object' && details.previous ? details.previous : {}) } };
}

/** The container serving before this step touches anything: `<name>` unless an earlier attempt of this release made it. */
export function servingBefore(main: ContainerState | null, previous: ContainerState | null, release: ReleaseRef): RecordedPrevious | null {
  const c = main && !madeBy(main, release) ? main : previous;
  return c ? { id: c.id, image: c.image } : null;
}
