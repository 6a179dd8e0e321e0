/**
 * The release runbook.
 *
 *   resolve → preflight → tag → build → deploy staging → smoke → approval gate → deploy production → health → announce
 *
 * Read `releaseWorkflow` top to bottom for the runbook. The run's machinery (status, steps, decisions, ending)
 * is in run.ts; the gate and every other message it takes are in messages.ts. Deterministic code only: no Node
 * builtins, no I/O (enforced by ESLint).
 */
import { workflowInfo } from '@temporalio/workflow';
import type { ReleaseRef } from '../activities/types';
import { durationMs } from '../shared/duration';
import { planRelease, tagName } from '../shared/plan';
import type { ReleaseInput, ReleaseStatus, StartRequest } from '../shared/release';
import { ReleaseMessages } from './messages';
import { countRollback } from './metrics';
import { ReleaseRun, ReleaseStopped, StepFailed, summarizeDeploy } from './run';

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

      const staging = config.environments.staging;
      await run.step('deployStaging', (a) => a.deploy({
        release, environment: 'staging', target: staging.deploy, imageRef: image.imageRef, digest: image.digest,
      }), summarizeDeploy);
      await run.step('smoke', (a) => a.smoke({ release, environment: 'staging', checks: staging.checks, windowMs: durationMs(staging.window) }),
        (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') }));

      await gate.gate(image.imageRef, image.digest);

      // Past the gate: production changes. Once the deploy has begun it, health and any rollback run to the end
      // even if the release is cancelled, so production is never left half-deployed.
      const production = config.environments.production;
      const windowMs = durationMs(production.window);
      const verdict = await run.irreversible(async () => {
        const deployed = await run.step('deployProduction', (a) => a.deploy({
          release, environment: 'production', target: production.deploy, imageRef: image.imageRef, digest: image.digest,
        }), summarizeDeploy);
        try {
          await run.step('health', (a) => a.health({ release, environment: 'production', checks: production.checks, windowMs }),
            (r) => ({ checks: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') }), { onFailure: 'return' });
          return { healthy: true as const, deployed };
        } catch (err) {
          if (!(err instanceof StepFailed)) throw err;
          const rb = await run.step('rollback', (a) => a.rollback({
            release, environment: 'production', target: production.deploy, deployed: deployed.targets, checks: production.checks, windowMs,
          }), (r) => ({ restored: r.restored.map((t) => `${t.target} → ${t.image ?? 'removed'}`).join('; '), healthy: String(r.healthy) }),
          { decideOnAnyFailure: true }); // a failed rollback leaves production broken: an operator decides, never a silent end
          countRollback(input.service, rb.healthy);
          return { healthy: false as const, deployed, reason: err.message };
        }
      });

      // The release is decided by now; an announcement that keeps failing waits for an operator (fix the token,
      // the webhook…, then `decide retry`), and `decide abort` leaves it unannounced without changing the outcome.
      const announced = await run.step('announce', (a) => a.announce({
          release, outcome: verdict.healthy ? 'released' : 'rolled_back', announce: config.announce, github: config.github,
          repo: config.repo, commit: tag.commit, tag: tag.tag, digest: image.digest, imageRef: image.imageRef,
          approvers: gate.approvers(), hosts: verdict.deployed.targets.map((t) => t.target), durations: run.durations(),
          actions: run.auditActions(), approvals: gate.approvalRecords(), ...(input.configSha256 ? { configSha256: `sha256:${input.configSha256}` } : {}),
          ...(image.ciRunUrl ? { ciRunUrl: image.ciRunUrl } : {}), ...(verdict.healthy ? {} : { reason: verdict.reason }),
        }), (r) => ({
          webhook: String(r.webhookSent), audit: String(r.auditLogged),
          ...(r.notesPath ? { notes: r.notesPath } : {}), ...(r.githubReleaseUrl ? { githubRelease: r.githubReleaseUrl } : {}),
        }), { decideOnAnyFailure: true }).then(() => '', (err: unknown) => {
          if (err instanceof StepFailed && err.outcome === 'aborted') return ` The announcement was abandoned by decision (${err.message}); announce by hand.`;
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
