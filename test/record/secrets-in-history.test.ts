/**
 * Secrets never reach the record. A real release on the lab with `gantry worker` (the real steps, the prebuilt
 * bundle) that uses every kind of secret gantry knows, each by reference: the repository token (the lab's repo
 * served over HTTP by `git http-backend`, which refuses every request without the token), the GitHub token
 * (the contract-checked stand-in, for preflight and announce), the deploy key (SSH to the production host), the
 * chat webhook URL and the release signing key. Then the finished release's history, exported as an operator
 * would (`temporal workflow show --output json`, every payload decoded), its status, history timeline, audit
 * lines, webhook payloads, GitHub writes, release artifacts and the worker's log are searched for each value.
 *
 * The same release first runs on a worker whose environment lacks the webhook URL: the announce step fails
 * naming the reference and the fix (never a value), the release waits for a decision with production serving
 * the new version, and after the worker is restarted with the variable `gantry decide retry` finishes it, with
 * one webhook message (the bad-input table's missing-secret row, docs/cli.md).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { useLab } from '../helpers/lab';
import { freePort } from '../helpers/ports';
import { BIN, gantry, requireBuild, show, waitFor } from '../cli/harness';
import { TOKEN_ENV, expectContractKept, startStandIn } from '../github/helpers';
import type { GithubStandIn } from '../github/stand-in';
import { WEBHOOK_ENV } from '../../src/lab/lab';
import { writeRollbackDemoConfig } from '../../src/lab/sample-repo';
import type { ReleaseStatus } from '../../src/shared/release';

const run = promisify(execFile);
const REPO_TOKEN_ENV = 'GANTRY_TEST_REPO_TOKEN';

const ctx = useLab();
let dev: TestWorkflowEnvironment;
let gh: GithubStandIn;
let githubToken: string;
const repoToken = `glpat-${randomBytes(16).toString('hex')}`;
let gitServer: Server;
/** Requests at the HTTP git server that carried the repository token (and how many were refused without it). */
const gitRequests = { authorized: 0, refused: 0 };
let configFile: string;
let cliEnv: Record<string, string>;
let worker: ChildProcess | undefined;
let workerLog = '';

/**
 * The lab's bare repository over HTTP through git's own CGI (`git http-backend`), answering only requests that
 * carry `Authorization: Basic base64(x-access-token:<token>)`, as a forge does for a token.
 */
async function serveRepoOverHttp(repoPath: string, token: string): Promise<{ server: Server; url: string }> {
  const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
  const server = createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      gitRequests.refused += 1;
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="lab"' }).end('token required\n');
      return;
    }
    gitRequests.authorized += 1;
    const url = new URL(req.url ?? '/', 'http://lab');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: path.dirname(repoPath),
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'x-access-token',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    const chunks: Buffer[] = [];
    cgi.stdout.on('data', (c: Buffer) => chunks.push(c));
    cgi.on('close', () => {
      const out = Buffer.concat(chunks);
      const split = out.indexOf('\r\n\r\n');
      const head = out.subarray(0, split).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head) {
        const i = line.indexOf(':');
        const [k, v] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else if (k) headers[k] = v;
      }
      res.writeHead(status, headers).end(out.subarray(split + 4));
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${port}/${path.basename(repoPath)}` };
}

async function startWorker(extraEnv: Record<string, string>, without: string[] = []): Promise<void> {
  const base = Object.fromEntries(Object.entries({ ...process.env, ...cliEnv, ...extraEnv }).filter(([k]) => !without.includes(k))) as Record<string, string>;
  worker = spawn(process.execPath, [BIN, 'worker', '--config', configFile], { env: base, stdio: ['ignore', 'pipe', 'pipe'] });
  const mark = workerLog.length;
  worker.stdout?.on('data', (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on('data', (d: Buffer) => (workerLog += d.toString()));
  await waitFor('the worker to poll', async () => workerLog.slice(mark).includes('polling') || undefined, 60_000);
}

async function stopWorker(): Promise<void> {
  if (!worker || worker.exitCode !== null) return;
  const exited = new Promise((r) => worker!.once('exit', r));
  worker.kill('SIGTERM');
  await exited;
}

beforeAll(async () => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  ({ gh, token: githubToken } = await startStandIn());
  dev = await devServerEnv();
  const http = await serveRepoOverHttp(ctx.lab.repo.url, repoToken);
  gitServer = http.server;
  const config = parse(ctx.lab.configYaml) as { services: { hello: Record<string, unknown> } };
  const hello = config.services.hello;
  hello.repo = { ...(hello.repo as object), url: http.url, token: { env: REPO_TOKEN_ENV } };
  hello.github = { owner: gh.owner, repo: gh.repo, token: { env: TOKEN_ENV }, baseUrl: gh.baseUrl, closeMilestone: false };
  configFile = path.join(ctx.lab.dir, 'gantry-secrets.yaml');
  writeFileSync(configFile, stringify(config));
  cliEnv = { TEMPORAL_ADDRESS: dev.address, TEMPORAL_NAMESPACE: 'default' };
}, 300_000);

afterAll(async () => {
  await stopWorker();
  await dev?.teardown();
  await gh?.stop();
  await new Promise<void>((r) => (gitServer ? gitServer.close(() => r()) : r()));
});

async function status(version: string): Promise<ReleaseStatus> {
  const r = await gantry(['status', 'hello', version, '--json'], { env: cliEnv });
  if (r.code !== 0) throw new Error(show(r));
  return JSON.parse(r.stdout) as ReleaseStatus;
}

async function untilStatus(version: string, what: string, pred: (s: ReleaseStatus) => boolean): Promise<ReleaseStatus> {
  return waitFor(what, async () => {
    const s = await status(version);
    return pred(s) ? s : undefined;
  }, 240_000, 1_000).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\nlast status: ${JSON.stringify(await status(version).catch(() => undefined), null, 1)?.slice(0, 4000)}\nworker log:\n${workerLog.slice(-4000)}`);
  });
}

