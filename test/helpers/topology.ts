/**
 * The production topology without Docker (scripts/topology.sh): Debian's PostgreSQL 15 and the real Temporal
 * server built from the Go module proxy, on loopback ports of their own, in a temp dir. What is missing is a loud
 * failure naming the provisioning command; nothing is skipped.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canBind } from '../../src/lab/daemon';
import { requireBinary, TEMPORAL_CLI } from './servers';

const repoRoot = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(repoRoot, 'scripts', 'topology.sh');
const cache = process.env.GANTRY_CACHE ?? path.join(os.homedir(), '.cache', 'gantry');

export const TEMPORAL_SERVER = process.env.GANTRY_TEMPORAL_SERVER ?? path.join(cache, 'bin', 'temporal-server');
export const TEMPORAL_SQL_TOOL = process.env.GANTRY_TEMPORAL_SQL_TOOL ?? path.join(cache, 'bin', 'temporal-sql-tool');
export const PG_BIN = process.env.GANTRY_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** The server version docker-compose.yml pins (temporalio/server:X.Y.Z): what provision.sh builds. */
export function composeServerVersion(): string {
  const m = /^\s*image:\s*temporalio\/server:(\d+\.\d+\.\d+)\s*$/m.exec(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'));
  if (!m) throw new Error('docker-compose.yml pins no temporalio/server:X.Y.Z image');
  return m[1]!;
}

/** The PostgreSQL schema of that server version, in the Go module cache (where provision.sh points the topology). */
export function TEMPORAL_SCHEMA_DIR(): string {
  if (process.env.GANTRY_TEMPORAL_SCHEMA_DIR) return process.env.GANTRY_TEMPORAL_SCHEMA_DIR;
  const modcache = execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
  return path.join(modcache, `go.temporal.io/server@v${composeServerVersion()}`, 'schema', 'postgresql', 'v12');
}

/** The server's port variables (its embedded config template reads them), each given a free loopback port. */
const PORT_VARS = ['FRONTEND_GRPC_PORT', 'FRONTEND_HTTP_PORT', 'FRONTEND_MEMBERSHIP_PORT', 'HISTORY_GRPC_PORT', 'HISTORY_MEMBERSHIP_PORT',
  'MATCHING_GRPC_PORT', 'MATCHING_MEMBERSHIP_PORT', 'WORKER_GRPC_PORT', 'WORKER_MEMBERSHIP_PORT'] as const;

export interface Topology {
  dir: string;
  /** TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, as `topology.sh up` printed them. */
  env: { TEMPORAL_ADDRESS: string; TEMPORAL_NAMESPACE: string };
  /** The running Temporal server's pid (from its pid file). */
  serverPid(): number;
  /** SIGKILL the Temporal server, as a crash; PostgreSQL stays up. */
  killServer(): Promise<void>;
  /** Start the Temporal server again on the same PostgreSQL and ports; resolves once it answers healthy. */
  startServer(): Promise<void>;
  /** One query in database `db` through psql; rows as arrays of fields. */
  psql(db: 'temporal' | 'temporal_visibility', sql: string): string[][];
  /** The server's log so far (for failure messages). */
  serverLog(): string;
  /** Stop the server and PostgreSQL and delete the directory. */
  stop(): Promise<void>;
}

function run(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT, ...args], { cwd: repoRoot, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`bash scripts/topology.sh ${args.join(' ')} failed (${err.message.split('\n')[0]}):\n${stderr.trim()}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Everything scripts/provision.sh provides for the topology is here; otherwise say how to get it. */
export function requireTopologyBinaries(): void {
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  for (const [file, what] of [[TEMPORAL_SERVER, 'The Temporal server'], [TEMPORAL_SQL_TOOL, 'temporal-sql-tool']] as const) {
    if (!existsSync(file)) {
      throw new Error(`${what} not found at ${file}. Build it with \`bash scripts/provision.sh\` (npm test runs it): it go-installs ` +
        'go.temporal.io/server at the version docker-compose.yml pins. Or set GANTRY_TEMPORAL_SERVER / GANTRY_TEMPORAL_SQL_TOOL.');
    }
  }
  for (const b of ['postgres', 'initdb', 'pg_ctl', 'psql']) {
    if (!existsSync(path.join(PG_BIN, b))) {
      throw new Error(`${path.join(PG_BIN, b)} not found: the topology runs Debian's PostgreSQL 15. Run \`bash scripts/provision.sh\` as root ` +
        '(it installs postgresql-15) or set GANTRY_PG_BIN.');
    }
  }
}

/**
 * A free loopback port below 32768, outside the kernel's ephemeral range: the server stores its membership ports
 * in PostgreSQL as SMALLINT (cluster_membership.rpc_port), so a port above 32767 stops it at startup.
 */
async function lowFreePort(taken: number[]): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (!taken.includes(port) && (await canBind(port))) return port;
  }
  throw new Error('no free loopback port between 20000 and 32000 for the topology');
}

/** Bring the topology up (scripts/topology.sh up) on free loopback ports in a fresh temp dir. */
export async function startTopology(): Promise<Topology> {
  requireTopologyBinaries();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-topology-'));
  const ports: Record<string, string> = {};
  for (const name of ['GANTRY_TOPOLOGY_PG_PORT', ...PORT_VARS]) ports[name] = String(await lowFreePort(Object.values(ports).map(Number)));
  const scriptEnv: NodeJS.ProcessEnv = { ...process.env, GANTRY_TOPOLOGY_DIR: dir, TEMPORAL_NAMESPACE: 'default', ...ports };
  const stop = async () => {
    await run(['down', '--purge'], scriptEnv, 120_000);
  };
  let printed: string;
  try {
    printed = (await run(['up'], scriptEnv, 300_000)).stdout;
  } catch (err) {
    const log = path.join(dir, 'temporal.log');
    const tail = existsSync(log) ? `\nserver log (tail):\n${readFileSync(log, 'utf8').slice(-4000)}` : '';
    await stop().catch(() => rmSync(dir, { recursive: true, force: true }));
    throw new Error(`${(err as Error).message}${tail}`);
  }
  const assigned = Object.fromEntries(printed.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
  const env = { TEMPORAL_ADDRESS: assigned.TEMPORAL_ADDRESS!, TEMPORAL_NAMESPACE: assigned.TEMPORAL_NAMESPACE! };
  if (env.TEMPORAL_ADDRESS !== `127.0.0.1:${ports.FRONTEND_GRPC_PORT}`) throw new Error(`topology.sh up printed ${printed}`);

  return {
    dir,
    env,
    serverPid: () => Number(readFileSync(path.join(dir, 'temporal.pid'), 'utf8').trim()),
    killServer: async () => { await run(['server-stop', '--kill'], scriptEnv, 60_000); },
    startServer: async () => { await run(['server-start'], scriptEnv, 180_000); },
    psql: (db, sql) => execFileSync(path.join(PG_BIN, 'psql'), ['-X', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-d', db, '-c', sql], {
      encoding: 'utf8',
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: ports.GANTRY_TOPOLOGY_PG_PORT, PGUSER: 'temporal', PGPASSFILE: path.join(dir, 'pgpass') },
    }).trim().split('\n').filter(Boolean).map((l) => l.split('\t')),
    serverLog: () => { try { return readFileSync(path.join(dir, 'temporal.log'), 'utf8'); } catch { return ''; } },
    stop,
  };
}
