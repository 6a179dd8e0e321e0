/**
 * Release steps that do nothing and answer like a successful first attempt, for the benches that measure the
 * release workflow's own cost (overhead, floor, scale, latency). `resolvePlan` answers the test fixtures' plan
 * (declared approvals: alice and bob) for the requested version.
 */
import type { ReleaseActivities } from '../../src/activities/types';
import { sampleInput } from '../../test/helpers/fixtures';
import type { BareActivities } from '../bare-workflow';

export interface NoopHooks {
  /** Every step call, by activity name (deploy and checks with their environment: `deploy:production`). */
  onCall?: (name: string, workflowId: string) => void;
  /** Smoke passed: the gate opens with the workflow task that follows. */
  onSmoke?: (workflowId: string) => void;
}

export function noopReleaseActivities(hooks: NoopHooks = {}): ReleaseActivities & BareActivities {
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
    recordEnd: (r) => counted('recordEnd', r.release.workflowId, { attempt: 1, webhookSent: false, auditLogged: false }),
    noop: () => counted('noop', '', { attempt: 1 }),
  };
}
