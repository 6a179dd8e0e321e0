/**
 * `npm run bench -- swap [--runs 3]`: swap and restore on the release lab, a benchmark, not a test.
 *
 * Starts a lab of its own (Podman's API, registry, sshd; `bash scripts/lab/provision.sh` must have run), builds the
 * sample service's good (1.0.0) and broken (1.1.0, /health answers 404) revisions and, on the production target
 * (kind ssh), measures for each run:
 *   (a) the gap in service during a swap: GET /version every ~20 ms while 1.0.0 is replaced by 1.1.0, and the
 *       longest run of failed requests (no answer), in ms from the last answer before it to the first after it;
 *   (b) the restore time: from the broken version's first failing health check to the previous version serving
 *       again (/version answers 1.0.0), through the real health checks (default failure limit) and rollback.
 * The steps run in this process, as the worker runs them, without the Temporal server between them. Prints every
 * run and the worst of each, with the deploy step's own duration (the ssh deployer's speed).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createBuildDocker } from '../src/activities/build-docker';
import { runChecks } from '../src/activities/checks';
import { createDeploy, createDeployers } from '../src/activities/deploy';
import { failedName, previousName } from '../src/activities/deployer';
import { createRollback } from '../src/activities/rollback';
import type { BuildResult, DeployRequest } from '../src/activities/types';
import { parseConfig } from '../src/config/load';
import { startLab } from '../src/lab';

/** Poll `url` every `everyMs` until stopped; the longest stretch without an answer, in ms. */
function poller(url: string, everyMs = 20) {
  let stopped = false;
  let lastOk = performance.now();
  let failing = false;
  let longest = 0;
  let failed = 0;
  let requests = 0;
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      requests += 1;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(500) });
        await res.text();
        if (failing) longest = Math.max(longest, performance.now() - lastOk);
        failing = false;
        lastOk = performance.now();
      } catch {
        failing = true;
        failed += 1;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (performance.now() - t))));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      if (failing) longest = Math.max(longest, performance.now() - lastOk);
      return { longestGapMs: longest, failed, requests };
    },
  };
}

