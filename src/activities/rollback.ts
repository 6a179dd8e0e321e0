/**
 * Rollback step: put back, on every target the failed deploy changed, the image that ran there before (remove
 * the container where nothing ran), then verify the environment's health with the injected checker.
 *
 * A target needs restoring when its previousImage differs from the image deployed (see deploy.ts: a retried
 * deploy reports `changed: false` for a target an earlier attempt already replaced, with the true previous
 * image). `healthy` is what the checks say afterwards; a target that cannot be restored is a non-retryable
 * RollbackFailed naming the manual fix, while a target that does not answer is retried.
 */
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import type { HttpCheck } from '../config/schema';
import { deployerFor } from './deploy';
import type { Deployers, Restored } from './docker';
import { beat, currentAttempt } from './heartbeat';
import type { RollbackRequest, RollbackResult, VerifyRequest, VerifyResult } from './types';

export interface RollbackDeps {
  deployers: Deployers;
  /** The HTTP checks (the health step's implementation), injected by the worker. */
  verify: (req: VerifyRequest) => Promise<VerifyResult>;
}

export function createRollback(deps: RollbackDeps): (req: RollbackRequest) => Promise<RollbackResult> {
  return async function rollback(req: RollbackRequest): Promise<RollbackResult> {
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
    let healthy: boolean;
    try {
      const release = restoredVersion ? { ...req.release, version: restoredVersion } : req.release;
      if (checks.length === 0) return { attempt: currentAttempt(), restored: result, healthy: false };
      const verified = await deps.verify({ release, environment: req.environment, checks, windowMs: req.windowMs });
      healthy = verified.checks.every((c) => c.ok);
    } catch (err) {
      // A wrong answer after the window is a verdict (unhealthy), not a failure of the rollback itself.
      if (err instanceof ApplicationFailure && err.nonRetryable) healthy = false;
      else throw err;
    }
    return { attempt: currentAttempt(), restored: result, healthy };
  };
}

function mentionsVersion(check: HttpCheck): boolean {
  return JSON.stringify([check.url, check.expect]).includes('{version}');
}
