/**
 * The release config schema (YAML on disk, validated with zod).
 *
 * Every object is strict: an unknown key is an error that names the key, so a typo such as `aprovers` never
 * silently drops a setting. The inferred types are the shapes the workflow receives as its immutable input
 * snapshot, so they must stay free of secrets: a secret is always a {@link secretRefSchema reference}.
 */
import { z } from 'zod';
import { msToNumber } from '@temporalio/common/lib/time';
import * as semver from 'semver';

/** A duration in Temporal's string form (`30s`, `5m`, `72h`) or milliseconds. */
export const durationSchema = z
  .union([z.string(), z.number().int().positive()])
  .superRefine((value, ctx) => {
    try {
      const ms = msToNumber(value);
      if (!(ms > 0)) throw new Error('not positive');
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: `"${String(value)}" is not a duration; write it like 30s, 5m, 2h or 3d`,
      });
    }
  });

/** A secret is never written into config; config says where the worker finds it. */
export const secretRefSchema = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name such as GANTRY_TOKEN') }),
  z.strictObject({ file: z.string().min(1, 'a path to a file readable by the worker') }),
]);

export const retryOverrideSchema = z.strictObject({
  maximumAttempts: z.number().int().positive().optional(),
  initialInterval: durationSchema.optional(),
  backoffCoefficient: z.number().min(1).optional(),
  maximumInterval: durationSchema.optional(),
});

export const stepOverrideSchema = z.strictObject({
  startToCloseTimeout: durationSchema.optional(),
  heartbeatTimeout: durationSchema.optional(),
  retry: retryOverrideSchema.optional(),
});

const STEP_KEYS = ['preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'rollback', 'announce'] as const;

export const stepsSchema = z.strictObject(
  Object.fromEntries(STEP_KEYS.map((k) => [k, stepOverrideSchema.optional()])) as Record<
    (typeof STEP_KEYS)[number],
    z.ZodOptional<typeof stepOverrideSchema>
  >,
);

export const httpCheckSchema = z.strictObject({
  name: z.string().min(1),
  /** Absolute URL; `{version}` is replaced by the version being released. */
  url: z.url({ message: 'an absolute http(s) URL such as http://127.0.0.1:8080/health' }),
  method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
  expect: z
    .strictObject({
      status: z.number().int().min(100).max(599).default(200),
      bodyContains: z.string().optional(),
      /** `{ path: "version", equals: "{version}" }`: a dotted path into the JSON body. */
      json: z.strictObject({ path: z.string().min(1), equals: z.union([z.string(), z.number(), z.boolean()]) }).optional(),
    })
    .default({ status: 200 }),
});

const portSchema = z
  .string()
  .regex(/^(\d{1,3}(\.\d{1,3}){3}:)?\d{1,5}:\d{1,5}(\/(tcp|udp))?$/, 'a port mapping such as "8080:80" or "127.0.0.1:8080:80"');

const containerSpecSchema = {
  container: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, 'a container name such as hello-staging'),
  ports: z.array(portSchema).default([]),
  /** A file of KEY=value lines for the container (may hold secrets): read by the worker for docker targets (the engine API takes no env file), handed to the host's CLI as --env-file for ssh targets. Never copied into the release. */
  envFile: z.string().optional(),
  restart: z.enum(['no', 'always', 'unless-stopped', 'on-failure']).default('unless-stopped'),
};

export const dockerDeploySchema = z.strictObject({
  kind: z.literal('docker'),
  ...containerSpecSchema,
  /** Docker/Podman API socket on the worker; default DOCKER_HOST or /var/run/docker.sock. */
  socketPath: z.string().optional(),
});

export const sshHostSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(22),
  user: z.string().min(1),
});

export const sshDeploySchema = z.strictObject({
  kind: z.literal('ssh'),
  ...containerSpecSchema,
  hosts: z.array(sshHostSchema).min(1, 'list at least one host'),
  privateKey: secretRefSchema,
  /** The container CLI on the hosts. */
  containerCli: z.string().default('docker'),
  /** Extra environment for the CLI on the hosts, e.g. DOCKER_HOST. Not secret. */
  cliEnv: z.record(z.string(), z.string()).default({}),
  /** SSH host key fingerprint (SHA256:...) to pin; unset trusts the key on first use within the step. */
  hostKeyFingerprint: z.string().optional(),
});

export const deploySchema = z.discriminatedUnion('kind', [dockerDeploySchema, sshDeploySchema]);

export const environmentSchema = z.strictObject({
  deploy: deploySchema,
  checks: z.array(httpCheckSchema).min(1, 'list at least one check (e.g. /health)'),
  /** How long checks may keep failing before the environment is declared unhealthy. */
  window: durationSchema.default('5m'),
});