async function waitForVersion(url: string, version: string, timeoutMs = 60_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(500) });
      if (res.ok && ((await res.json()) as { version?: string }).version === version) return performance.now();
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${url} did not answer version ${version} within ${timeoutMs} ms`);
}

export interface SwapFigures {
  /** Worst gap in service during a swap, in ms. */
  gapMs: number;
  /** Worst time from the broken version's first failing check to the previous version serving, in ms. */
  restoreMs: number;
  /** Worst production deploy over ssh, in ms. */
  deployMs: number;
}

/** Restore target of issue 10: the previous version serving within 10 s of the bad version's first failing check. */
export const RESTORE_TARGET_MS = 10_000;

export async function swapBench(opts: { runs: number; write: (line: string) => void }): Promise<{ code: number; figures: SwapFigures }> {
  const { runs, write } = opts;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-swap-'));
  const lab = await startLab({ dir });
  try {
    const service = parseConfig(lab.configYaml, lab.configFile).services.hello!;
    const production = service.environments.production!;
    const build = createBuildDocker({ env: process.env });
    const images: Record<'good' | 'broken', BuildResult> = {} as never;
    for (const revision of ['good', 'broken'] as const) {
      const { version, commit } = lab.repo[revision];
      execFileSync('git', ['tag', '--annotate', '--force', '--message', `release v${version}`, `v${version}`, commit], {
        cwd: lab.repo.url, env: { ...process.env, GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@lab.invalid' }, stdio: 'ignore',
      });
      images[revision] = await build({ release: { service: 'hello', version, workflowId: `release-hello-${version}` }, repo: service.repo, image: service.image, build: service.build, tag: `v${version}`, commit });
    }
    const deployers = createDeployers({ env: process.env });
    const deploy = createDeploy({ deployers });
    const health = (req: Parameters<typeof runChecks>[0]) => runChecks(req);
    const rollback = createRollback({ deployers, verify: health });
    let seq = 0;
    const request = (revision: 'good' | 'broken'): DeployRequest => {
      const version = lab.repo[revision].version;
      seq += 1;
      return { release: { service: 'hello', version, workflowId: `release-hello-${version}-bench${seq}` }, environment: 'production', target: production.deploy, imageRef: images[revision].imageRef, digest: images[revision].digest };
    };
    const versionUrl = `${lab.production.url}/version`;
    const windowMs = 5 * 60_000;

    const rows: { deployMs: number; gapMs: number; failed: number; requests: number; restoreMs: number; healthMs: number; rollbackMs: number }[] = [];
    for (let run = 1; run <= runs; run++) {
      await deploy(request('good'));
      await waitForVersion(versionUrl, '1.0.0');

      // (a) the gap while 1.0.0 is swapped for 1.1.0
      const poll = poller(versionUrl);
      await new Promise((r) => setTimeout(r, 200));
      const bad = request('broken');
      const t0 = performance.now();
      const deployed = await deploy(bad);
      const deployMs = performance.now() - t0;
      await waitForVersion(versionUrl, '1.1.0');
      await new Promise((r) => setTimeout(r, 200));
      const gap = await poll.stop();

      // (b) first failing health check of 1.1.0 → 1.0.0 serving again
      const firstCheck = performance.now(); // the first round's requests go out at once, and /health answers 404
      let healthFailedAt = firstCheck;
      try {
        await health({ release: bad.release, environment: 'production', checks: production.checks, windowMs });
        throw new Error('the broken version passed its health checks');
      } catch (err) {
        if ((err as Error).message.startsWith('the broken version')) throw err;
        healthFailedAt = performance.now();
      }
      const restoring = rollback({ release: bad.release, environment: 'production', target: production.deploy, deployed: deployed.targets, checks: production.checks, windowMs });
      const serving = await waitForVersion(versionUrl, '1.0.0');
      const rollbackResult = await restoring;
      if (!rollbackResult.healthy) throw new Error('the rollback did not end healthy');
      const row = {
        deployMs, gapMs: gap.longestGapMs, failed: gap.failed, requests: gap.requests,
        restoreMs: serving - firstCheck, healthMs: healthFailedAt - firstCheck, rollbackMs: serving - healthFailedAt,
      };
      rows.push(row);
      write(`run ${run}: ssh deploy ${row.deployMs.toFixed(0)} ms; swap gap ${row.gapMs.toFixed(0)} ms (${row.failed} of ${row.requests} requests failed); ` +
        `restore ${row.restoreMs.toFixed(0)} ms (health ended after ${row.healthMs.toFixed(0)} ms, previous serving ${row.rollbackMs.toFixed(0)} ms later)`);
    }
    const worst = (k: keyof (typeof rows)[number]) => Math.max(...rows.map((r) => r[k]));
    const figures = { gapMs: worst('gapMs'), restoreMs: worst('restoreMs'), deployMs: worst('deployMs') };
    write(`worst of ${runs}: ssh deploy ${figures.deployMs.toFixed(0)} ms; gap in service during a swap ${figures.gapMs.toFixed(0)} ms; ` +
      `restore (first failing check → previous version serving) ${figures.restoreMs.toFixed(0)} ms ` +
      `(target ≤ ${RESTORE_TARGET_MS} ms: ${figures.restoreMs <= RESTORE_TARGET_MS ? 'met' : 'MISSED'})`);
    return { code: 0, figures };
  } finally {
    for (const base of [lab.staging.container, lab.production.container]) {
      for (const n of [previousName(base), failedName(base)]) await lab.docker.getContainer(n).remove({ force: true }).catch(() => undefined);
    }
    await lab.stop({ removeImages: true });
    rmSync(dir, { recursive: true, force: true });
  }
}