/** Every payload of an exported history decoded (base64 JSON), nested ones too, with the export itself. */
function decodedPayloads(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const v of value) decodedPayloads(v, out);
  } else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.data === 'string' && o.metadata && typeof o.metadata === 'object') {
      const text = Buffer.from(o.data, 'base64').toString('utf8');
      out.push(text);
      try {
        decodedPayloads(JSON.parse(text), out);
      } catch {
        // not JSON: kept as text
      }
    }
    for (const v of Object.values(o)) decodedPayloads(v, out);
  }
  return out;
}

/** Every file below a directory, as text. */
function filesBelow(dir: string): { file: string; text: string }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    return statSync(file).isDirectory() ? filesBelow(file) : [{ file, text: readFileSync(file, 'utf8') }];
  });
}

/** The secret values, and the forms they may travel in (the git Authorization header, a key's base64 body lines). */
function secretValues(): { name: string; value: string }[] {
  const keyLines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
  return [
    { name: 'the repository token', value: repoToken },
    { name: 'the repository token as git sends it', value: Buffer.from(`x-access-token:${repoToken}`).toString('base64') },
    { name: 'the GitHub token', value: githubToken },
    { name: 'the webhook URL', value: ctx.lab.env[WEBHOOK_ENV]! },
    { name: 'the webhook URL without its scheme', value: ctx.lab.env[WEBHOOK_ENV]!.replace(/^https?:\/\//, '') },
    ...keyLines(ctx.lab.ssh.privateKeyFile).map((value, i) => ({ name: `line ${i + 1} of the deploy key`, value })),
    ...keyLines(ctx.lab.releaseSigningKey).map((value, i) => ({ name: `line ${i + 1} of the release signing key`, value })),
  ];
}

function expectNoSecrets(where: string, text: string): void {
  for (const s of secretValues()) {
    expect(text.includes(s.value), `${s.name} appears in ${where}`).toBe(false);
  }
}

describe('secrets on the record', () => {
  it('a webhook URL missing from the worker\'s environment fails announce naming the reference and the fix; `decide retry` after fixing finishes the release once', async () => {
    const { lab } = ctx;
    const { version, commit } = lab.repo.good;
    gh.addCheckRun(commit, 'unit-tests', 'completed', 'success');
    gh.addFile(`v${version}`, 'CHANGELOG.md', (await run('git', ['show', `${commit}:CHANGELOG.md`], { cwd: lab.repo.url })).stdout);
    expect(lab.env[WEBHOOK_ENV]).toMatch(/^http/);
    await startWorker({ [TOKEN_ENV]: githubToken, [REPO_TOKEN_ENV]: repoToken }, [WEBHOOK_ENV]);

    const start = await gantry(['start', 'hello', version, '--requested-by', 'operator', '--key', lab.people.operator], { env: cliEnv });
    expect(start.code, show(start)).toBe(0);
    await untilStatus(version, 'the gate to open', (s) => s.stage === 'awaiting-approval' || s.outcome !== undefined);
    const approve = await gantry(['approve', 'hello', version, '--as', 'alice', '--key', lab.people.alice], { env: cliEnv });
    expect(approve.code, show(approve)).toBe(0);

    const waiting = await untilStatus(version, 'announce to wait for a decision', (s) => s.stage === 'awaiting-decision' || s.outcome !== undefined);
    expect(waiting.stage, JSON.stringify(waiting.steps, null, 1)).toBe('awaiting-decision');
    const text = JSON.stringify(waiting);
    const announceError = waiting.steps.find((x) => x.name === 'announce')?.error ?? '';
    expect(announceError).toContain(`{env: ${WEBHOOK_ENV}}`);
    expect(text).toContain(`{env: ${WEBHOOK_ENV}}`);
    expect(text).toContain(`Set the environment variable ${WEBHOOK_ENV} in the worker's environment`);
    expectNoSecrets('the status while the decision is pending', text);
    // Nothing half-done: production serves the new version, and no chat message went out.
    expect(await (await fetch(`${lab.production.url}/version`)).json()).toEqual({ version });
    expect(lab.webhook.requests()).toHaveLength(0);
    // The token was used (every git request carried it, none went without).
    expect(gitRequests.authorized).toBeGreaterThan(0);
    expect(gitRequests.refused).toBe(0);

    // Fixed: the worker is restarted with the variable, and the operator retries.
    await stopWorker();
    await startWorker({ ...lab.env, [TOKEN_ENV]: githubToken, [REPO_TOKEN_ENV]: repoToken });
    const retry = await gantry(['decide', 'retry', 'hello', version, '--as', 'operator', '--key', lab.people.operator], { env: cliEnv });
    expect(retry.code, show(retry)).toBe(0);
    const done = await untilStatus(version, 'the release to finish', (s) => s.outcome !== undefined);
    expect(done.outcome, `${done.message}\n${done.steps.find((x) => x.name === 'announce')?.error ?? ''}`).toBe('succeeded');
    expect(lab.webhook.requests()).toHaveLength(1);
    expect(gh.releases).toHaveLength(1);
    expectContractKept(gh);
  }, 600_000);

  it('a second release with the same secrets rolls back (its /health answers 404), announced as such', async () => {
    const { lab } = ctx;
    const { version, commit } = lab.repo.broken;
    lab.repo.moveBranch('main', commit);
    writeRollbackDemoConfig(configFile); // staging checks only /version, so the broken revision reaches production
    gh.addCheckRun(commit, 'unit-tests', 'completed', 'success');
    gh.addFile(`v${version}`, 'CHANGELOG.md', (await run('git', ['show', `${commit}:CHANGELOG.md`], { cwd: lab.repo.url })).stdout);
    const start = await gantry(['start', 'hello', version, '--requested-by', 'operator', '--key', lab.people.operator,
      '--approve-as', 'bob', '--approve-key', lab.people.bob], { env: cliEnv, timeoutMs: 400_000 });
    expect(start.code, `${show(start)}\nworker log:\n${workerLog.slice(-3000)}`).toBe(10);
    expect(lab.webhook.requests()).toHaveLength(2);
    expect(await (await fetch(`${lab.production.url}/version`)).json()).toEqual({ version: lab.repo.good.version });
  }, 420_000);

  it('no token, key or webhook URL in the exported history, the status, the timeline, audit lines, webhook payloads, GitHub writes, artifacts or the worker log', async () => {
    const { lab } = ctx;
    for (const { version, commit } of [lab.repo.good, lab.repo.broken]) {
      const workflowId = `release-hello-${version}`;
      const exported = await run(TEMPORAL_CLI, ['workflow', 'show', '--workflow-id', workflowId, '--output', 'json', '--address', dev.address, '--namespace', 'default'],
        { maxBuffer: 64 * 1024 * 1024 });
      const history = JSON.parse(exported.stdout) as { events: unknown[] };
      expect(history.events.length).toBeGreaterThan(20);
      // The export holds the release, payloads decoded: its resolved config (with the references), the steps' results.
      const all = `${exported.stdout}\n${decodedPayloads(history).join('\n')}`;
      expect(all).toContain(`"env":"${REPO_TOKEN_ENV}"`);
      expect(all).toContain(`"env":"${TOKEN_ENV}"`);
      expect(all).toContain(`"env":"${WEBHOOK_ENV}"`);
      expect(all).toContain(commit);
      expectNoSecrets(`the exported history of ${workflowId}`, all);
    }
    const { version } = lab.repo.good;
    for (const v of [version, lab.repo.broken.version]) {
      const statusJson = await gantry(['status', 'hello', v, '--json'], { env: cliEnv });
      expect(statusJson.code, show(statusJson)).toBe(0);
      expectNoSecrets(`gantry status hello ${v} --json`, statusJson.stdout);
      const timeline = await gantry(['history', 'hello', v, '--json'], { env: cliEnv });
      expect(timeline.code, show(timeline)).toBe(0);
      expectNoSecrets(`gantry history hello ${v} --json`, timeline.stdout);
    }
    const audit = readFileSync(path.join(lab.dir, 'audit.jsonl'), 'utf8');
    expect(audit).toContain(version);
    expect(audit).toContain(lab.repo.broken.version);
    expectNoSecrets('the audit log', audit);
    const hooks = JSON.stringify(lab.webhook.requests());
    expect(hooks).toContain(version);
    expectNoSecrets('the webhook payloads', hooks);
    expectNoSecrets('the GitHub writes', JSON.stringify({ releases: gh.releases, comments: gh.issueComments }));
    const artifacts = filesBelow(path.join(lab.dir, 'artifacts'));
    expect(artifacts.map((a) => path.basename(a.file))).toEqual(expect.arrayContaining(['release-notes.md', 'release-metadata.json', 'release-manifest.json']));
    for (const a of artifacts) expectNoSecrets(a.file, a.text);
    expectNoSecrets('the worker log', workerLog);
  }, 120_000);
});
