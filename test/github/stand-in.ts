/* eslint-disable @typescript-eslint/no-explicit-any -- objects here are JSON shaped by GitHub's description, checked by ajv, not by TypeScript */
/**
 * An in-process stand-in for the GitHub REST API (node http on 127.0.0.1, a random port) serving only the
 * endpoints gantry calls. Every request is checked against GitHub's published contract (method, path, path
 * and query parameters, body) and so is every response it sends; anything off-contract is recorded in
 * `violations`, which each test asserts empty. Objects are built from the contract's own documented examples,
 * so they carry every field GitHub's schemas require.
 *
 * Artifact archives are served from a second server (another origin, as GitHub's blob storage is): a request
 * that arrives there with an Authorization header is a token leak and a violation.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { zipSync, strToU8 } from 'fflate';
import { GithubContract, type Violation } from './openapi';

type Obj = Record<string, any>;

export interface Fault {
  status: number;
  headers?: Record<string, string>;
  message?: string;
  /** How many matching requests get this answer. @default 1 */
  times?: number;
  /**
   * The request is carried out first (a write lands), then answered with this fault: GitHub did it, and its
   * answer says otherwise (a 502 from a proxy in front of it, say).
   */
  landed?: boolean;
}

export interface RunStep {
  status: 'queued' | 'in_progress' | 'completed';
  conclusion?: string;
}

export interface RunScript {
  /** The statuses successive GETs of the run report; the last one sticks. */
  steps: RunStep[];
  /** Instead of `steps` after the first: the run's state when asked (a test's "CI job" doing real work). */
  live?: () => RunStep;
}

export interface RecordedRequest {
  method: string;
  path: string;
  operationId: string | undefined;
  status: number;
  at: number;
  body?: any;
  /** The request was carried out (its handler ran): for a write, the effect landed, whatever the answer said. */
  landed?: boolean;
  /** False when the answer came after the client had given up (the connection was gone). */
  answered?: boolean;
}

const DOCS = 'https://docs.github.com/rest';

function sha(n: number): string {
  return n.toString(16).padStart(40, 'a').slice(-40);
}

export class GithubStandIn {
  readonly contract = new GithubContract();
  readonly violations: Violation[] = [];
  readonly requests: RecordedRequest[] = [];
  /** Requests the blob server got (artifact downloads after GitHub's redirect). */
  readonly blobRequests: { path: string; authorization: string | undefined }[] = [];

  readonly owner: string;
  readonly repo: string;
  readonly token: string;
  readonly prefix: string;

  private server = http.createServer((req, res) => void this.handle(req, res));
  private blobServer = http.createServer((req, res) => this.handleBlob(req, res));
  private faults = new Map<string, (Fault & { lateMs?: number })[]>();
  private nextId = 1000;

  // --- repository state -------------------------------------------------------------------------------------
  checkRuns: Obj[] = [];
  statuses: Obj[] = [];
  issues: Obj[] = [];
  milestones: Obj[] = [];
  issueComments: Obj[] = [];
  releases: Obj[] = [];
  workflows = new Map<string, Obj>();
  runs: Obj[] = [];
  private runScripts = new Map<number, RunScript>();
  /** Runs hidden from listings until that many list calls happened (a tag push takes a moment to start one). */
  private runVisibleAfter = new Map<number, number>();
  private listRunCalls = 0;
  artifacts: Obj[] = [];
  private blobs = new Map<number, Uint8Array>();
  deployments: Obj[] = [];
  deploymentStatuses: Obj[] = [];
  commitComments: Obj[] = [];
  /** `${ref}\0${path}` → file text. */
  files = new Map<string, string>();
  /**
   * Called before workflow runs are listed, so an end-to-end test can add the run the tag push "started" only
   * once gantry looks for it (the head SHA is the release commit it asks about).
   */
  beforeListRuns?: (workflowFile: string, headSha: string | undefined) => void;

  constructor(opts: { owner?: string; repo?: string; token: string; prefix?: string }) {
    this.owner = opts.owner ?? 'acme';
    this.repo = opts.repo ?? 'hello';
    this.token = opts.token;
    this.prefix = opts.prefix ?? '';
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => this.blobServer.listen(0, '127.0.0.1', r));
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.blobServer.closeAllConnections();
    await Promise.all([new Promise((r) => this.server.close(r)), new Promise((r) => this.blobServer.close(r))]);
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  get baseUrl(): string {
    return `${this.origin}${this.prefix}`;
  }
  private get blobOrigin(): string {
    return `http://127.0.0.1:${(this.blobServer.address() as AddressInfo).port}`;
  }
  private get api(): string {
    return `${this.baseUrl}/repos/${this.owner}/${this.repo}`;
  }
  private get web(): string {
    return `${this.origin}/${this.owner}/${this.repo}`;
  }

