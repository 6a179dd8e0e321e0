/**
 * `gantry report` and the release-history export (`gantry list --json` / `--csv`).
 *
 * First the pure parts on their own (the CSV writer, the window, the quantiles, reading one history, the figures
 * over hand-made releases, and the real preflight recording the commit time from a real git repository). Then
 * the built CLI on a real dev server with a worker over step doubles: a set of real releases (succeeded, rolled
 * back, failed after production changed, rejected, another service) approved one at a time, and the report and
 * the export checked against what those releases did.
 */
import type { DeliveryReport } from '../../src/client/report';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPayloadConverter } from '@temporalio/common';
import type { History } from '@temporalio/common/lib/proto-utils';
import { msToTs } from '@temporalio/common/lib/time';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { createPreflight } from '../../src/activities/preflight';
import type { PreflightRequest, PreflightResult } from '../../src/activities/types';
import { csvField, toCsv } from '../../src/client/list';
import { computeReport, parseWhen, quantile, releaseFacts, reportQuery, reportWindow, type ReleaseFacts } from '../../src/client/report';
import { UsageError } from '../../src/client/errors';
import { statusQuery } from '../../src/shared/release';
import { createTestRepo } from '../helpers/git-repos';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import {
  gantry, removeTempDirs, requireBuild, routedActivities, show, startWorker, tempDir, waitFor, writeConfig, type CliResult,
} from './harness';

/** A small RFC 4180 reader, written here independently of the writer under test. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch === '"') {
      quoted = true;
    } else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else {
      field += ch;
    }
  }
  if (field !== '' || row.length > 0) throw new Error(`CSV does not end with CRLF: ${JSON.stringify(text.slice(-40))}`);
  return rows;
}

describe('CSV writer', () => {
  it('leaves plain text, numbers and booleans as they are, and nothing as an empty cell', () => {
    expect(csvField('hello')).toBe('hello');
    expect(csvField('release-hello-1.0.0')).toBe('release-hello-1.0.0');
    expect(csvField('2026-05-01T09:00:00.000Z')).toBe('2026-05-01T09:00:00.000Z');
    expect(csvField(12.345)).toBe('12.345');
    expect(csvField(0)).toBe('0');
    expect(csvField(-1.5)).toBe('-1.5');
    expect(csvField(true)).toBe('true');
    expect(csvField(undefined)).toBe('');
    expect(csvField(null)).toBe('');
    expect(csvField(Number.NaN)).toBe('');
    expect(csvField('')).toBe('');
  });

  it('quotes a field holding a comma, a double quote (doubled), CR, LF or edge spaces', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('"')).toBe('""""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('cr\rhere')).toBe('"cr\rhere"');
    expect(csvField(' padded')).toBe('" padded"');
    expect(csvField('padded ')).toBe('"padded "');
    expect(csvField('in side')).toBe('in side');
  });

  it('defuses text a spreadsheet would run as a formula, and never changes numbers', () => {
    expect(csvField('=1+2')).toBe("'=1+2");
    expect(csvField('+1')).toBe("'+1");
    expect(csvField('-x')).toBe("'-x");
    expect(csvField('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvField('\tx')).toBe("'\tx");
    expect(csvField('=HYPERLINK("http://x","y")')).toBe('"\'=HYPERLINK(""http://x"",""y"")"');
    expect(csvField(-3)).toBe('-3');
  });

  it('writes a header row and one row per record, each ended by CRLF, that an RFC 4180 reader reads back', () => {
    const rows = [['a', 1, 'x,y'], ['b "q"', undefined, 'line\nbreak']];
    const text = toCsv(['name', 'n', 'note'], rows);
    expect(text).toBe('name,n,note\r\na,1,"x,y"\r\n"b ""q""",,"line\nbreak"\r\n');
    expect(parseCsv(text)).toEqual([['name', 'n', 'note'], ['a', '1', 'x,y'], ['b "q"', '', 'line\nbreak']]);
    expect(toCsv(['only'], [])).toBe('only\r\n');
  });
});

describe('the report window', () => {
  const now = new Date('2026-05-10T12:00:00.000Z');

  it('takes a duration back from now in minutes, hours, days or weeks', () => {
    expect(parseWhen('7d', '--since', now).toISOString()).toBe('2026-05-03T12:00:00.000Z');
    expect(parseWhen('30d', '--since', now).toISOString()).toBe('2026-04-10T12:00:00.000Z');
    expect(parseWhen('12h', '--since', now).toISOString()).toBe('2026-05-10T00:00:00.000Z');
    expect(parseWhen('90m', '--since', now).toISOString()).toBe('2026-05-10T10:30:00.000Z');
    expect(parseWhen('2w', '--since', now).toISOString()).toBe('2026-04-26T12:00:00.000Z');
    expect(parseWhen('1.5d', '--since', now).toISOString()).toBe('2026-05-09T00:00:00.000Z');
  });

  it('takes a date (midnight UTC) or a date and time (UTC unless it names its zone)', () => {
    expect(parseWhen('2026-05-01', '--since', now).toISOString()).toBe('2026-05-01T00:00:00.000Z');
    expect(parseWhen('2026-05-01T09:30:00Z', '--since', now).toISOString()).toBe('2026-05-01T09:30:00.000Z');
    expect(parseWhen('2026-05-01T09:30', '--since', now).toISOString()).toBe('2026-05-01T09:30:00.000Z');
    expect(parseWhen('2026-05-01 09:30:00+02:00', '--since', now).toISOString()).toBe('2026-05-01T07:30:00.000Z');
    expect(parseWhen('2026-05-01T09:30:00.250Z', '--until', now).toISOString()).toBe('2026-05-01T09:30:00.250Z');
  });

  it('refuses anything else, the future and an empty window, as usage errors naming the flag', () => {
    for (const bad of ['yesterday', '30', '0d', '-7d', '7 days', '2026-13-01', '2026-05-01T25:00:00Z', '']) {
      expect(() => parseWhen(bad, '--since', now), bad).toThrow(UsageError);
    }
    expect(() => parseWhen('nope', '--until', now)).toThrow(/--until "nope" is neither a duration nor a date/);
    expect(() => parseWhen('2026-06-01', '--since', now)).toThrow(/in the future/);
    expect(() => reportWindow({ since: '1d', until: '2d' }, now)).toThrow(/--until .* is not after --since/);
    expect(reportWindow({}, now)).toEqual({ since: new Date('2026-04-10T12:00:00.000Z') });
    expect(reportWindow({ since: '2026-05-01', until: '2026-05-08' }, now))
      .toEqual({ since: new Date('2026-05-01T00:00:00.000Z'), until: new Date('2026-05-08T00:00:00.000Z') });
  });

  it('lists releases that ended in the window, of one service, with values that cannot change the query', () => {
    const since = new Date('2026-05-01T00:00:00.000Z');
    const until = new Date('2026-05-08T00:00:00.000Z');
    expect(reportQuery(since, 'hello', until)).toBe("WorkflowType = 'releaseWorkflow' AND ExecutionStatus != 'Running' AND " +
      "CloseTime >= '2026-05-01T00:00:00.000Z' AND CloseTime <= '2026-05-08T00:00:00.000Z' AND GantryService = 'hello'");
    expect(reportQuery(since)).toBe("WorkflowType = 'releaseWorkflow' AND ExecutionStatus != 'Running' AND CloseTime >= '2026-05-01T00:00:00.000Z'");
    expect(() => reportQuery(since, "x' OR 1=1")).toThrow(UsageError);
  });
});

describe('quantiles', () => {
  it('interpolate linearly between closest ranks; the median of an even count is the mean of the middle two', () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(quantile([7], 0.5)).toBe(7);
    expect(quantile([7], 0.9)).toBe(7);
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4], 0.9)).toBeCloseTo(3.7, 12);
    expect(quantile([10, 30, 20], 0.5)).toBe(20);
    expect(quantile([10, 20, 30], 0.9)).toBeCloseTo(28, 12);
    expect(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9)).toBeCloseTo(9.1, 12);
    expect(quantile([5, 1], 0)).toBe(1);
    expect(quantile([5, 1], 1)).toBe(5);
  });
});

/** A history event at `at` (ISO) with the given attributes. */
function ev(id: number, at: string, attrs: Record<string, unknown>): NonNullable<History['events']>[number] {
  return { eventId: id, eventTime: msToTs(Date.parse(at)), ...attrs } as unknown as NonNullable<History['events']>[number];
}
const payloads = (...values: unknown[]) => ({ payloads: values.map((v) => defaultPayloadConverter.toPayload(v)) });