export const repoSchema = z.strictObject({
  /** A git URL or path the worker can clone and push to. */
  url: z.string().min(1),
  branch: z.string().default('main'),
  changelog: z.string().default('CHANGELOG.md'),
  /** Run in a checkout of the release commit during preflight; must exit 0. */
  testCommand: z.string().optional(),
  /** Credentials for pushing over HTTPS, by reference. */
  token: secretRefSchema.optional(),
});

export const imageSchema = z.strictObject({
  registry: z.string().min(1),
  name: z.string().regex(/^[a-z0-9]+([._/-][a-z0-9]+)*$/, 'a lowercase image name such as team/hello'),
});

export const dockerBuildSchema = z.strictObject({
  kind: z.literal('docker'),
  dockerfile: z.string().default('Dockerfile'),
  context: z.string().default('.'),
  args: z.record(z.string(), z.string()).default({}),
  socketPath: z.string().optional(),
});

export const githubActionsBuildSchema = z.strictObject({
  kind: z.literal('github-actions'),
  /** The workflow file name in .github/workflows, e.g. release.yml. */
  workflow: z.string().min(1),
  /** Where the image digest comes from after the run succeeds. */
  digestFrom: z.union([
    z.strictObject({ artifact: z.string().min(1), file: z.string().default('manifest.json'), field: z.string().default('digest') }),
    z.strictObject({ registry: z.literal(true) }),
  ]),
  pollInterval: durationSchema.default('15s'),
});

export const buildSchema = z.discriminatedUnion('kind', [dockerBuildSchema, githubActionsBuildSchema]);

export const githubSchema = z.strictObject({
  owner: z.string().min(1),
  repo: z.string().min(1),
  token: secretRefSchema,
  /** GitHub Enterprise: https://ghe.example.com/api/v3 */
  baseUrl: z.url().default('https://api.github.com'),
  blockerLabel: z.string().default('release-blocker'),
  requireGreenChecks: z.boolean().default(true),
  release: z.boolean().default(true),
  closeMilestone: z.boolean().default(true),
  deploymentEnvironment: z.string().optional(),
});

export const announceSchema = z.strictObject({
  webhook: secretRefSchema.optional(),
  auditLog: z.string().optional(),
  artifactsDir: z.string().optional(),
});

export const approvalsSchema = z.strictObject({
  approvers: z.array(z.string().min(1)).min(1, 'list at least one approver'),
  required: z.number().int().min(1).default(1),
});

export const timeoutsSchema = z.strictObject({
  approval: durationSchema.default('72h'),
  decision: durationSchema.default('24h'),
});

export const serviceSchema = z
  .strictObject({
    repo: repoSchema,
    image: imageSchema,
    build: buildSchema.default({ kind: 'docker', dockerfile: 'Dockerfile', context: '.', args: {} }),
    environments: z.strictObject({ staging: environmentSchema, production: environmentSchema }),
    approvals: approvalsSchema,
    timeouts: timeoutsSchema.default({ approval: '72h', decision: '24h' }),
    steps: stepsSchema.default({}),
    announce: announceSchema.default({}),
    github: githubSchema.optional(),
  })
  .superRefine((svc, ctx) => {
    if (svc.approvals.required > svc.approvals.approvers.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['approvals', 'required'],
        message: `requires ${svc.approvals.required} approvals but only ${svc.approvals.approvers.length} approvers are listed; lower required or add approvers`,
      });
    }
    if (new Set(svc.approvals.approvers).size !== svc.approvals.approvers.length) {
      ctx.addIssue({ code: 'custom', path: ['approvals', 'approvers'], message: 'lists an approver twice; list each once' });
    }
    if (svc.build.kind === 'github-actions' && !svc.github) {
      ctx.addIssue({ code: 'custom', path: ['build', 'kind'], message: 'github-actions builds need a github: section (owner, repo, token)' });
    }
  });

export const configSchema = z.strictObject({
  services: z
    .record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'service names are lowercase letters, digits and dashes'), serviceSchema)
    .refine((s) => Object.keys(s).length > 0, 'define at least one service'),
});

export type SecretRef = z.infer<typeof secretRefSchema>;
export type HttpCheck = z.infer<typeof httpCheckSchema>;
export type DockerDeploy = z.infer<typeof dockerDeploySchema>;
export type SshDeploy = z.infer<typeof sshDeploySchema>;
export type DeployTarget = z.infer<typeof deploySchema>;
export type EnvironmentConfig = z.infer<typeof environmentSchema>;
export type RepoConfig = z.infer<typeof repoSchema>;
export type ImageConfig = z.infer<typeof imageSchema>;
export type BuildConfig = z.infer<typeof buildSchema>;
export type GithubConfig = z.infer<typeof githubSchema>;
export type AnnounceConfig = z.infer<typeof announceSchema>;
export type StepOverride = z.infer<typeof stepOverrideSchema>;
export type ServiceConfig = z.infer<typeof serviceSchema>;
export type GantryConfig = z.infer<typeof configSchema>;

/** True for a version gantry can release. */
export function isReleasableVersion(v: string): boolean {
  return semver.valid(v) === v;
}