  /** The next `times` requests for the operation get this answer instead. */
  fail(operationId: string, fault: Fault): void {
    const list = this.faults.get(operationId) ?? [];
    for (let i = 0; i < (fault.times ?? 1); i++) list.push(fault);
    this.faults.set(operationId, list);
  }

  /**
   * The next `times` requests for the operation are carried out at once (a write lands) but answered only after
   * `delayMs`: longer than the client waits, and the client never learns that the write landed.
   */
  answerLate(operationId: string, delayMs: number, times = 1): void {
    const list = this.faults.get(operationId) ?? [];
    for (let i = 0; i < times; i++) list.push({ status: 0, lateMs: delayMs });
    this.faults.set(operationId, list);
  }

  calls(operationId: string): RecordedRequest[] {
    return this.requests.filter((r) => r.operationId === operationId);
  }

  // --- builders (from the contract's documented examples) -----------------------------------------------------

  private id(): number {
    return this.nextId++;
  }

  addCheckRun(commit: string, name: string, status: 'queued' | 'in_progress' | 'completed', conclusion: string | null): Obj {
    const id = this.id();
    const run = this.contract.example('checks/list-for-ref').check_runs[0];
    Object.assign(run, {
      id,
      node_id: `CR_${id}`,
      name,
      head_sha: commit,
      status,
      conclusion: status === 'completed' ? conclusion : null,
      completed_at: status === 'completed' ? '2024-05-01T10:05:00Z' : null,
      url: `${this.api}/check-runs/${id}`,
      html_url: `${this.web}/runs/${id}`,
      details_url: `${this.web}/actions/runs/${id}`,
      pull_requests: [],
    });
    this.checkRuns.push(run);
    return run;
  }

  addStatus(commit: string, context: string, state: 'error' | 'failure' | 'pending' | 'success'): Obj {
    const id = this.id();
    const s = this.contract.example('repos/get-combined-status-for-ref').statuses[0];
    Object.assign(s, { id, node_id: `ST_${id}`, context, state, target_url: `https://ci.example.test/${context}/${id}`, sha: commit });
    this.statuses.push(s);
    return s;
  }

  addLabelledIssue(title: string, labels: string[], extra: Obj = {}): Obj {
    const number = this.issues.length + 1;
    const issue = this.contract.example('issues/list-for-repo')[0];
    const labelTemplate = issue.labels[0];
    delete issue.pull_request;
    Object.assign(issue, {
      id: this.id(),
      node_id: `I_${number}`,
      number,
      title,
      state: 'open',
      state_reason: null,
      closed_at: null,
      milestone: null,
      labels: labels.map((name, i) => ({ ...labelTemplate, id: 1000 + i, node_id: `L_${name}`, name, url: `${this.api}/labels/${encodeURIComponent(name)}` })),
      url: `${this.api}/issues/${number}`,
      html_url: `${this.web}/issues/${number}`,
      comments_url: `${this.api}/issues/${number}/comments`,
      repository_url: this.api,
      ...extra,
    });
    this.issues.push(issue);
    return issue;
  }

  addMilestone(title: string, state: 'open' | 'closed' = 'open'): Obj {
    const number = this.milestones.length + 1;
    const m = this.contract.example('issues/list-milestones')[0];
    Object.assign(m, {
      id: this.id(),
      node_id: `MI_${number}`,
      number,
      title,
      state,
      closed_at: state === 'closed' ? '2024-05-01T10:00:00Z' : null,
      url: `${this.api}/milestones/${number}`,
      html_url: `${this.web}/milestone/${number}`,
      labels_url: `${this.api}/milestones/${number}/labels`,
    });
    this.milestones.push(m);
    return m;
  }

  addMilestoneIssue(milestone: Obj, title: string, extra: Obj = {}): Obj {
    return this.addLabelledIssue(title, [], { milestone: structuredClone(milestone), ...extra });
  }