describe('reading one history', () => {
  it('finds the start request, the preflight commit time, the production deploy (not staging), health and a healthy rollback', () => {
    const history: History = {
      events: [
        ev(1, '2026-05-01T10:00:00.000Z', { workflowExecutionStartedEventAttributes: { input: payloads({ service: 'hello', version: '1.2.3', requestedBy: 'ops' }) } }),
        ev(5, '2026-05-01T10:00:01.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'preflight' }, input: payloads({}) } }),
        ev(7, '2026-05-01T10:00:02.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 5, result: payloads({ attempt: 1, commit: 'c', commitTime: '2026-05-01T11:59:00+02:00', checks: [] }) } }),
        ev(9, '2026-05-01T10:00:03.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'deploy' }, input: payloads({ environment: 'staging' }) } }),
        ev(11, '2026-05-01T10:00:04.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 9, result: payloads({ attempt: 1 }) } }),
        ev(13, '2026-05-01T10:05:00.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'deploy' }, input: payloads({ environment: 'production' }) } }),
        ev(15, '2026-05-01T10:05:10.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 13, result: payloads({ attempt: 1 }) } }),
        ev(17, '2026-05-01T10:05:11.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'health' }, input: payloads({}) } }),
        ev(19, '2026-05-01T10:06:11.000Z', { activityTaskFailedEventAttributes: { scheduledEventId: 17, failure: { message: 'down' } } }),
        ev(21, '2026-05-01T10:06:12.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'rollback' }, input: payloads({}) } }),
        ev(23, '2026-05-01T10:06:40.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 21, result: payloads({ attempt: 1, restored: [], healthy: true }) } }),
        ev(25, '2026-05-01T10:06:45.000Z', { workflowExecutionFailedEventAttributes: { failure: { message: 'rolled back', applicationFailureInfo: { type: 'GantryReleaseRolledBack' } } } }),
      ],
    };
    expect(releaseFacts(history)).toEqual({
      service: 'hello', version: '1.2.3', requestedBy: 'ops',
      preflightStartedAt: '2026-05-01T10:00:01.000Z',
      commitTime: '2026-05-01T09:59:00.000Z',
      productionDeployStartedAt: '2026-05-01T10:05:00.000Z',
      healthFailedAt: '2026-05-01T10:06:11.000Z',
      rollbackEndedAt: '2026-05-01T10:06:40.000Z',
      rollbackHealthy: true,
      endedAt: '2026-05-01T10:06:45.000Z',
      outcome: 'rolled_back',
    });
  });

  it('tells a production deploy by its summary when its input cannot be decoded, and has no commit time for an older preflight', () => {
    const opaque = { payloads: [{ metadata: { encoding: Buffer.from('binary/encrypted') }, data: Buffer.from('xx') }] };
    const summary = (text: string) => ({ summary: defaultPayloadConverter.toPayload(text) });
    const history: History = {
      events: [
        ev(1, '2026-05-01T10:00:00.000Z', { workflowExecutionStartedEventAttributes: { input: opaque } }),
        ev(5, '2026-05-01T10:00:01.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'preflight' }, input: opaque } }),
        ev(6, '2026-05-01T10:00:02.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 5, result: payloads({ attempt: 1, commit: 'c', checks: [] }) } }),
        ev(7, '2026-05-01T10:00:03.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'deploy' }, input: opaque }, userMetadata: summary('Deploy to staging — hello 1.0.0') }),
        ev(9, '2026-05-01T10:01:00.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'deploy' }, input: opaque }, userMetadata: summary('Deploy to production — hello 1.0.0') }),
        ev(10, '2026-05-01T10:01:30.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 9, result: payloads({ attempt: 1 }) } }),
        ev(11, '2026-05-01T10:01:31.000Z', { activityTaskScheduledEventAttributes: { activityType: { name: 'health' }, input: opaque } }),
        ev(12, '2026-05-01T10:02:00.000Z', { activityTaskCompletedEventAttributes: { scheduledEventId: 11, result: payloads({ attempt: 1, checks: [] }) } }),
        ev(13, '2026-05-01T10:02:05.000Z', { workflowExecutionCompletedEventAttributes: { result: payloads({ outcome: 'succeeded' }) } }),
      ],
    };
    expect(releaseFacts(history)).toEqual({
      preflightStartedAt: '2026-05-01T10:00:01.000Z',
      productionDeployStartedAt: '2026-05-01T10:01:00.000Z',
      healthyAt: '2026-05-01T10:02:00.000Z',
      endedAt: '2026-05-01T10:02:05.000Z',
      outcome: 'succeeded',
    });
  });
});

describe('the figures over hand-made releases', () => {
  const since = new Date('2026-05-01T00:00:00.000Z');
  const until = new Date('2026-05-15T00:00:00.000Z');
  const rel = (version: string, f: Partial<ReleaseFacts>, service = 'hello'): ReleaseFacts => ({
    workflowId: `release-${service}-${version}`, runId: `run-${version}`, status: 'COMPLETED', startedAt: '2026-05-01T00:00:00.000Z',
    service, version, endedAt: '2026-05-14T00:00:00.000Z', ...f,
  });
  const releases: ReleaseFacts[] = [
    // Deployed before the window: not a deployment of it (though it ended in it).
    rel('0.9.0', { outcome: 'succeeded', productionDeployStartedAt: '2026-04-30T23:59:00.000Z', healthyAt: '2026-05-01T00:01:00.000Z', commitTime: '2026-04-30T20:00:00.000Z' }),
    // Healthy, 1 h from commit to healthy production.
    rel('1.0.0', { outcome: 'succeeded', productionDeployStartedAt: '2026-05-02T09:50:00.000Z', healthyAt: '2026-05-02T10:00:00.000Z', commitTime: '2026-05-02T09:00:00.000Z' }),
    // Rolled back, restored by its own rollback 5 min after the deploy began.
    rel('1.1.0', { outcome: 'rolled_back', status: 'FAILED', productionDeployStartedAt: '2026-05-03T10:00:00.000Z', healthFailedAt: '2026-05-03T10:03:00.000Z', rollbackEndedAt: '2026-05-03T10:05:00.000Z', rollbackHealthy: true }),
    // Failed after production changed (deploy failed); another service's healthy release is no restore; 1.3.0 is (2 h).
    rel('1.2.0', { outcome: 'failed', status: 'FAILED', productionDeployStartedAt: '2026-05-04T10:00:00.000Z' }),
    rel('5.0.0', { outcome: 'succeeded', productionDeployStartedAt: '2026-05-04T10:30:00.000Z', healthyAt: '2026-05-04T11:00:00.000Z', commitTime: '2026-05-04T07:30:00.000Z' }, 'world'),
    // Healthy, no commit time: 3 h from the preflight start.
    rel('1.3.0', { outcome: 'succeeded', productionDeployStartedAt: '2026-05-04T11:50:00.000Z', healthyAt: '2026-05-04T12:00:00.000Z', preflightStartedAt: '2026-05-04T09:00:00.000Z' }),
    // Cancelled while production changed, after health passed: a deployment, not a failure; lead 30 min.
    rel('1.4.0', { outcome: 'cancelled', status: 'FAILED', productionDeployStartedAt: '2026-05-05T10:00:00.000Z', healthyAt: '2026-05-05T10:10:00.000Z', commitTime: '2026-05-05T09:40:00.000Z' }),
    // Rolled back and the rollback did not come back healthy: not restored yet (nothing healthy after it).
    rel('1.5.0', { outcome: 'rolled_back', status: 'FAILED', productionDeployStartedAt: '2026-05-06T10:00:00.000Z', healthFailedAt: '2026-05-06T10:02:00.000Z', rollbackEndedAt: '2026-05-06T10:04:00.000Z', rollbackHealthy: false }),
    // Rejected, and a dry run: never reached production.
    rel('1.6.0', { outcome: 'rejected', status: 'FAILED' }),
    rel('1.7.0', { outcome: 'planned' }),
  ];

  it('counts deployments and failures, and gives each rate, lead time and restore by its definition', () => {
    const r = computeReport(releases, { since, until });
    expect(r).toMatchObject({
      service: null, since: since.toISOString(), until: until.toISOString(), windowDays: 14,
      releases: 10, deployments: 7, healthy: 4, failures: 3, rolledBack: 2, failedAfterProductionChanged: 1,
      changeFailureRate: Math.round((3 / 7) * 1e4) / 1e4,
      deploymentFrequency: { perDay: 0.5, perWeek: 3.5 },
      // 30 min, 1 h, 3 h (from the preflight start), 3 h 30 min (world): median (1 h + 3 h) / 2, p90 3 h + 0.7 × 30 min
      leadTime: { samples: 4, fromCommit: 3, fromPreflightStart: 1, medianSeconds: 7200, p90Seconds: 12_060 },
      // 1.1.0 by its rollback in 5 min; 1.2.0 by 1.3.0 in 2 h; 1.5.0 not restored
      timeToRestore: { samples: 2, unrestored: 1, medianSeconds: 3750 },
    });
    const by = Object.fromEntries(r.changes.map((c) => [`${c.service} ${c.version}`, c]));
    // In production order; 0.9.0 (deployed before the window), the rejected one and the dry run are no deployments.
    expect(Object.keys(by)).toEqual(['hello 1.0.0', 'hello 1.1.0', 'hello 1.2.0', 'world 5.0.0', 'hello 1.3.0', 'hello 1.4.0', 'hello 1.5.0']);
    expect(by['hello 1.0.0']).toMatchObject({ failed: false, leadTimeSeconds: 3600, leadTimeFrom: 'commit' });
    expect(by['hello 1.1.0']).toMatchObject({ failed: true, restoredBy: 'rollback', restoredAt: '2026-05-03T10:05:00.000Z', timeToRestoreSeconds: 300 });
    expect(by['hello 1.2.0']).toMatchObject({ failed: true, outcome: 'failed', restoredBy: 'release 1.3.0', timeToRestoreSeconds: 7200 });
    expect(by['hello 1.3.0']).toMatchObject({ failed: false, leadTimeSeconds: 10_800, leadTimeFrom: 'preflight-start' });
    expect(by['hello 1.4.0']).toMatchObject({ failed: false, outcome: 'cancelled', leadTimeSeconds: 1800 });
    expect(by['hello 1.5.0']).toMatchObject({ failed: true });
    expect(by['hello 1.5.0']!.timeToRestoreSeconds).toBeUndefined();
    expect(r.notes.join('\n')).toMatch(/1 lead time\(s\) are measured from the preflight step's start/);
    expect(r.notes.join('\n')).toMatch(/1 failed change\(s\) are not restored yet/);
  });

  it('has no rates without deployments, and says so', () => {
    const r = computeReport([rel('1.6.0', { outcome: 'rejected' })], { since, until, service: 'hello' });
    expect(r).toMatchObject({
      service: 'hello', releases: 1, deployments: 0, failures: 0, changeFailureRate: null, deploymentFrequency: { perDay: 0, perWeek: 0 },
      leadTime: { samples: 0, medianSeconds: null, p90Seconds: null }, timeToRestore: { samples: 0, unrestored: 0, medianSeconds: null },
    });
    expect(r.notes).toContain('No deployment reached production in the window.');
  });
});

describe('preflight records the release commit\'s committer time', () => {
  it('reads it with git in its checkout and gives it in UTC', async () => {
    const repo = createTestRepo({ 'CHANGELOG.md': '# Changelog\n\n## [1.2.3]\n- a change\n' });
    try {
      const env = { ...process.env, GIT_AUTHOR_NAME: 'Dev', GIT_AUTHOR_EMAIL: 'dev@example.test', GIT_COMMITTER_NAME: 'Dev', GIT_COMMITTER_EMAIL: 'dev@example.test' };
      writeFileSync(path.join(repo.work, 'feature.txt'), 'new\n');
      execFileSync('git', ['add', '-A'], { cwd: repo.work, env });
      execFileSync('git', ['commit', '--quiet', '-m', 'feature'], {
        cwd: repo.work, env: { ...env, GIT_AUTHOR_DATE: '2026-01-01T00:00:00+00:00', GIT_COMMITTER_DATE: '2026-01-02T03:04:05+02:00' },
      });
      execFileSync('git', ['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], { cwd: repo.work, env });
      const req: PreflightRequest = {
        release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
        repo: { url: repo.remote, branch: 'main', changelog: 'CHANGELOG.md' },
      };
      const { preflight } = createPreflight({ env: process.env });
      const result = await new MockActivityEnvironment().run<[PreflightRequest], PreflightResult, typeof preflight>(preflight, req);
      expect(result.commit).toBe(repo.head());
      // The committer's time (not the author's), in UTC.
      expect(result.commitTime).toBe('2026-01-02T01:04:05.000Z');
    } finally {
      repo.cleanup();
    }
  });
});

// ---- the built CLI on a real dev server ----

/** What `gantry report --json` prints: the report the CLI computes (src/client/report.ts). */
type ReportJson = DeliveryReport;

interface ListJson {
  service: string; version: string; workflowId: string; runId: string; status: string; stage: string; outcome: string;
  startedAt: string; endedAt: string; durationSeconds: number; requestedBy: string;
}

/** The releases made here, in the order they reach production (approved one at a time), and how each ends. */
const PLAN: { service: string; version: string; requestedBy: string; ends: 'succeeded' | 'rolled_back' | 'failed' | 'rejected' }[] = [
  { service: 'hello', version: '1.0.0', requestedBy: 'ops-oncall', ends: 'succeeded' },
  { service: 'hello', version: '1.1.0', requestedBy: 'ops-oncall', ends: 'rolled_back' },
  { service: 'hello', version: '1.2.0', requestedBy: 'ops-oncall', ends: 'succeeded' },
  { service: 'hello', version: '1.3.0', requestedBy: 'ops-oncall', ends: 'rolled_back' },
  // The production deploy itself fails for good: failed after production changed, restored by 1.5.0 (not by world).
  { service: 'hello', version: '1.4.0', requestedBy: 'ops-oncall', ends: 'failed' },
  { service: 'world', version: '9.0.0', requestedBy: '=1+2', ends: 'succeeded' },
  { service: 'hello', version: '1.5.0', requestedBy: 'ops-oncall', ends: 'succeeded' },
  // Rejected at the gate: not a deployment. A name a CSV has to quote.
  { service: 'hello', version: '1.6.0', requestedBy: 'Dana "dee", ops', ends: 'rejected' },
];

describe('gantry report and the release-history export, on a real dev server', () => {
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let workerRunning: Promise<void>;
  let temporalEnv: Record<string, string>;
  let dir: string;
  let helloConfig: string;
  let worldConfig: string;
  /** The window the figures are compared over: every run sees the same releases and the same window. */
  let since: string;
  let until: string;

  const cli = (args: string[]): Promise<CliResult> => gantry(args, { env: temporalEnv, cwd: dir });
  async function ok(args: string[]): Promise<CliResult> {
    const r = await cli(args);
    expect(r.code, show(r)).toBe(0);
    return r;
  }
  const id = (service: string, version: string) => `release-${service}-${version}`;

  beforeAll(async () => {
    requireBuild();
    requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
    env = await devServerEnv();
    dir = tempDir('gantry-report-');
    helloConfig = writeConfig(dir, 'hello.yaml');
    worldConfig = writeConfig(dir, 'world.yaml', [['  hello:\n    repo:', '  world:\n    repo:']]);
    const routed = routedActivities({
      config: (version) => (version === '9.0.0' ? worldConfig : helloConfig),
      behaviour: (version) => {
        switch (version) {
          case '1.1.0':
          case '1.3.0': return { fail: { health: 'fatal' } };
          case '1.4.0': return { fail: { 'deploy:production': 'fatal' } };
          default: return {};
        }
      },
    });
    ({ worker, running: workerRunning } = await startWorker(env, routed.activities));
    temporalEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' };
    since = new Date(Date.now() - 60_000).toISOString();

    // Start every release with the CLI, one after the other: the first of a service stops at its gate, the others
    // queue for the production lane in PLAN's order (one release at a time per service and environment).
    const stageOf = async (service: string, version: string) => {
      const s = await env.client.workflow.getHandle(id(service, version)).query(statusQuery);
      return s.stage;
    };
    for (const p of PLAN) {
      const r = await cli(['start', p.service, p.version, '--config', p.service === 'world' ? worldConfig : helloConfig, '--requested-by', p.requestedBy]);
      expect(r.code, show(r)).toBe(0);
      await waitFor(`${p.service} ${p.version} at its gate or in its lane's queue`,
        async () => ['awaiting-approval', 'waiting-for-lane'].includes(await stageOf(p.service, p.version)), 60_000);
    }
    // Through the gate one at a time, so production changes in PLAN's order.
    for (const p of PLAN) {
      await waitFor(`${p.service} ${p.version} at its gate`, async () => (await stageOf(p.service, p.version)) === 'awaiting-approval', 60_000);
      if (p.ends === 'rejected') await ok(['reject', p.service, p.version, '--as', 'bob', '--reason', 'not this week']);
      else await ok(['approve', p.service, p.version, '--as', 'alice']);
      const outcome = await waitFor(`${p.service} ${p.version} to end`, async () => {
        const s = await env.client.workflow.getHandle(id(p.service, p.version)).query(statusQuery);
        return s.outcome;
      }, 60_000);
      expect(outcome, `${p.service} ${p.version}`).toBe(p.ends);
    }
    // Visibility is eventually consistent: wait until every release is listed as ended.
    await waitFor('every release listed as ended', async () => {
      const r = await cli(['list', '--json']);
      if (r.code !== 0) return false;
      const rows = JSON.parse(r.stdout) as { endedAt?: string; outcome?: string }[];
      return rows.length === PLAN.length && rows.every((row) => row.endedAt && row.outcome);
    }, 30_000);
    until = new Date(Date.now() - 100).toISOString();
  }, 300_000);

  afterAll(async () => {
    worker?.shutdown();
    await workerRunning;
    await env?.teardown();
    removeTempDirs();
  });

  const window = () => ['--since', since, '--until', until];

  it('report --json: deployments, failures and change failure rate exactly; lead time and time to restore from the histories', async () => {
    const r = JSON.parse((await ok(['report', '--service', 'hello', ...window(), '--json'])).stdout) as ReportJson;
    expect(r).toMatchObject({
      service: 'hello', since, until,
      releases: 7, // the seven hello releases, the rejected one included
      deployments: 6, // not the rejected one
      healthy: 3,
      failures: 3,
      rolledBack: 2,
      failedAfterProductionChanged: 1,
      changeFailureRate: 0.5,
    });
    const days = (Date.parse(until) - Date.parse(since)) / 86_400_000;
    expect(r.windowDays).toBe(Math.round(days * 1e4) / 1e4);
    expect(r.deploymentFrequency.perDay).toBe(Math.round((6 / days) * 1e4) / 1e4);
    expect(r.deploymentFrequency.perWeek).toBe(Math.round((6 / days) * 7 * 1e4) / 1e4);

    // One change per deployment, in production order, each judged by what its history shows.
    expect(r.changes.map((c) => [c.version, c.outcome, c.failed])).toEqual([
      ['1.0.0', 'succeeded', false], ['1.1.0', 'rolled_back', true], ['1.2.0', 'succeeded', false],
      ['1.3.0', 'rolled_back', true], ['1.4.0', 'failed', true], ['1.5.0', 'succeeded', false],
    ]);

    // Lead time: three samples, each health success − the commit time the (fake) preflight recorded, a minute
    // before it ran; so each is over a minute (the preflight-start fallback would be seconds).
    expect(r.leadTime).toMatchObject({ samples: 3, fromCommit: 3, fromPreflightStart: 0 });
    const leads: number[] = [];
    for (const c of r.changes.filter((x) => !x.failed)) {
      expect(c.leadTimeFrom).toBe('commit');
      expect(c.leadTimeSeconds).toBe((Date.parse(c.healthyAt!) - Date.parse(c.commitTime!)) / 1000);
      expect(c.leadTimeSeconds).toBeGreaterThan(60);
      leads.push(c.leadTimeSeconds!);
    }
    leads.sort((a, b) => a - b);
    expect(r.leadTime.medianSeconds).toBe(leads[1]);
    expect(r.leadTime.p90Seconds).toBeCloseTo(leads[1]! + 0.8 * (leads[2]! - leads[1]!), 3);
    expect(r.leadTime.p90Seconds!).toBeGreaterThanOrEqual(r.leadTime.medianSeconds!);

    // Time to restore: three samples, all positive; the rollbacks restore their own releases, and the failed
    // production deploy of 1.4.0 is restored by hello 1.5.0's healthy production, not by world 9.0.0's before it.
    expect(r.timeToRestore).toMatchObject({ samples: 3, unrestored: 0 });
    const by = Object.fromEntries(r.changes.map((c) => [c.version, c]));
    expect(by['1.1.0']).toMatchObject({ restoredBy: 'rollback' });
    expect(by['1.3.0']).toMatchObject({ restoredBy: 'rollback' });
    expect(by['1.4.0']).toMatchObject({ restoredBy: 'release 1.5.0', restoredAt: by['1.5.0']!.healthyAt });
    const restores = ['1.1.0', '1.3.0', '1.4.0'].map((v) => by[v]!.timeToRestoreSeconds!);
    for (const [i, v] of ['1.1.0', '1.3.0', '1.4.0'].entries()) {
      expect(restores[i]).toBeGreaterThan(0);
      expect(restores[i]).toBe((Date.parse(by[v]!.restoredAt!) - Date.parse(by[v]!.deployedAt)) / 1000);
    }
    expect(r.timeToRestore.medianSeconds).toBe([...restores].sort((a, b) => a - b)[1]);
    expect(r.timeToRestore.medianSeconds!).toBeGreaterThan(0);
    expect(r.notes).toEqual([]);

    // The times are the history's, as `gantry history` reads them: the production deploy's start, health's end.
    const timeline = JSON.parse((await ok(['history', 'hello', '1.2.0', '--json'])).stdout) as { entries: { kind: string; activity?: string; summary?: string; at: string; endedAt?: string }[] };
    const prodDeploy = timeline.entries.find((e) => e.kind === 'step' && e.activity === 'deploy' && e.summary?.startsWith('Deploy to production'));
    const health = timeline.entries.find((e) => e.kind === 'step' && e.activity === 'health');
    expect(by['1.2.0']!.deployedAt).toBe(prodDeploy!.at);
    expect(by['1.2.0']!.healthyAt).toBe(health!.endedAt);
  }, 60_000);

  it('report without --service spans every service; restores still pair within a service', async () => {
    const r = JSON.parse((await ok(['report', ...window(), '--json'])).stdout) as ReportJson;
    expect(r).toMatchObject({ service: null, releases: 8, deployments: 7, healthy: 4, failures: 3, changeFailureRate: Math.round((3 / 7) * 1e4) / 1e4 });
    expect(r.leadTime.samples).toBe(4);
    expect(r.timeToRestore.samples).toBe(3);
    expect(r.changes.find((c) => c.version === '1.4.0')).toMatchObject({ restoredBy: 'release 1.5.0' });
    expect(r.changes.find((c) => c.version === '9.0.0')).toMatchObject({ service: 'world', failed: false });
    const world = JSON.parse((await ok(['report', '--service', 'world', ...window(), '--json'])).stdout) as ReportJson;
    expect(world).toMatchObject({ releases: 1, deployments: 1, failures: 0, changeFailureRate: 0, timeToRestore: { samples: 0, unrestored: 0 } });
  }, 60_000);

  it('report --csv and the human report carry the same figures as --json', async () => {
    const j = JSON.parse((await ok(['report', '--service', 'hello', ...window(), '--json'])).stdout) as ReportJson;
    const csv = parseCsv((await ok(['report', '--service', 'hello', ...window(), '--csv'])).stdout);
    expect(csv[0]).toEqual([
      'service', 'since', 'until', 'windowDays', 'releases', 'deployments', 'healthy', 'failures', 'rolledBack', 'failedAfterProductionChanged',
      'changeFailureRate', 'deploymentsPerDay', 'deploymentsPerWeek', 'leadTimeSamples', 'leadTimeFromPreflightStart', 'leadTimeMedianSeconds',
      'leadTimeP90Seconds', 'timeToRestoreSamples', 'timeToRestoreUnrestored', 'timeToRestoreMedianSeconds',
    ]);
    expect(csv).toHaveLength(2);
    const row = Object.fromEntries(csv[0]!.map((h, i) => [h, csv[1]![i]!]));
    expect(row).toEqual({
      service: 'hello', since: j.since, until: j.until, windowDays: String(j.windowDays), releases: '7', deployments: '6', healthy: '3', failures: '3',
      rolledBack: '2', failedAfterProductionChanged: '1', changeFailureRate: '0.5',
      deploymentsPerDay: String(j.deploymentFrequency.perDay), deploymentsPerWeek: String(j.deploymentFrequency.perWeek),
      leadTimeSamples: '3', leadTimeFromPreflightStart: '0', leadTimeMedianSeconds: String(j.leadTime.medianSeconds), leadTimeP90Seconds: String(j.leadTime.p90Seconds),
      timeToRestoreSamples: '3', timeToRestoreUnrestored: '0', timeToRestoreMedianSeconds: String(j.timeToRestore.medianSeconds),
    });

    const human = (await ok(['report', '--service', 'hello', ...window()])).stdout;
    expect(human).toContain('Delivery report for hello');
    expect(human).toMatch(/releases\s+7 ended, 6 reached production, 1 did not/);
    expect(human).toMatch(/deployments\s+6: 3 healthy, 3 failed \(2 rolled back, 1 failed after production changed\)/);
    expect(human).toContain(`deployment frequency   ${j.deploymentFrequency.perDay} per day, ${j.deploymentFrequency.perWeek} per week`);
    expect(human).toContain('change failure rate    50.0% (0.5): 3 of 6 deployments');
    expect(human).toContain(`(${j.leadTime.medianSeconds} s), p90 `);
    expect(human).toContain(`(${j.leadTime.p90Seconds} s); 3 sample(s), 3 from the commit time, 0 from the preflight start`);
    expect(human).toContain(`(${j.timeToRestore.medianSeconds} s); 3 sample(s), 0 not restored`);
    expect(human).toMatch(/1\.4\.0\s+\S+ \S+\s+failed \(failed change\)\s+-\s+\S+ by release 1\.5\.0/);
    expect(human).toMatch(/1\.1\.0\s+\S+ \S+\s+rolled_back \(failed change\)\s+-\s+\S+ by rollback/);
  }, 60_000);

  it('report without --until ends the window now; bad flags are usage errors', async () => {
    const r = JSON.parse((await ok(['report', '--service', 'hello', '--since', '1h', '--json'])).stdout) as ReportJson;
    expect(r).toMatchObject({ deployments: 6, failures: 3, changeFailureRate: 0.5 });
    expect(Date.parse(r.until) - Date.parse(r.since)).toBeGreaterThanOrEqual(3_600_000);
    expect(Date.parse(r.until)).toBeLessThanOrEqual(Date.now());
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const byDate = JSON.parse((await ok(['report', '--service', 'hello', '--since', yesterday, '--json'])).stdout) as ReportJson;
    expect(byDate).toMatchObject({ since: `${yesterday}T00:00:00.000Z`, deployments: 6 });
    // A window that ended before these releases: nothing in it.
    const before = JSON.parse((await ok(['report', '--service', 'hello', '--since', '30d', '--until', '2h', '--json'])).stdout) as ReportJson;
    expect(before).toMatchObject({ releases: 0, deployments: 0, changeFailureRate: null });

    for (const [args, message] of [
      [['--since', 'last week'], '--since "last week" is neither a duration nor a date'],
      [['--since', '2999-01-01'], 'is in the future'],
      [['--json', '--csv'], 'Give either --json or --csv, not both.'],
      [['--service', "hello' OR 'x"], '--service "hello\' OR \'x" is not a valid value'],
    ] as const) {
      const bad = await cli(['report', ...args]);
      expect(bad.code, show(bad)).toBe(2);
      expect(bad.stderr).toContain(message);
    }
  }, 60_000);

  it('list --csv: a header row and one row per release; --json: the same releases, parseable', async () => {
    const text = (await ok(['list', '--service', 'hello', '--csv'])).stdout;
    expect(text.startsWith('service,version,workflowId,runId,status,stage,outcome,startedAt,endedAt,durationSeconds,requestedBy\r\n')).toBe(true);
    const csv = parseCsv(text);
    const header = csv[0]!;
    const rows = csv.slice(1).map((cells) => Object.fromEntries(header.map((h, i) => [h, cells[i]!])));
    const hello = PLAN.filter((p) => p.service === 'hello');
    expect(rows).toHaveLength(hello.length);
    const json = JSON.parse((await ok(['list', '--service', 'hello', '--json'])).stdout) as ListJson[];
    expect(json).toHaveLength(hello.length);
    expect(new Set(json.map((x) => `${x.workflowId}/${x.runId}`))).toEqual(new Set(rows.map((x) => `${x.workflowId}/${x.runId}`)));
    for (const p of hello) {
      const c = rows.find((x) => x.version === p.version)!;
      const j = json.find((x) => x.version === p.version)!;
      expect(c, p.version).toMatchObject({
        service: 'hello', workflowId: id('hello', p.version), status: p.ends === 'succeeded' ? 'COMPLETED' : 'FAILED', stage: 'done', outcome: p.ends,
        requestedBy: p.requestedBy,
      });
      expect(j).toMatchObject({
        service: 'hello', version: p.version, workflowId: c.workflowId, runId: c.runId, status: c.status, stage: 'done', outcome: p.ends,
        startedAt: c.startedAt, endedAt: c.endedAt, requestedBy: p.requestedBy,
      });
      expect(Number(c.durationSeconds)).toBe(j.durationSeconds);
      expect(j.durationSeconds).toBe((Date.parse(j.endedAt) - Date.parse(j.startedAt)) / 1000);
      expect(j.durationSeconds).toBeGreaterThan(0);
      expect(Object.keys(j).sort()).toEqual(header.slice().sort());
    }
    // Quoted in the file as RFC 4180 says, and read back whole.
    expect(text).toContain(',"Dana ""dee"", ops"\r\n');

    // Another service's name that a spreadsheet would run as a formula is defused in the CSV, kept in JSON.
    const world = parseCsv((await ok(['list', '--service', 'world', '--csv'])).stdout);
    expect(world[1]![world[0]!.indexOf('requestedBy')]).toBe("'=1+2");
    const worldJson = JSON.parse((await ok(['list', '--service', 'world', '--json'])).stdout) as ListJson[];
    expect(worldJson).toMatchObject([{ service: 'world', version: '9.0.0', requestedBy: '=1+2', outcome: 'succeeded' }]);

    // --outcome and --limit still apply to the export; the human table is unchanged.
    const rolled = parseCsv((await ok(['list', '--outcome', 'rolled_back', '--csv'])).stdout);
    expect(rolled.slice(1).map((x) => x[1]).sort()).toEqual(['1.1.0', '1.3.0']);
    expect(parseCsv((await ok(['list', '--csv', '--limit', '2'])).stdout)).toHaveLength(3);
    const table = (await ok(['list', '--service', 'hello'])).stdout;
    expect(table).toMatch(/hello\s+1\.4\.0\s+done\s+failed\s+failed/);
    const both = await cli(['list', '--json', '--csv']);
    expect(both.code, show(both)).toBe(2);
    expect(both.stderr).toContain('Give either --json or --csv, not both.');
  }, 60_000);
});
