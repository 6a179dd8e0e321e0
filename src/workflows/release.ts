/**
 * The release runbook.
 *
 *   resolve → preflight → tag → build
 *     → for each environment before production (e.g. staging, qa): its lane → [its gate] → deploy → smoke
 *     → production's lane → approval gate (freezes, break-glass) → deploy production → health → announce
 *                                                                        └─ health fails → rollback
 *
 * Read `releaseWorkflow` top to bottom for the runbook. The run's machinery (status, steps, decisions, lanes,
 * ending) is in run.ts; the gate and every other message it takes are in messages.ts. Deterministic code only:
 * no Node builtins, no I/O (enforced by ESLint).
 */
import { workflowInfo } from '@temporalio/workflow';
import type { ReleaseRef } from '../activities/types';
import { durationMs } from '../shared/duration';
import { planRelease, tagName } from '../shared/plan';
import type { ReleaseInput, ReleaseStatus, StartRequest } from '../shared/release';
import { ReleaseMessages } from './messages';
import { countRollback } from './metrics';
import { ReleaseRun, ReleaseStopped, StepFailed, StepSkipped, summarizeDeploy } from './run';

export { ReleaseRun, ReleaseStopped, StepFailed, summarizeDeploy, ReleaseMessages };

/**
 * A release. Its input is the start request (service, version, requester, signature); releases started before
 * the worker resolved plans carried the whole config snapshot, and keep running on it.
 */
