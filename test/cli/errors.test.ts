/**
 * What a user sees when something is wrong: bad config, bad input, a server that is down, a server not set up
 * for gantry, no worker. Every message says what happened and what to do, and the exit code is the documented one.
 * The server here is a bare dev server without gantry's search attributes, as a fresh cluster would be.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { freePort } from '../helpers/ports';
import { BIN, gantry, removeTempDirs, requireBuild, show, tempDir, waitFor, writeConfig, type CliResult } from './harness';

let env: TestWorkflowEnvironment;
let dir: string;
let config: string;
let serverEnv: Record<string, string>;

beforeAll(async () => {
  requireBuild();
  env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: requireBinary(TEMPORAL_CLI, 'The Temporal CLI (dev server)') },
      ip: '127.0.0.1',
      extraArgs: ['--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true'],
    },
  });
  serverEnv = { TEMPORAL_ADDRESS: env.address };
  dir = tempDir();
  config = writeConfig(dir, 'gantry.yaml');
});

afterAll(async () => {
  await env?.teardown();
  removeTempDirs();
});

const cli = (args: string[], extraEnv: Record<string, string> = serverEnv): Promise<CliResult> => gantry(args, { env: extraEnv, cwd: dir });

describe('an invalid worker config exits 3 naming the file, the path inside it and the fix', () => {
  it('`gantry worker` with an unknown key stops at start, before it connects', async () => {
    const file = writeConfig(dir, 'typo.yaml', [['    approvals:\n', '    aprovals:\n      approvers: [alice]\n    approvals:\n']]);
    // No server at this address: the config is checked first, so the exit is 3, not 69.
    const r = await cli(['worker', '--config', file], { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain(`Invalid config ${file}`);
    expect(r.stderr).toContain('services.hello: unknown key "aprovals"; remove or correct it');
    expect(r.stderr).toContain('Fix the file and run the command again.');
    expect(r.stderr).not.toContain('polling');
  });

  it('`gantry worker` with a duration that is not one, given through GANTRY_CONFIG', async () => {
    const file = writeConfig(dir, 'duration.yaml', [['approval: 72h', 'approval: soon']]);
    const r = await cli(['worker'], { ...serverEnv, GANTRY_CONFIG: file });
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain(`Invalid config ${file}`);
    expect(r.stderr).toContain('services.hello.timeouts.approval: "soon" is not a duration; write it like 30s, 5m, 2h or 3d');
  });

  it('`gantry worker` with no config says to pass --config or set GANTRY_CONFIG; a missing file is named', async () => {
    const none = await cli(['worker']);
    expect(none.code, show(none)).toBe(3);
    expect(none.stderr).toContain('the worker owns the release config and was given none: start it with --config <file or directory> or set GANTRY_CONFIG');

    const missing = await cli(['worker'], { ...serverEnv, GANTRY_CONFIG: `${dir}/nope.yaml` });
    expect(missing.code, show(missing)).toBe(3);
    expect(missing.stderr).toContain(`Invalid config ${dir}/nope.yaml`);
    expect(missing.stderr).toContain('not found; give the worker its release config with --config <file or directory> or GANTRY_CONFIG');
  });

  it('`gantry start --dry-run` plans from the local file and checks it the same way (it needs no server)', async () => {
    const file = writeConfig(dir, 'dry-duration.yaml', [['approval: 72h', 'approval: soon']]);
    const r = await cli(['start', 'hello', '1.0.0', '--config', file, '--dry-run'], {});
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain(`Invalid config ${file}`);
    expect(r.stderr).toContain('services.hello.timeouts.approval: "soon" is not a duration; write it like 30s, 5m, 2h or 3d');

    const found = await gantry(['start', 'hello', '1.0.0', '--dry-run'], { env: { GANTRY_CONFIG: config }, cwd: dir });
    expect(found.code, show(found)).toBe(0);
    expect(found.stdout).toContain(`config        ${config}@sha256:`);
  });

  it('`gantry start --dry-run` without a local config is a usage error (exit 2); ./gantry.yaml is not assumed for a plan', async () => {
    const r = await cli(['start', 'hello', '1.0.0', '--dry-run'], {});
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('--dry-run plans from a local config file: pass --config <file> (or set GANTRY_CONFIG).');
  });
});

describe('bad input exits 2 and says what to type instead', () => {
  it('an unknown service, a version that is not semver, a missing --as, an unknown command', async () => {
    const svc = await cli(['start', 'helo', '1.0.0', '--config', config, '--dry-run']);
    expect(svc.code, show(svc)).toBe(2);
    expect(svc.stderr).toContain('defines no service "helo"; it defines hello');

    const ver = await cli(['start', 'hello', '1.0', '--config', config, '--dry-run']);
    expect(ver.code, show(ver)).toBe(2);
    expect(ver.stderr).toContain('Version "1.0" is not semver; give it as MAJOR.MINOR.PATCH');

    const as = await cli(['approve', 'hello', '1.0.0']);
    expect(as.code, show(as)).toBe(2);
    expect(as.stderr).toContain("required option '--as <name>' not specified");
    expect(as.stderr).toContain('gantry approve --help');

    const timeout = await cli(['approve', 'hello', '1.0.0', '--as', 'alice', '--timeout', 'soon']);
    expect(timeout.code, show(timeout)).toBe(2);
    expect(timeout.stderr).toContain('--timeout "soon" is not a number of seconds');

    const which = await cli(['status']);
    expect(which.code, show(which)).toBe(2);
    expect(which.stderr).toContain('Say which release: `<service> <version>`');

    const decision = await cli(['decide', 'maybe', 'hello', '1.0.0', '--as', 'x']);
    expect(decision.code, show(decision)).toBe(2);
    expect(decision.stderr).toContain("'maybe' is invalid for argument 'decision'. Allowed choices are retry, abort, skip.");

    const stage = await cli(['list', '--stage', 'waiting']);
    expect(stage.code, show(stage)).toBe(2);
    expect(stage.stderr).toContain('--stage "waiting" is not a stage; use one of planning,');

    const unknown = await cli(['deploy']);
    expect(unknown.code, show(unknown)).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'deploy'");
  });

  it('help and version exit 0; help lists the exit codes', async () => {
    const help = await cli(['--help'], {});
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toContain('Exit codes:');
    expect(help.stdout).toContain('69  Temporal server unreachable');
    const version = await cli(['--version'], {});
    expect(version.code, show(version)).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('a server that cannot be reached exits 69', () => {
  it('for every command that needs the server, with what to do', async () => {
    const down = { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` };
    for (const args of [['status', 'hello', '1.0.0'], ['list'], ['start', 'hello', '1.0.0', '--config', config], ['setup']]) {
      const r = await cli(args, down);
      expect(r.code, `${args.join(' ')}\n${show(r)}`).toBe(69);
      expect(r.stderr).toContain(`Cannot reach the Temporal server at ${down.TEMPORAL_ADDRESS}`);
      expect(r.stderr).toContain('Start one with `gantry dev`, or point TEMPORAL_ADDRESS');
    }
    const flag = await cli(['list', '--address', down.TEMPORAL_ADDRESS], serverEnv);
    expect(flag.code, show(flag)).toBe(69);
  });
});

describe('a cluster without gantry\'s search attributes', () => {
  it('refuses to start a release (exit 7, run `gantry setup`); `gantry setup` registers them, idempotently; then the release starts', async () => {
    const before = await cli(['start', 'hello', '1.0.0', '--config', config]);
    expect(before.code, show(before)).toBe(7);
    expect(before.stderr).toContain('does not know gantry\'s search attributes in namespace default');
    expect(before.stderr).toContain('`gantry setup`');

    const setup = await cli(['setup']);
    expect(setup.code, show(setup)).toBe(0);
    for (const name of ['GantryService', 'GantryVersion', 'GantryStage', 'GantryOutcome', 'GantryEnvironment']) {
      expect(setup.stdout).toContain(`+ registered ${name} (Keyword) in namespace default`);
    }
    const again = await cli(['setup']);
    expect(again.code, show(again)).toBe(0);
    expect(again.stdout).toContain('GantryStage already registered in namespace default');
    expect(again.stdout).toContain('Nothing to do: the namespace is ready for gantry.');

    const start = await cli(['start', 'hello', '1.0.0', '--config', config]);
    expect(start.code, show(start)).toBe(0);
    expect(start.stdout).toContain('Started release hello 1.0.0');
  });

  it('with no worker running, approve gives up after --timeout saying to start one (exit 8); status shows what it can (exit 8)', async () => {
    expect((await cli(['setup'])).code).toBe(0);
    const start = await cli(['start', 'hello', '1.1.0', '--config', config, '--json']);
    expect(start.code, show(start)).toBe(0);
    expect(JSON.parse(start.stdout)).toMatchObject({ workflowId: 'release-hello-1.1.0', namespace: 'default' });

    const approve = await cli(['approve', 'hello', '1.1.0', '--as', 'alice', '--timeout', '2']);
    expect(approve.code, show(approve)).toBe(8);
    expect(approve.stderr).toContain('No worker answered within 2s');
    expect(approve.stderr).toContain('Start a worker (`gantry worker`, or `gantry dev` on a laptop) and retry; nothing was recorded.');

    const status = await cli(['status', 'hello', '1.1.0']);
    expect(status.code, show(status)).toBe(8);
    expect(status.stdout).toContain('Release hello 1.1.0: running, stage planning');
    expect(status.stdout).toContain('no worker answered the status query');
    expect(status.stdout).toContain('`gantry history hello 1.1.0` reads the timeline from the event history without a worker.');

    const history = await cli(['history', 'hello', '1.1.0']);
    expect(history.code, show(history)).toBe(0);
    expect(history.stdout).toContain('started by');
    expect(history.stdout).toContain('(still running)');
  }, 60_000);
});

describe('gantry worker', () => {
  it('loads its config, polls the task queue until SIGTERM, then stops gracefully (exit 0); an unreachable server exits 69', async () => {
    const child = spawn(process.execPath, [BIN, 'worker', '--config', config], {
      env: { ...process.env, ...serverEnv, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor('the worker to poll', async () => err.includes(`gantry worker: polling gantry-releases on ${env.address} (namespace default)`), 60_000)
      .catch((e: unknown) => {
        child.kill('SIGKILL');
        throw new Error(`${e instanceof Error ? e.message : String(e)}\n${err}`);
      });
    expect(err).toContain(`gantry worker: release config ${config}@sha256:`);
    expect(err).toMatch(/release config \S+@sha256:[0-9a-f]{16} \(hello\)/);
    child.kill('SIGTERM');
    expect(await exited, err).toBe(0);
    expect(err).toContain('gantry worker: stopped');

    const down = await cli(['worker', '--config', config], { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
    expect(down.code, show(down)).toBe(69);
    expect(down.stderr).toContain('Cannot reach the Temporal server');
  }, 90_000);
});
