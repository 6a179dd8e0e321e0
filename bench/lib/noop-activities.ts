/**
 * Release steps that do nothing and answer like a successful first attempt, for the benches that measure the
 * release workflow's own cost (overhead, floor, scale, latency). `resolvePlan` answers the test fixtures' plan
 * (declared approvals: alice and bob) for the requested version.
 */
import type { GovernanceActivities, ReleaseActivities } from '../../src/activities/types';
import { sampleInput } from '../../test/helpers/fixtures';
import type { BareActivities } from '../bare-workflow';

export interface NoopHooks {
  /** Every step call, by activity name (deploy and checks with their environment: `deploy:production`). */
  onCall?: (name: string, workflowId: string) => void;
  /** Smoke passed: the gate opens with the workflow task that follows. */
  onSmoke?: (workflowId: string) => void;
}

export function noopReleaseActivities(hooks: NoopHooks = {}): ReleaseActivities & GovernanceActivities & BareActivities {
  const digest = `sha256:${'0'.repeat(64)}`;
  const checks = [{ name: 'health', url: 'http://127.0.0.1/health', ok: true, status: 200, detail: '200' }];
  const counted = <T>(name: string, workflowId: string, v: T): Promise<T> => {
    hooks.onCall?.(name, workflowId);
    return Promise.resolve(v);
  };
  return {
    resolvePlan: (r) => counted('resolvePlan', r.workflowId ?? '', { attempt: 1, input: sampleInput({ version: r.version }) }),
    preflight: (r) => counted('preflight', r.release.workflowId, { attempt: 1, commit: 'c'.repeat(40), checks: [] }),
    tag: (r) => counted('tag', r.release.workflowId, { attempt: 1, tag: `v${r.release.version}`, commit: r.commit, created: true }),
    build: (r) => counted('build', r.release.workflowId, {
      attempt: 1, image: `${r.image.registry}/${r.image.name}:${r.tag}`, digest, imageRef: `${r.image.registry}/${r.image.name}@${digest}`, built: true,
    }),
    deploy: (r) => counted(`deploy:${r.environment}`, r.release.workflowId, {
      attempt: 1, environment: r.environment, targets: [{ target: 'bench', previousImage: null, image: r.imageRef, changed: true }],
    }),
    smoke: (r) => {
      hooks.onSmoke?.(r.release.workflowId);
      return counted('smoke', r.release.workflowId, { attempt: 1, checks });
    },
    health: (r) => counted('health', r.release.workflowId, { attempt: 1, checks }),
    rollback: (r) => counted('rollback', r.release.workflowId, { attempt: 1, restored: [], healthy: true }),
    announce: (r) => counted('announce', r.release.workflowId, { attempt: 1, webhookSent: false, auditLogged: false }),
    // The per-channel announce: the sample config enables no channel, so the plan is the whole step.
    announcePlan: (r) => counted('announce', r.release.workflowId, { attempt: 1, channels: [] }),
    announceChannel: (r) => counted('announceChannel', r.release.workflowId, { attempt: 1, channel: r.channel, ok: true, skipped: true, detail: 'bench' }),
    recordEnd: (r) => counted('recordEnd', r.release.workflowId, { attempt: 1, webhookSent: false, auditLogged: false }),
    noop: () => counted('noop', '', { attempt: 1 }),
    // Governance: every lane is granted at once and nothing is frozen, so the benches measure the release itself
    // (a real lane is one more workflow per service and environment; the lab release in \`bench script\` runs them).
    laneEnqueue: (r) => {
      const at = new Date().toISOString();
      return counted('laneEnqueue', r.workflowId, {
        attempt: 1, service: r.service, environment: r.environment, queue: [], position: 0, updatedAt: at,
        holder: { workflowId: r.workflowId, runId: r.runId, version: r.version, since: at, heldSince: at },
      });
    },
    checkFreeze: () => counted('checkFreeze', '', { attempt: 1, frozen: false, freezes: [] }),
    notify: (r) => counted('notify', r.workflowId, { attempt: 1, sent: false, detail: 'bench' }),
  };
}