export async function releaseWorkflow(start: StartRequest | ReleaseInput): Promise<ReleaseStatus> {
  const run = new ReleaseRun(start);
  const gate = new ReleaseMessages(run);
  gate.install();
  return run.main(async () => {
    try {
      // The plan comes from the worker's config, never from the input; who started it is verified here.
      const input = await run.resolve();
      if (input.dryRun) return run.finishPlanned(planRelease(input));
      const { config } = input;
      const release: ReleaseRef = { service: input.service, version: input.version, workflowId: workflowInfo().workflowId };

      const pre = await run.step('preflight', (a) => a.preflight({
        release, repo: config.repo, github: config.github, ...(config.announce.artifactsDir ? { artifactsDir: config.announce.artifactsDir } : {}),
      }), (r) => ({ commit: r.commit, checks: r.checks.map((c) => c.name).join(', ') }));

      const tag = await run.step('tag', (a) => a.tag({ release, repo: config.repo, commit: pre.commit }),
        (r) => ({ tag: r.tag, commit: r.commit, created: String(r.created) }));

      const image = await run.step('build', (a) => a.build({
        release, repo: config.repo, image: config.image, build: config.build, github: config.github, tag: tag.tag, commit: tag.commit,
      }), (r) => ({ image: r.image, digest: r.digest, imageRef: r.imageRef, ...(r.ciRunUrl ? { ciRunUrl: r.ciRunUrl } : {}) }));

      // The environments before production, in the config's order. Each is held by one release at a time (its
      // lane), may have a gate of its own, and must pass its smoke checks. A hotfix skips them all.
      const environments = run.environments();
      const production = environments[environments.length - 1]!;
      for (const env of environments.slice(0, -1)) {
        if (run.status.hotfix) {
          run.skipEnvironment(env);
          continue;
        }
        await run.enterEnvironment(env);
        if (env.gated) await gate.gate(env, image.imageRef, image.digest);
        await run.step(env.deploy, (a) => a.deploy({
          release, environment: env.name, target: env.config.deploy, imageRef: image.imageRef, digest: image.digest,
        }), summarizeDeploy);
        await run.step(env.check, (a) => a.smoke({
          release, environment: env.name, checks: env.config.checks, windowMs: durationMs(env.config.window), ...failureLimit(env.config),
        }),
          (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') })).catch(passSkipped);
        run.leaveEnvironment(env);
      }

      // Production: its lane, then the approval gate, the only way to the irreversible steps.
      await run.enterEnvironment(production);
      await gate.gate(production, image.imageRef, image.digest);

      // Past the gate: production changes. Once the deploy has begun it, health and any rollback run to the end
      // even if the release is cancelled, so production is never left half-deployed.
      const windowMs = durationMs(production.config.window);
      const verdict = await run.irreversible(async () => {
        const deployed = await run.step('deployProduction', (a) => a.deploy({
          release, environment: production.name, target: production.config.deploy, imageRef: image.imageRef, digest: image.digest,
        }), summarizeDeploy);
        try {
          await run.step('health', (a) => a.health({ release, environment: production.name, checks: production.config.checks, windowMs, ...failureLimit(production.config) }),
            (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') }), { onFailure: 'return' });
          return { healthy: true as const, deployed };
        } catch (err) {
          if (!(err instanceof StepFailed)) throw err;
          const rb = await run.step('rollback', (a) => a.rollback({
            release, environment: production.name, target: production.config.deploy, deployed: deployed.targets, checks: production.config.checks, windowMs,
            ...failureLimit(production.config),
          }), (r) => ({ restored: r.restored.map((t) => `${t.target} → ${t.image ?? 'removed'}`).join('; '), healthy: String(r.healthy) }),
          { decideOnAnyFailure: true }); // a failed rollback leaves production broken: an operator decides, never a silent end
          countRollback(input.service, rb.healthy);
          return { healthy: false as const, deployed, reason: err.message };
        }
      });

      // The release is decided by now; an announcement that keeps failing waits for an operator (fix the token,
      // the webhook…, then `decide retry`); `decide abort` (or `skip`, where config allows) leaves it unannounced
      // without changing the outcome. Each channel is delivered by an activity of its own (run.ts: announce).
      const announced = await run.announce(() => ({
          release, outcome: verdict.healthy ? 'released' : 'rolled_back', announce: config.announce, github: config.github,
          repo: config.repo, commit: tag.commit, tag: tag.tag, digest: image.digest, imageRef: image.imageRef,
          approvers: gate.approvers(), hosts: verdict.deployed.targets.map((t) => t.target), durations: run.durations(),
          actions: run.auditActions(), approvals: gate.approvalRecords(), ...(input.configSha256 ? { configSha256: `sha256:${input.configSha256}` } : {}),
          ...(image.ciRunUrl ? { ciRunUrl: image.ciRunUrl } : {}), ...(verdict.healthy ? {} : { reason: verdict.reason }),
          ...(run.governed ? { governance: gate.governanceNotes() } : {}),
        })).then(() => '', (err: unknown) => {
          if (err instanceof StepFailed && err.outcome === 'aborted') return ` The announcement was abandoned by decision (${err.message}); announce by hand.`;
          if (err instanceof StepSkipped) return ` The announcement was skipped by decision (${err.message}); announce by hand.`;
          throw err;
        });

      if (!verdict.healthy) {
        // Failing the execution (GantryReleaseRolledBack) rather than returning: a rolled-back release is not a
        // success, and Temporal's list, UI and alerts should show it as failed.
        throw new ReleaseStopped('rolled_back', `Production health failed (${verdict.reason}); rolled back to the previous image. ` +
          `Fix the release and start a new version; \`gantry history ${input.service} ${input.version}\` shows the failing checks.${announced}`);
      }
      return run.end('succeeded', `${input.service} ${tagName(input.version)} is live in production (${image.imageRef}).${announced}`);
    } catch (err) {
      return await run.fail(err);
    }
  });
}

/** How many wrong answers in a row end a check early, as the environment's config says (absent: the checks' default). */
function failureLimit(env: { failureLimit?: number }): { failureLimit?: number } {
  return env.failureLimit !== undefined ? { failureLimit: env.failureLimit } : {};
}

/** A smoke check an operator decided to skip (`decide skip`, where config marks it skippable) lets the release go on. */
function passSkipped(err: unknown): undefined {
  if (err instanceof StepSkipped) return undefined;
  throw err;
}
