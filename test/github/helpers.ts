/** Shared set-up for the GitHub tests: the stand-in, config pointing at it, fast waits, activity context. */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Info } from '@temporalio/activity';
import { expect } from 'vitest';
import { githubActionsBuildSchema, githubSchema, imageSchema, repoSchema, type GithubConfig } from '../../src/config/schema';
import type { GithubClientTuning } from '../../src/github/client';
import type { AnnounceRequest, BuildRequest, PreflightRequest, ReleaseRef } from '../../src/activities/types';
import { GithubStandIn } from './stand-in';

export const TOKEN_ENV = 'GANTRY_TEST_GITHUB_TOKEN';

/** A fresh token per stand-in, so a leak in any output can be searched for. */
export function newToken(): string {
  return `ghp_${randomBytes(18).toString('hex')}`;
}

/** Waits shrunk for tests: one "second" of retry-after is 50 ms; writes are not spaced. */
export const FAST: Partial<GithubClientTuning> = {
  retries: 2,
  retryBaseMs: 5,
  rateLimitRetries: 2,
  retryAfterUnitMs: 50,
  maxRateLimitWaitMs: 5_000,
  writeSpacingMs: 0,
  notificationSpacingMs: 0,
  requestTimeoutMs: 5_000,
};

export async function startStandIn(opts: { prefix?: string } = {}): Promise<{ gh: GithubStandIn; env: NodeJS.ProcessEnv; token: string }> {
  const token = newToken();
  const gh = await new GithubStandIn({ token, ...opts }).start();
  return { gh, env: { [TOKEN_ENV]: token }, token };
}

export function githubConfig(gh: GithubStandIn, extra: Partial<Record<keyof GithubConfig, unknown>> = {}): GithubConfig {
  return githubSchema.parse({ owner: gh.owner, repo: gh.repo, token: { env: TOKEN_ENV }, baseUrl: gh.baseUrl, ...extra });
}

export const COMMIT = '3f786850e387550fdab836ed7e6dc881de23001b';
export const release = (version = '1.2.3'): ReleaseRef => ({ service: 'hello', version, workflowId: `release-hello-${version}` });

export function preflightRequest(github: GithubConfig): PreflightRequest {
  return { release: release(), repo: repoSchema.parse({ url: '/srv/git/hello.git' }), github };
}

export function buildRequest(github: GithubConfig, build: Record<string, unknown> = {}, version = '1.2.3'): BuildRequest {
  return {
    release: release(version),
    repo: repoSchema.parse({ url: '/srv/git/hello.git' }),
    image: imageSchema.parse({ registry: '127.0.0.1:5000', name: 'hello' }),
    build: githubActionsBuildSchema.parse({ kind: 'github-actions', workflow: 'release.yml', digestFrom: { artifact: 'image-manifest' }, pollInterval: '20ms', ...build }),
    github,
    tag: `v${version}`,
    commit: COMMIT,
  };
}

export function announceRequest(github: GithubConfig, extra: Partial<AnnounceRequest> = {}): AnnounceRequest {
  const digest = `sha256:${'ab'.repeat(32)}`;
  return {
    release: release(),
    outcome: 'released',
    announce: {},
    github,
    repo: repoSchema.parse({ url: '/srv/git/hello.git' }),
    commit: COMMIT,
    tag: 'v1.2.3',
    digest,
    imageRef: `127.0.0.1:5000/hello@${digest}`,
    approvers: ['alice'],
    hosts: ['127.0.0.1'],
    durations: {},
    ciRunUrl: 'https://github.example/acme/hello/actions/runs/1',
    ...extra,
  };
}

const quiet = { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Run `fn` inside an activity Context (MockActivityEnvironment), recording its heartbeats. */
export async function inActivity<R>(fn: () => Promise<R>, info: Partial<Info> = {}): Promise<{ result: R; heartbeats: unknown[] }> {
  const env = new MockActivityEnvironment(info, { logger: quiet });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const result = (await env.run(fn)) as R;
  return { result, heartbeats };
}

/** The ApplicationFailure a promise rejects with (fails the test when it resolves or rejects otherwise). */
export async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a failure, but the call succeeded').toBeDefined();
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

/** No request or response broke GitHub's published contract. */
export function expectContractKept(gh: GithubStandIn): void {
  expect(gh.violations, `contract violations:\n${gh.violations.map((v) => `${v.kind} ${v.operation} ${v.where}: ${v.message}`).join('\n')}`).toEqual([]);
}

/** The token never shows up in a failure the operator sees. */
export function expectNoToken(token: string, ...texts: unknown[]): void {
  for (const t of texts) expect(JSON.stringify(t ?? '')).not.toContain(token);
}
