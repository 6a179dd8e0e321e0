/**
 * Rollback step: put back, on every target the failed deploy changed, the image that ran there before (its kept
 * container started again; pulled and created only when that is gone; the container removed where nothing ran),
 * then verify the environment's health with the injected checker.
 *
 * A target needs restoring when its previousImage differs from the image deployed (see deploy.ts: a retried
 * deploy reports `changed: false` for a target an earlier attempt already replaced, with the true previous
 * image). A target that cannot be restored is a non-retryable RollbackFailed naming the manual fix, while a
 * target that does not answer is retried. A restored version that fails its checks is a non-retryable
 * RollbackUnhealthy saying which targets run it: the workflow then waits for an operator.
 */
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import type { HttpCheck } from '../config/schema';
import { deployerFor } from './deploy';
import type { Deployers, Restored } from './deployer';
import { beat, currentAttempt, heartbeating } from './heartbeat';
import type { RollbackRequest, RollbackResult, VerifyRequest, VerifyResult } from './types';

export interface RollbackDeps {
  deployers: Deployers;
  /** The HTTP checks (the health step's implementation), injected by the worker. */
  verify: (req: VerifyRequest) => Promise<VerifyResult>;
}

export function createRollback(deps: RollbackDeps): (req: RollbackRequest) => Promise<RollbackResult> {
  return heartbeating(async function rollback(req: RollbackRequest): Promise<RollbackResult> {
    const deployer = deployerFor(deps.deployers, req.target);
    const todo = req.deployed.filter((t) => t.changed || t.previousImage !== t.image);
    const restored: Restored[] = [];
    for (const t of todo) {
      beat({ phase: 'restore', target: t.target, image: t.previousImage });
      try {
        restored.push(await deployer.restore({ release: req.release, environment: req.environment, target: req.target, deployed: t }));
      } catch (err) {
        if (err instanceof ApplicationFailure && !err.nonRetryable) throw err;
        const reason = err instanceof Error ? err.message : String(err);
        const done = restored.map((r) => `${r.target} → ${r.image ?? 'removed'}`).join(', ') || 'none';
        throw nonRetryable(GantryErrorType.RollbackFailed,
          `Could not roll ${t.target} back to ${t.previousImage ?? '(no container)'}: ${reason} ${req.environment} may still run the failed image ${t.image} there. ` +
          `Restore it by hand (run ${t.previousImage ?? 'nothing'} as ${'container' in req.target ? req.target.container : 'the container'}). Already restored: ${done}.`,
          { target: t.target, previousImage: t.previousImage, failedImage: t.image, restored });
      }
    }

    // Nothing ran before this release anywhere: with the containers removed there is nothing to answer checks.
    const result = restored.map(({ target, image }) => ({ target, image }));
    if (todo.length > 0 && restored.every((r) => r.image === null)) {
      return { attempt: currentAttempt(), restored: result, healthy: false };
    }

    // The checks describe the release's version ("/version equals {version}"), but what runs now is the previous
    // one: expand {version} with the restored images' version when they agree on one, else leave those checks out.
    const versions = new Set(restored.filter((r) => r.image !== null).map((r) => r.version));
    const restoredVersion = versions.size === 1 ? [...versions][0] : undefined;
    const checks = restoredVersion || todo.length === 0 ? req.checks : req.checks.filter((c) => !mentionsVersion(c));
    beat({ phase: 'verify', environment: req.environment, version: restoredVersion ?? null });
    const release = restoredVersion ? { ...req.release, version: restoredVersion } : req.release;
    const where = restored.filter((r) => r.image !== null).map((r) => `${r.target} → ${r.image}`).join(', ');
    const what = where ? `${req.environment} runs the previous version${restoredVersion ? ` ${restoredVersion}` : ''} again (${where})`
      : `the release did not change ${req.environment}`;
    if (checks.length === 0) {
      throw unhealthy(`The rollback could not verify the restored version: ${what}, but every check mentions {version} and the restored images do not say which version they are, so nothing could verify it. ` +
        `Check ${req.environment} by hand; then \`gantry decide retry ${req.release.service} ${req.release.version}\` to check again, or \`gantry decide abort ${req.release.service} ${req.release.version}\` to end the release.`, result);
    }
    let failing: string | undefined;
    try {
      const { failureLimit } = req;
      const verified = await deps.verify({ release, environment: req.environment, checks, windowMs: req.windowMs, ...(failureLimit !== undefined ? { failureLimit } : {}) });
      if (!verified.checks.every((c) => c.ok)) failing = verified.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ');
    } catch (err) {
      // Wrong answers are the verdict; nothing answering yet (retryable) and cancellation are not.
      if (!(err instanceof ApplicationFailure && err.nonRetryable)) throw err;
      failing = err.message;
    }
    if (failing !== undefined) {
      throw unhealthy(`The rollback restored an unhealthy version: ${what}, but it fails its health checks too: ${failing}\n` +
        `${req.environment} is unhealthy on the previous version as well. Look at what changed besides the release (a database, a dependency, the host), fix it, ` +
        `then \`gantry decide retry ${req.release.service} ${req.release.version}\` to check again; or deploy a known-good version by hand and \`gantry decide abort ${req.release.service} ${req.release.version}\`.`, result);
    }
    return { attempt: currentAttempt(), restored: result, healthy: true };
  });
}

function unhealthy(message: string, restored: { target: string; image: string | null }[]): ApplicationFailure {
  return nonRetryable(GantryErrorType.RollbackUnhealthy, message, { restored });
}

function mentionsVersion(check: HttpCheck): boolean {
  return JSON.stringify([check.url, check.expect]).includes('{version}');
}