  addIssueComment(issueNumber: number, body: string): Obj {
    const id = this.id();
    const c = this.contract.example('issues/list-comments')[0];
    Object.assign(c, {
      id,
      node_id: `IC_${id}`,
      body,
      url: `${this.api}/issues/comments/${id}`,
      html_url: `${this.web}/issues/${issueNumber}#issuecomment-${id}`,
      issue_url: `${this.api}/issues/${issueNumber}`,
    });
    this.issueComments.push(c);
    return c;
  }

  addRelease(tag: string, fields: Obj = {}): Obj {
    const id = this.id();
    const r = this.contract.example('repos/get-release-by-tag');
    Object.assign(r, {
      id,
      node_id: `RE_${id}`,
      tag_name: tag,
      name: tag,
      body: '',
      draft: false,
      prerelease: false,
      target_commitish: 'main',
      url: `${this.api}/releases/${id}`,
      html_url: `${this.web}/releases/tag/${encodeURIComponent(tag)}`,
      assets_url: `${this.api}/releases/${id}/assets`,
      upload_url: `${this.baseUrl}/repos/${this.owner}/${this.repo}/releases/${id}/assets{?name,label}`,
      tarball_url: `${this.api}/tarball/${tag}`,
      zipball_url: `${this.api}/zipball/${tag}`,
      assets: [],
      ...fields,
    });
    if (r.draft) r.published_at = null;
    this.releases.push(r);
    return r;
  }

  addWorkflow(file: string): Obj {
    const wf = { id: this.id(), path: `.github/workflows/${file}`, name: file };
    this.workflows.set(file, wf);
    return wf;
  }

  /** A workflow run of `file` for `ref` at `commit`, reporting the scripted statuses on successive polls. */
  addRun(file: string, commit: string, ref: string, script: RunScript, opts: { event?: string; visibleAfterListCalls?: number } = {}): Obj {
    const wf = this.workflows.get(file) ?? this.addWorkflow(file);
    const id = this.id();
    const run = this.contract.example('actions/get-workflow-run');
    const first = script.steps[0]!;
    Object.assign(run, {
      id,
      node_id: `WFR_${id}`,
      run_number: this.runs.length + 1,
      run_attempt: 1,
      name: file,
      display_title: `${file} ${ref}`,
      head_branch: ref,
      head_sha: commit,
      event: opts.event ?? 'push',
      path: wf.path,
      workflow_id: wf.id,
      status: first.status,
      conclusion: first.conclusion ?? null,
      url: `${this.api}/actions/runs/${id}`,
      html_url: `${this.web}/actions/runs/${id}`,
      jobs_url: `${this.api}/actions/runs/${id}/jobs`,
      logs_url: `${this.api}/actions/runs/${id}/logs`,
      artifacts_url: `${this.api}/actions/runs/${id}/artifacts`,
      cancel_url: `${this.api}/actions/runs/${id}/cancel`,
      rerun_url: `${this.api}/actions/runs/${id}/rerun`,
      workflow_url: `${this.api}/actions/workflows/${wf.id}`,
      pull_requests: [],
    });
    run.head_commit.id = commit;
    this.runs.push(run);
    this.runScripts.set(id, { ...script, steps: [...script.steps] });
    if (opts.visibleAfterListCalls) this.runVisibleAfter.set(id, opts.visibleAfterListCalls);
    return run;
  }

