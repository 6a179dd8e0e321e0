/**
 * The production topology of docker-compose.yml without Docker (scripts/topology.sh): the real Temporal server,
 * built from the Go module proxy at the version compose pins, on Debian's PostgreSQL 15, its schema set up by
 * deploy/temporal/setup-schema.sh and its namespace and search attributes by deploy/temporal/setup-namespace.sh.
 * Two `gantry worker` processes share the task queue; the built CLI drives a real release on the lab (git,
 * Podman, registry, sshd, webhook receiver). While the release waits at the gate the Temporal server is killed
 * and started again on the same database: the release is still waiting, and finishes once approved.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { useLab } from '../helpers/lab';
import { requireTopologyBinaries, startTopology, TEMPORAL_SCHEMA_DIR, TEMPORAL_SERVER, type Topology } from '../helpers/topology';
import { TEMPORAL_CLI } from '../helpers/servers';
import { BIN, gantry, requireBuild, show, waitFor } from '../cli/harness';
import { watchRelease } from '../helpers/release-status';
import { SEARCH_ATTRIBUTES, TASK_QUEUE, releaseWorkflowId } from '../../src/shared/release';
import type { AuditRecord } from '../../src/activities/announce';

const ROOT = path.resolve(__dirname, '..', '..');
// Before the lab starts: a missing server binary or PostgreSQL fails the file at once, naming the fix.
beforeAll(requireTopologyBinaries);
const ctx = useLab();
let topo: Topology;
let cliEnv: Record<string, string>;
const workers: { proc: ChildProcess; log: string }[] = [];

function temporalCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(TEMPORAL_CLI, [...args, '--address', topo.env.TEMPORAL_ADDRESS, '--namespace', topo.env.TEMPORAL_NAMESPACE],
      { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
  });
}

function workerLogs(): string {
  return workers.map((w, i) => `--- worker ${i + 1}:\n${w.log.slice(-3000)}`).join('\n');
}

beforeAll(async () => {
  requireBuild();
  topo = await startTopology();
  cliEnv = { ...topo.env, ...ctx.lab.env };
  for (let i = 0; i < 2; i++) {
    const proc = spawn(process.execPath, [BIN, 'worker', '--config', ctx.lab.configFile], { env: { ...process.env, ...cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    const w = { proc, log: '' };
    proc.stdout?.on('data', (d: Buffer) => { w.log += d.toString(); });
    proc.stderr?.on('data', (d: Buffer) => { w.log += d.toString(); });
    workers.push(w);
  }
  await waitFor('both workers to poll', async () => workers.every((w) => w.log.includes('polling')) || undefined, 60_000)
    .catch((err: unknown) => { throw new Error(`${String(err)}\n${workerLogs()}`); });
}, 420_000);

afterAll(async () => {
  await Promise.all(workers.filter((w) => w.proc.exitCode === null).map(async (w) => {
    const exited = new Promise((r) => w.proc.once('exit', r));
    w.proc.kill('SIGTERM');
    await exited;
  }));
  await topo?.stop();
}, 180_000);

const release = watchRelease('hello', () => cliEnv, () => `${workerLogs()}\nserver log (tail):\n${topo.serverLog().slice(-3000)}`);

function refusesConnections(address: string): Promise<boolean> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host);
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(true));
  });
}

/** The process has exited (it may linger as a zombie until its new parent reaps it). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
}

function auditLines(version: string): AuditRecord[] {
  const file = path.join(ctx.lab.dir, 'audit.jsonl');
  const all = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord) : [];
  return all.filter((l) => l.release.version === version);
}

/** The release's rows in PostgreSQL: its current execution's status and the number of history nodes stored for it. */
function inPostgres(workflowId: string): { status: number; historyNodes: number } | undefined {
  const id = workflowId.replace(/'/g, "''");
  const rows = topo.psql('temporal', `SELECT c.status, (SELECT count(*) FROM history_node h WHERE h.shard_id = c.shard_id AND h.tree_id = c.run_id)
    FROM current_executions c WHERE c.workflow_id = '${id}'`);
  return rows[0] ? { status: Number(rows[0][0]), historyNodes: Number(rows[0][1]) } : undefined;
}

/** The release's history as `temporal workflow show` prints it: event ids and types. */
async function events(workflowId: string): Promise<{ eventId: string; eventType: string }[]> {
  const shown = await temporalCli(['workflow', 'show', '--workflow-id', workflowId, '--output', 'json']);
  expect(shown.code, shown.stderr).toBe(0);
  const { events: list } = JSON.parse(shown.stdout) as { events: { eventId: string; eventType: string }[] };
  return list.map(({ eventId, eventType }) => ({ eventId, eventType }));
}

describe('the production topology without Docker: Temporal on PostgreSQL, two workers', () => {
  it('runs the server version docker-compose.yml pins, on the schema deploy/temporal set up, with gantry\'s search attributes', async () => {
    const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { image: string; environment?: Record<string, string> }> };
    const pinned = compose.services.temporal!.image.split(':')[1]!;
    // The server is configured as compose configures temporalio/server: every variable compose sets, with the
    // same database plugin (host names and paths are the machine's own).
    const serverEnv = Object.fromEntries(readFileSync(path.join(topo.dir, 'temporal.env'), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const composeEnv = compose.services.temporal!.environment!;
    expect(Object.keys(composeEnv).filter((k) => !(k in serverEnv))).toEqual([]);
    expect(serverEnv.DB).toBe(composeEnv.DB);
    expect(serverEnv.POSTGRES_USER).toBe(composeEnv.POSTGRES_USER);
    expect(path.basename(serverEnv.DYNAMIC_CONFIG_FILE_PATH!)).toBe(path.basename(composeEnv.DYNAMIC_CONFIG_FILE_PATH!));
    // Under compose the schema and namespace setup run in the admin-tools image of the same version.
    expect(compose.services['temporal-schema']!.image).toBe(`temporalio/admin-tools:${pinned}`);
    expect(compose.services['temporal-setup']!.image).toBe(`temporalio/admin-tools:${pinned}`);
    const version = execFileSync(TEMPORAL_SERVER, ['--version'], { encoding: 'utf8' }).trim();
    expect(version).toBe(`temporal version ${pinned}`);
    // The live server says the same, and answers from PostgreSQL (its persistence and visibility stores).
    const info = await temporalCli(['operator', 'cluster', 'describe', '--output', 'json']);
    expect(info.code, info.stderr).toBe(0);
    const cluster = JSON.parse(info.stdout) as { serverVersion: string; persistenceStore: string; visibilityStore: string };
    expect(cluster.serverVersion).toBe(pinned);
    expect(cluster.persistenceStore).toBe('postgres12');
    expect(cluster.visibilityStore).toContain('postgres12');
    // Both databases are at the newest version of the schema in the module: what setup-schema.sh applies.
    for (const [db, dir] of [['temporal', 'temporal'], ['temporal_visibility', 'visibility']] as const) {
      const [[current]] = topo.psql(db, 'SELECT curr_version FROM schema_version') as [[string]];
      const versions = readdirSync(path.join(TEMPORAL_SCHEMA_DIR(), dir, 'versioned')).map((v) => v.replace(/^v/, ''));
      expect(versions.length, db).toBeGreaterThan(1);
      expect(current, db).toBe(versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1));
    }
    const attrs = await temporalCli(['operator', 'search-attribute', 'list']);
    expect(attrs.code, attrs.stderr).toBe(0);
    for (const { name } of SEARCH_ATTRIBUTES) expect(attrs.stdout, name).toMatch(new RegExp(`\\b${name}\\b\\s+Keyword`));
    // Two workers poll the one task queue (the server lists each by its identity).
    const pollers = await waitFor('two pollers on the task queue', async () => {
      const r = await temporalCli(['task-queue', 'describe', '--task-queue', TASK_QUEUE, '--output', 'json']);
      if (r.code !== 0) throw new Error(r.stderr);
      const identities = new Set([...r.stdout.matchAll(/"identity":\s*"([^"]+)"/g)].map((m) => m[1]));
      return identities.size >= 2 ? identities : undefined;
    }, 60_000, 1_000);
    expect(pollers.size).toBe(2);
  });

  it('a release waiting at the gate survives a restart of the Temporal server, and finishes once approved', async () => {
    const good = ctx.lab.repo.good;
    const workflowId = releaseWorkflowId('hello', good.version);
    const start = await gantry(['start', 'hello', good.version, '--config', ctx.lab.configFile, '--requested-by', 'operator', '--key', ctx.lab.people.operator], { env: cliEnv });
    expect(start.code, show(start)).toBe(0);
    expect(start.stdout).toContain('requested by operator (signed)');

    const atGate = await release.until(good.version, (s) => s.stage === 'awaiting-approval' || s.outcome !== undefined, 'the gate to open');
    expect(atGate.stage, JSON.stringify(atGate.steps, null, 1)).toBe('awaiting-approval');
    expect(await (await fetch(`${ctx.lab.staging.url}/version`)).json()).toEqual({ version: good.version });
    expect(ctx.lab.webhook.requests()).toHaveLength(0);
    // The running release is a row in PostgreSQL, with its history.
    const before = inPostgres(workflowId);
    expect(before, `no current_executions row for ${workflowId}`).toBeDefined();
    expect(before!.status).toBe(1); // WORKFLOW_EXECUTION_STATUS_RUNNING
    expect(before!.historyNodes).toBeGreaterThan(0);

    const historyBefore = await events(workflowId);
    expect(historyBefore.map((e) => e.eventType)).toContain('EVENT_TYPE_ACTIVITY_TASK_COMPLETED'); // tag, build, staging…

    // Crash the server: SIGKILL, nothing flushed. PostgreSQL and both workers stay up.
    const killedPid = topo.serverPid();
    await topo.killServer();
    expect(gone(killedPid), `the server (pid ${killedPid}) still runs`).toBe(true);
    // Every process of the server has let go of its port within a few seconds (the kernel closes a killed
    // process's sockets as it exits; a process still exiting may hold it for a moment).
    let refused = await refusesConnections(topo.env.TEMPORAL_ADDRESS);
    for (let i = 0; i < 50 && !refused; i++) {
      await new Promise((r) => setTimeout(r, 200));
      refused = await refusesConnections(topo.env.TEMPORAL_ADDRESS);
    }
    expect(refused, `${topo.env.TEMPORAL_ADDRESS} still accepts connections 10 s after the kill`).toBe(true);
    await new Promise((r) => setTimeout(r, 5_000)); // the workers' polls fail meanwhile
    const restarted = Date.now();
    await topo.startServer();
    const healthyMs = Date.now() - restarted;
    expect(topo.serverPid()).not.toBe(killedPid);

    // Still waiting, with nothing decided, as the new server reads it back from PostgreSQL; a worker answers.
    const afterRestart = await release.until(good.version, (s) => s.stage === 'awaiting-approval', 'the release to answer after the restart');
    const answeredMs = Date.now() - restarted;
    console.info(`topology: after SIGKILL the Temporal server was healthy again in ${(healthyMs / 1000).toFixed(1)} s; the waiting release answered in ${(answeredMs / 1000).toFixed(1)} s`);
    expect(afterRestart.outcome).toBeUndefined();
    expect(afterRestart.gate.approvals).toEqual([]);
    // The history from before the crash, event for event, read back by the new server process.
    const historyAfter = await events(workflowId);
    expect(historyAfter.slice(0, historyBefore.length)).toEqual(historyBefore);
    expect(historyAfter.map((e) => e.eventType)).not.toContain('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');

    const approve = await gantry(['approve', 'hello', good.version, '--as', 'alice', '--key', ctx.lab.people.alice, '--reason', 'staging answers after the server restart'], { env: cliEnv });
    expect(approve.code, show(approve)).toBe(0);

    const done = await release.until(good.version, (s) => s.outcome !== undefined, 'the release to finish');
    expect(done.outcome, done.message).toBe('succeeded');
    expect(done.gate.approvals).toEqual([expect.objectContaining({ approver: 'alice', verified: true })]);
    expect(await (await fetch(`${ctx.lab.production.url}/version`)).json()).toEqual({ version: good.version });
    const built = atGate.steps.find((s) => s.name === 'build')!.outputs;
    expect((await ctx.lab.docker.getContainer(ctx.lab.production.container).inspect()).Config.Image).toBe(built.imageRef);

    // Each effect once: one webhook message, one audit line per action.
    const hooks = ctx.lab.webhook.requests();
    expect(hooks).toHaveLength(1);
    expect(JSON.stringify(hooks[0]!.body)).toContain(good.version);
    expect(auditLines(good.version).map((l) => [l.action, l.actor])).toEqual([
      ['start-accepted', 'operator'], ['approve-accepted', 'alice'], ['released', expect.any(String)],
    ]);

    // Closed in PostgreSQL: the execution and the visibility record, with gantry's search attributes.
    expect(inPostgres(workflowId)!.status).toBe(2); // WORKFLOW_EXECUTION_STATUS_COMPLETED
    const [visibility] = topo.psql('temporal_visibility', `SELECT status, search_attributes::text FROM executions_visibility WHERE workflow_id = '${workflowId.replace(/'/g, "''")}'`);
    expect(visibility, 'no executions_visibility row').toBeDefined();
    expect(visibility![0]).toBe('2'); // WORKFLOW_EXECUTION_STATUS_COMPLETED
    expect(visibility![1]).toContain('hello');
    expect(visibility![1]).toContain(good.version);
    // Both workers lived through the restart.
    expect(workers.map((w) => w.proc.exitCode)).toEqual([null, null]);
  }, 330_000);
});