  /** An artifact of the run holding the given files (zipped, served from the blob origin). */
  addArtifact(run: Obj, name: string, files: Record<string, string>, opts: { expired?: boolean } = {}): Obj {
    const id = this.id();
    const zip = zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, strToU8(v)])));
    this.blobs.set(id, zip);
    const a = this.contract.example('actions/list-workflow-run-artifacts').artifacts[0];
    Object.assign(a, {
      id,
      node_id: `AR_${id}`,
      name,
      size_in_bytes: zip.length,
      expired: opts.expired ?? false,
      url: `${this.api}/actions/artifacts/${id}`,
      archive_download_url: `${this.api}/actions/artifacts/${id}/zip`,
      workflow_run: { id: run.id, repository_id: a.workflow_run?.repository_id ?? 1, head_repository_id: 1, head_branch: run.head_branch, head_sha: run.head_sha },
    });
    this.artifacts.push(a);
    return a;
  }

  addFile(ref: string, path: string, text: string): void {
    this.files.set(`${ref}\0${path}`, text);
  }

  // --- HTTP ---------------------------------------------------------------------------------------------------

  private handleBlob(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.blobOrigin);
    this.blobRequests.push({ path: url.pathname, authorization: req.headers.authorization });
    if (req.headers.authorization) {
      this.violations.push({ kind: 'request', operation: 'artifact blob', where: url.pathname, message: 'the Authorization header (the GitHub token) was sent to the artifact storage origin' });
    }
    const m = /^\/artifacts\/(\d+)\.zip$/.exec(url.pathname);
    const blob = m ? this.blobs.get(Number(m[1])) : undefined;
    if (!blob || url.searchParams.get('sig') !== 'ok') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': String(blob.length) }).end(Buffer.from(blob));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', this.origin);
    const method = req.method ?? 'GET';
    const record: RecordedRequest = { method, path: url.pathname + url.search, operationId: undefined, status: 0, at: Date.now() };
    this.requests.push(record);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      const h: Record<string, string> = { 'x-github-api-version-selected': '2022-11-28', ...headers };
      if (body === undefined) {
        res.writeHead(status, h).end();
      } else {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...h }).end(JSON.stringify(body));
      }
    };

    if (!url.pathname.startsWith(`${this.prefix}/`)) {
      this.violations.push({ kind: 'unknown-operation', operation: '?', where: `${method} ${url.pathname}`, message: `not under the API prefix ${this.prefix || '/'}` });
      return send(404, { message: 'Not Found', documentation_url: DOCS });
    }
    const path = url.pathname.slice(this.prefix.length);
    const matched = this.contract.match(method, path);
    if (!matched) {
      this.violations.push({ kind: 'unknown-operation', operation: '?', where: `${method} ${path}`, message: 'GitHub has no such endpoint' });
      return send(404, { message: 'Not Found', documentation_url: DOCS });
    }
    const { operation } = matched;
    const opId = operation.operationId;
    record.operationId = opId;
    const checked = this.contract.validateRequest(operation, matched.pathParams, url.searchParams, req.headers['content-type'], raw);
    record.body = checked.body;
    for (const message of checked.violations) this.violations.push({ kind: 'request', operation: opId, where: `${method} ${path}${url.search}`, message });

    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      for (const message of this.contract.validateResponse(operation, status, body, headers)) {
        this.violations.push({ kind: 'response', operation: opId, where: `${method} ${path} → ${status}`, message });
      }
      send(status, body, headers);
    };

    if (checked.violations.length > 0) {
      // GitHub refuses what breaks its contract; the violation is already recorded for the test to fail on.
      return send(422, { message: 'Validation Failed (stand-in: the request breaks the published contract)', documentation_url: DOCS });
    }
    if (req.headers.authorization !== `token ${this.token}`) {
      this.violations.push({ kind: 'request', operation: opId, where: `${method} ${path}`, message: `request without the expected token (authorization: ${req.headers.authorization ? 'another value' : 'none'})` });
      return reply(401, { message: 'Bad credentials', documentation_url: DOCS, status: '401' });
    }
    if (checked.path.owner !== this.owner || checked.path.repo !== this.repo) {
      return reply(404, { message: 'Not Found', documentation_url: DOCS, status: '404' });
    }
    const fault = this.faults.get(opId)?.shift();
    const injected = (f: Fault) =>
      reply(f.status, { message: f.message ?? `Injected ${f.status}`, documentation_url: DOCS, status: String(f.status) }, f.headers);
    if (fault && !fault.landed && fault.lateMs === undefined) return injected(fault);
    const handler = this.handlers[opId];
    if (!handler) {
      this.violations.push({ kind: 'unknown-operation', operation: opId, where: `${method} ${path}`, message: 'the stand-in does not serve this operation (gantry should not call it)' });
      return send(501, { message: `stand-in does not serve ${opId}`, documentation_url: DOCS });
    }
    const out = handler({ path: checked.path, query: checked.query, body: checked.body ?? {}, url });
    record.landed = true;
    if (fault?.lateMs !== undefined) {
      await new Promise((r) => setTimeout(r, fault.lateMs).unref());
      if (res.destroyed || res.socket?.destroyed !== false) {
        record.status = out.status;
        record.answered = false;
        return;
      }
    }
    if (fault?.landed) return injected(fault);
    reply(out.status, out.body, out.headers);
  }

  /** One page of `items` with GitHub's Link header (per_page default 30, at most 100). */
  private page(items: Obj[], ctx: Ctx): { items: Obj[]; headers: Record<string, string> } {
    const perPage = Math.min(Number(ctx.query.per_page ?? 30), 100);
    const page = Number(ctx.query.page ?? 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (p: number) => {
      const u = new URL(ctx.url.toString());
      u.searchParams.set('page', String(p));
      u.searchParams.set('per_page', String(perPage));
      return u.toString();
    };
    const rels: string[] = [];
    if (page < last) rels.push(`<${link(page + 1)}>; rel="next"`, `<${link(last)}>; rel="last"`);
    if (page > 1) rels.push(`<${link(1)}>; rel="first"`, `<${link(page - 1)}>; rel="prev"`);
    return { items: items.slice((page - 1) * perPage, page * perPage), headers: rels.length ? { link: rels.join(', ') } : {} };
  }

  private notFound(): Out {
    return { status: 404, body: { message: 'Not Found', documentation_url: DOCS, status: '404' } };
  }

  private handlers: Record<string, (ctx: Ctx) => Out> = {
    'checks/list-for-ref': (ctx) => {
      let runs = this.checkRuns.filter((r) => r.head_sha === ctx.path.ref);
      if (ctx.query.check_name) runs = runs.filter((r) => r.name === ctx.query.check_name);
      if (ctx.query.status) runs = runs.filter((r) => r.status === ctx.query.status);
      const p = this.page(runs, ctx);
      return { status: 200, body: { total_count: runs.length, check_runs: p.items }, headers: p.headers };
    },
    'repos/get-combined-status-for-ref': (ctx) => {
      const all = this.statuses.filter((s) => s.sha === ctx.path.ref).map(({ sha: _sha, ...s }) => s);
      const state = all.some((s) => s.state === 'failure' || s.state === 'error') ? 'failure' : all.length === 0 || all.some((s) => s.state === 'pending') ? 'pending' : 'success';
      const p = this.page(all, ctx);
      const body = this.contract.example('repos/get-combined-status-for-ref');
      Object.assign(body, {
        state,
        sha: ctx.path.ref,
        total_count: all.length,
        statuses: p.items,
        commit_url: `${this.api}/commits/${ctx.path.ref}`,
        url: `${this.api}/commits/${ctx.path.ref}/status`,
      });
      return { status: 200, body, headers: p.headers };
    },
    'issues/list-for-repo': (ctx) => {
      const state = ctx.query.state ?? 'open';
      let list = this.issues.filter((i) => state === 'all' || i.state === state);
      if (ctx.query.labels) {
        const wanted = String(ctx.query.labels).split(',');
        list = list.filter((i) => wanted.every((w) => i.labels.some((l: Obj) => l.name === w)));
      }
      const ms = ctx.query.milestone;
      if (ms === 'none') list = list.filter((i) => i.milestone === null);
      else if (ms === '*') list = list.filter((i) => i.milestone !== null);
      else if (ms !== undefined) list = list.filter((i) => i.milestone?.number === Number(ms));
      list = [...list].sort((a, b) => b.number - a.number);
      const p = this.page(list, ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'issues/update': (ctx) => {
      const issue = this.issues.find((i) => i.number === ctx.path.issue_number);
      if (!issue) return this.notFound();
      if (ctx.body.state) {
        issue.state = ctx.body.state;
        issue.closed_at = ctx.body.state === 'closed' ? new Date().toISOString().replace(/\.\d+Z$/, 'Z') : null;
        issue.state_reason = ctx.body.state === 'closed' ? (ctx.body.state_reason ?? 'completed') : null;
      }
      return { status: 200, body: issue };
    },
    'issues/get': (ctx) => {
      const issue = this.issues.find((i) => i.number === ctx.path.issue_number);
      return issue ? { status: 200, body: issue } : this.notFound();
    },
    'issues/get-milestone': (ctx) => {
      const m = this.milestones.find((x) => x.number === ctx.path.milestone_number);
      return m ? { status: 200, body: m } : this.notFound();
    },
    'issues/list-comments': (ctx) => {
      const list = this.issueComments.filter((c) => c.issue_url === `${this.api}/issues/${ctx.path.issue_number}`);
      const p = this.page(list, ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'issues/create-comment': (ctx) => {
      if (!this.issues.some((i) => i.number === ctx.path.issue_number)) return this.notFound();
      return { status: 201, body: this.addIssueComment(ctx.path.issue_number, ctx.body.body) };
    },
    'issues/list-milestones': (ctx) => {
      const state = ctx.query.state ?? 'open';
      const p = this.page(this.milestones.filter((m) => state === 'all' || m.state === state), ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'issues/update-milestone': (ctx) => {
      const m = this.milestones.find((x) => x.number === ctx.path.milestone_number);
      if (!m) return this.notFound();
      if (ctx.body.state) {
        m.state = ctx.body.state;
        m.closed_at = m.state === 'closed' ? '2024-05-01T12:00:00Z' : null;
      }
      return { status: 200, body: m };
    },
    'repos/get-release-by-tag': (ctx) => {
      const r = this.releases.find((x) => x.tag_name === ctx.path.tag && !x.draft);
      return r ? { status: 200, body: r } : this.notFound();
    },
    'repos/list-releases': (ctx) => {
      const p = this.page([...this.releases].sort((a, b) => b.id - a.id), ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'repos/create-release': (ctx) => {
      if (this.releases.some((r) => r.tag_name === ctx.body.tag_name)) {
        return {
          status: 422,
          body: { message: 'Validation Failed', documentation_url: DOCS, errors: [{ resource: 'Release', code: 'already_exists', field: 'tag_name' }] },
        };
      }
      const { tag_name, ...fields } = ctx.body;
      const r = this.addRelease(tag_name, { name: fields.name ?? tag_name, body: fields.body ?? '', draft: fields.draft ?? false, prerelease: fields.prerelease ?? false });
      return { status: 201, body: r };
    },
    'repos/update-release': (ctx) => {
      const r = this.releases.find((x) => x.id === ctx.path.release_id);
      if (!r) return this.notFound();
      for (const k of ['tag_name', 'name', 'body', 'draft', 'prerelease', 'target_commitish']) if (k in ctx.body) r[k] = ctx.body[k];
      if (!r.draft && r.published_at === null) r.published_at = '2024-05-01T12:00:00Z';
      return { status: 200, body: r };
    },
    'actions/list-workflow-runs': (ctx) => {
      const id = String(ctx.path.workflow_id);
      this.beforeListRuns?.(id, ctx.query.head_sha);
      const wf = this.workflows.get(id) ?? [...this.workflows.values()].find((w) => String(w.id) === id);
      if (!wf) return this.notFound();
      this.listRunCalls++;
      let runs = this.runs.filter((r) => r.workflow_id === wf.id && this.listRunCalls > (this.runVisibleAfter.get(r.id) ?? 0));
      if (ctx.query.head_sha) runs = runs.filter((r) => r.head_sha === ctx.query.head_sha);
      if (ctx.query.branch) runs = runs.filter((r) => r.head_branch === ctx.query.branch);
      if (ctx.query.event) runs = runs.filter((r) => r.event === ctx.query.event);
      runs = [...runs].sort((a, b) => b.id - a.id);
      const p = this.page(runs, ctx);
      return { status: 200, body: { total_count: runs.length, workflow_runs: p.items }, headers: p.headers };
    },
    'actions/get-workflow-run': (ctx) => {
      const run = this.runs.find((r) => r.id === ctx.path.run_id);
      if (!run) return this.notFound();
      const script = this.runScripts.get(run.id)!;
      const step = script.live ? script.live() : script.steps.length > 1 ? script.steps.shift()! : script.steps[0]!;
      run.status = step.status;
      run.conclusion = step.conclusion ?? null;
      return { status: 200, body: run };
    },
    'actions/list-workflow-run-artifacts': (ctx) => {
      let list = this.artifacts.filter((a) => a.workflow_run.id === ctx.path.run_id);
      if (ctx.query.name) list = list.filter((a) => a.name === ctx.query.name);
      const p = this.page(list, ctx);
      return { status: 200, body: { total_count: list.length, artifacts: p.items }, headers: p.headers };
    },
    'actions/download-artifact': (ctx) => {
      const a = this.artifacts.find((x) => x.id === ctx.path.artifact_id);
      if (!a) return this.notFound();
      if (a.expired) return { status: 410, body: { message: 'Artifact has expired', documentation_url: DOCS, status: '410' } };
      return { status: 302, body: undefined, headers: { location: `${this.blobOrigin}/artifacts/${a.id}.zip?sig=ok` } };
    },
    'repos/list-deployments': (ctx) => {
      let list = [...this.deployments].sort((a, b) => b.id - a.id);
      for (const k of ['sha', 'ref', 'task', 'environment'] as const) if (ctx.query[k] !== undefined) list = list.filter((d) => d[k] === ctx.query[k]);
      const p = this.page(list, ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'repos/create-deployment': (ctx) => {
      const id = this.id();
      const d = this.contract.example('repos/list-deployments')[0];
      const ref = ctx.body.ref;
      const tagged = this.runs.find((r) => r.head_branch === ref);
      Object.assign(d, {
        id,
        node_id: `DE_${id}`,
        ref,
        sha: tagged?.head_sha ?? sha(id),
        task: ctx.body.task ?? 'deploy',
        environment: ctx.body.environment ?? 'production',
        original_environment: ctx.body.environment ?? 'production',
        description: ctx.body.description ?? null,
        payload: ctx.body.payload ?? {},
        url: `${this.api}/deployments/${id}`,
        statuses_url: `${this.api}/deployments/${id}/statuses`,
      });
      this.deployments.push(d);
      return { status: 201, body: d };
    },
    'repos/list-deployment-statuses': (ctx) => {
      const list = this.deploymentStatuses.filter((s) => s.deployment_url === `${this.api}/deployments/${ctx.path.deployment_id}`).sort((a, b) => b.id - a.id);
      const p = this.page(list, ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'repos/create-deployment-status': (ctx) => {
      const d = this.deployments.find((x) => x.id === ctx.path.deployment_id);
      if (!d) return this.notFound();
      const id = this.id();
      const s = this.contract.example('repos/list-deployment-statuses')[0];
      Object.assign(s, {
        id,
        node_id: `DES_${id}`,
        state: ctx.body.state,
        description: ctx.body.description ?? '',
        environment: ctx.body.environment ?? d.environment,
        // Unset URLs keep the example's values: GitHub sends "" there, which its own format: uri does not allow.
        log_url: ctx.body.log_url ?? s.log_url,
        target_url: ctx.body.log_url ?? s.target_url,
        environment_url: ctx.body.environment_url ?? s.environment_url,
        url: `${this.api}/deployments/${d.id}/statuses/${id}`,
        deployment_url: `${this.api}/deployments/${d.id}`,
      });
      this.deploymentStatuses.push(s);
      return { status: 201, body: s };
    },
    'repos/list-comments-for-commit': (ctx) => {
      const p = this.page(this.commitComments.filter((c) => c.commit_id === ctx.path.commit_sha), ctx);
      return { status: 200, body: p.items, headers: p.headers };
    },
    'repos/create-commit-comment': (ctx) => {
      const id = this.id();
      const c = this.contract.example('repos/list-comments-for-commit')[0];
      Object.assign(c, {
        id,
        node_id: `CC_${id}`,
        body: ctx.body.body,
        commit_id: ctx.path.commit_sha,
        path: null,
        position: null,
        line: null,
        url: `${this.api}/comments/${id}`,
        html_url: `${this.web}/commit/${ctx.path.commit_sha}#commitcomment-${id}`,
      });
      this.commitComments.push(c);
      return { status: 201, body: c };
    },
    'repos/get-content': (ctx) => {
      const ref = String(ctx.query.ref ?? 'main');
      const text = this.files.get(`${ref}\0${ctx.path.path}`);
      if (text === undefined) return this.notFound();
      const f = this.contract.example('repos/get-content', 200, 'response-if-content-is-a-file');
      const content = Buffer.from(text, 'utf8').toString('base64');
      const name = String(ctx.path.path).split('/').pop();
      Object.assign(f, {
        type: 'file',
        encoding: 'base64',
        size: Buffer.byteLength(text),
        name,
        path: ctx.path.path,
        content,
        sha: sha(text.length),
        url: `${this.api}/contents/${ctx.path.path}?ref=${ref}`,
        html_url: `${this.web}/blob/${ref}/${ctx.path.path}`,
        download_url: `${this.origin}/raw/${ref}/${ctx.path.path}`,
        git_url: `${this.api}/git/blobs/${sha(text.length)}`,
      });
      f._links = { self: f.url, git: f.git_url, html: f.html_url };
      return { status: 200, body: f };
    },
  };
}

interface Ctx {
  path: Record<string, any>;
  query: Record<string, any>;
  body: any;
  url: URL;
}
interface Out {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}
