/**
 * The release config schema (YAML on disk, validated with zod).
 *
 * Every object is strict: an unknown key is an error that names the key, so a typo such as `aprovers` never
 * silently drops a setting. The inferred types are the shapes the workflow receives as its immutable input
 * snapshot, so they must stay free of secrets: a secret is always a {@link secretRefSchema reference}.
 */
import { z } from 'zod';
import { expandRefs, ruleApprovers } from '../shared/principals';
import { denyWindowProblem } from '../shared/windows';
import { gatedEnvironments } from '../shared/environments';
import { durationProblem } from '../shared/duration';

export { expandRefs, ruleApprovers };

/**
 * A duration as written in config: a number with its unit (`500ms`, `30s`, `5m`, `72h`, `3d`). A bare number
 * (`window: 30`, or `"30"`) is refused: Temporal would read it as milliseconds, which is never what was meant
 * for a window or a timeout, so the message says to write the unit.
 */
export const durationSchema = z
  .union([z.string(), z.number()])
  .superRefine((value, ctx) => {
    const problem = durationProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/**
 * URLs may not carry credentials (`https://user:token@host/…`): config is not secret, and it is recorded in every
 * release's history. A user name alone is fine for ssh (`ssh://git@host/…`, `git@host:repo.git`).
 */
export function credentialsInUrl(value: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)@/i.exec(value);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const userinfo = m[2]!;
  if ((scheme === 'ssh' || scheme === 'git+ssh') && !userinfo.includes(':')) return undefined;
  return `the URL carries credentials (${scheme}://…@); remove them and give the secret as a reference instead, e.g. repo.token: { env: GIT_TOKEN } or github.token: { file: /etc/gantry/github-token }`;
}

const noCredentials = (value: string, ctx: z.RefinementCtx) => {
  const problem = credentialsInUrl(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
};

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
  /** `decide skip` may pass this step when it failed (smoke and announce only: they guard nothing irreversible). */
  skippable: z.boolean().optional(),
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
  url: z.url({ message: 'an absolute http(s) URL such as http://127.0.0.1:8080/health' }).superRefine(noCredentials),
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

/** Why a port mapping cannot be published, or null when it can (`8080:80`, `127.0.0.1:8080:80`, `[::1]:8080:80`, `…/udp`). */
export function portMappingProblem(spec: string): string | null {
  const m = /^(?:(\[[^\]]*\]|[^:[\]/]+):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(spec);
  if (!m) {
    return `"${spec}" is not a port mapping; write HOST_PORT:CONTAINER_PORT such as "8080:80", optionally with a host address ` +
      '("127.0.0.1:8080:80", or an IPv6 address in brackets: "[::1]:8080:80") and a protocol ("8080:80/udp")';
  }
  const [, address, hostPort, containerPort] = m as unknown as [string, string | undefined, string, string];
  if (address !== undefined) {
    if (address.startsWith('[')) {
      if (!z.ipv6().safeParse(address.slice(1, -1)).success) return `"${spec}": ${address} is not an IPv6 address; write it like [::1]:8080:80`;
    } else if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address) || address.split('.').some((octet) => Number(octet) > 255)) {
      return `"${spec}": ${address} is not an IP address; give the host address as IPv4 with four numbers from 0 to 255 ("127.0.0.1:8080:80") ` +
        'or as IPv6 in brackets ("[::1]:8080:80"), or leave it out to publish on all addresses';
    }
  }
  for (const [what, port] of [['host', hostPort], ['container', containerPort]] as const) {
    const n = Number(port);
    if (!(n >= 1 && n <= 65535)) return `"${spec}": the ${what} port ${port} is out of range; use a port from 1 to 65535`;
  }
  return null;
}

const portSchema = z.string().superRefine((spec, ctx) => {
  const problem = portMappingProblem(spec);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

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

/** SSH host key types gantry can pin and verify (what ssh2 negotiates). */
export const SSH_HOST_KEY_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'] as const;

/** A host key pin as written in `hostKey:`: the whole public key, or only its SHA256 fingerprint. */
export type HostKeyPin = { kind: 'key'; type: string; blob: Buffer } | { kind: 'fingerprint'; fingerprint: string };

/** The length-prefixed fields of an SSH public key blob (RFC 4253 §6.6), or undefined when they do not fill it exactly. */
function sshBlobFields(blob: Uint8Array): Uint8Array[] | undefined {
  const fields: Uint8Array[] = [];
  for (let at = 0; at < blob.length;) {
    if (at + 4 > blob.length) return undefined;
    const len = ((blob[at]! << 24) | (blob[at + 1]! << 16) | (blob[at + 2]! << 8) | blob[at + 3]!) >>> 0;
    if (at + 4 + len > blob.length) return undefined;
    fields.push(blob.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return fields;
}

/**
 * The key type of a well-formed SSH public key blob (its first field), or undefined when the blob is not one:
 * fields that do not fill it, or the wrong fields for the type (an ed25519 key is 32 bytes, an ECDSA key names its curve).
 */
export function sshKeyBlobType(blob: Uint8Array): string | undefined {
  const fields = sshBlobFields(blob);
  if (!fields?.length || fields[0]!.length > 64) return undefined;
  const text = (b: Uint8Array) => Array.from(b, (c) => String.fromCharCode(c)).join('');
  const type = text(fields[0]!);
  if (type === 'ssh-ed25519') return fields.length === 2 && fields[1]!.length === 32 ? type : undefined;
  if (type.startsWith('ecdsa-sha2-')) return fields.length === 3 && text(fields[1]!) === type.slice('ecdsa-sha2-'.length) && fields[2]!.length > 0 ? type : undefined;
  if (type === 'ssh-rsa') return fields.length === 3 && fields[2]!.length >= 128 ? type : undefined;
  return fields.length >= 2 ? type : undefined;
}

/**
 * Read `hostKey:`: a public key line as in the host's /etc/ssh/ssh_host_ed25519_key.pub (`ssh-ed25519 AAAA… comment`),
 * a line of `ssh-keyscan` output (`host ssh-ed25519 AAAA…`), or a fingerprint `SHA256:…` as `ssh-keygen -l` prints it.
 */
export function parseHostKey(text: string): HostKeyPin | { problem: string } {
  const value = text.trim();
  if (/^SHA256:/i.test(value)) {
    const b64 = value.slice('SHA256:'.length).replace(/=+$/, '');
    if (!value.startsWith('SHA256:') || !/^[A-Za-z0-9+/]{43}$/.test(b64)) {
      return { problem: `"${value}" is not a SHA256 host key fingerprint (SHA256: and 43 base64 characters, as \`ssh-keygen -lf\` prints it)` };
    }
    return { kind: 'fingerprint', fingerprint: `SHA256:${b64}` };
  }
  if (/^MD5:|^([0-9a-f]{2}:){15}[0-9a-f]{2}$/i.test(value)) {
    return { problem: `"${value}" is an MD5 fingerprint, which cannot pin a key safely; pin the SHA256 fingerprint or the public key instead` };
  }
  if (/[\r\n]/.test(value)) {
    return { problem: 'holds more than one line; pin one key per host: pick the ssh-ed25519 line (ssh-keyscan prints one line per key type)' };
  }
  const words = value.split(/\s+/);
  if (words[0]?.startsWith('@')) return { problem: `starts with the known_hosts marker ${words[0]}; an inline hostKey is a plain key (use knownHosts: for a known_hosts file)` };
  // A public key file line starts with the type; an ssh-keyscan / known_hosts line has the host names first.
  const at = words.findIndex((w, i) => i <= 1 && /^(ssh-|ecdsa-|sk-|rsa-)/.test(w));
  if (at < 0 || words.length < at + 2) {
    return { problem: `"${value.slice(0, 60)}" is neither a public key line ("ssh-ed25519 AAAA…") nor a fingerprint ("SHA256:…")` };
  }
  const type = words[at]!;
  if (!(SSH_HOST_KEY_TYPES as readonly string[]).includes(type)) {
    return { problem: `a ${type} host key cannot be pinned; pin the host's key of one of the types ${SSH_HOST_KEY_TYPES.join(', ')}` };
  }
  const b64 = words[at + 1]!;
  const blob = Buffer.from(b64, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0 || sshKeyBlobType(blob) !== type) {
    return { problem: `the ${type} key "${b64.slice(0, 24)}…" is damaged (it is not the base64 of a ${type} key); copy the whole line again` };
  }
  return { kind: 'key', type, blob };
}

/** How an operator gets a host's key, for config errors. */
function hostKeyHint(host: string, port: number): string {
  return `get the key with \`ssh-keyscan -p ${port} ${host}\` from a trusted network and check its fingerprint against ` +
    '`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the host itself (e.g. on its console)';
}

/**
 * One production host. Its SSH host key is always pinned, exactly one way: `hostKey` inline (a public key line or
 * its SHA256 fingerprint) or `knownHosts`, a known_hosts file on the worker holding the host (`host`, or
 * `[host]:port` when the port is not 22; hashed entries as `ssh-keyscan -H` writes them work). A host presenting
 * any other key is refused before the deploy key is offered; nothing is trusted on first use.
 */
export const sshHostSchema = z
  .strictObject({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1),
    /** `ssh-ed25519 AAAA…` (the host's /etc/ssh/ssh_host_ed25519_key.pub or ssh-keyscan output) or `SHA256:…`. */
    hostKey: z.string().optional(),
    /** Absolute path of a known_hosts file on the worker, read at each connection. */
    knownHosts: z.string().optional(),
  })
  .superRefine((h, ctx) => {
    if (h.hostKey !== undefined && h.knownHosts !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['knownHosts'], message: `pins ${h.host}'s key twice; keep either hostKey or knownHosts, not both` });
    } else if (h.hostKey === undefined && h.knownHosts === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['hostKey'],
        message: `${h.host} has no pinned SSH host key, and gantry does not trust a production host on first use; add hostKey: ` +
          `with its public key line ("ssh-ed25519 AAAA…") or fingerprint ("SHA256:…"), or knownHosts: a known_hosts file on the worker; ` +
          hostKeyHint(h.host, h.port),
      });
    } else if (h.hostKey !== undefined) {
      const pin = parseHostKey(h.hostKey);
      if ('problem' in pin) ctx.addIssue({ code: 'custom', path: ['hostKey'], message: `${pin.problem}; ${hostKeyHint(h.host, h.port)}` });
    } else if (!h.knownHosts!.startsWith('/')) {
      ctx.addIssue({ code: 'custom', path: ['knownHosts'], message: `"${h.knownHosts}" is not an absolute path; give the known_hosts file's full path on the worker, e.g. /etc/gantry/known_hosts` });
    }
  });

export const sshDeploySchema = z.strictObject({
  kind: z.literal('ssh'),
  ...containerSpecSchema,
  hosts: z.array(sshHostSchema).min(1, 'list at least one host'),
  privateKey: secretRefSchema,
  /** The container CLI on the hosts. */
  containerCli: z.string().default('docker'),
  /** Extra environment for the CLI on the hosts, e.g. DOCKER_HOST. Not secret. Keys are shell variable names. */
  cliEnv: z
    .record(z.string(), z.string())
    .default({})
    .superRefine((env, ctx) => {
      for (const key of Object.keys(env)) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
          ctx.addIssue({ code: 'custom', path: [key], message: `"${key}" is not an environment variable name; use letters, digits and _ and do not start with a digit, e.g. DOCKER_HOST` });
        }
      }
    }),
  /** Replaced by a pin on each host (`hostKey: "SHA256:…"`); refused so that an old config does not deploy unpinned. */
  hostKeyFingerprint: z
    .custom<never>(() => false, {
      error: (iss) => `target-level hostKeyFingerprint is no longer read; move it to each host as hostKey: "${typeof iss.input === 'string' ? iss.input : 'SHA256:…'}" ` +
        '(every host pins its own key), then remove it here',
    })
    .optional(),
});

export const deploySchema = z.discriminatedUnion('kind', [dockerDeploySchema, sshDeploySchema]);

/** A principal's name as it appears in allowed_signers, approvers and operators. */
export const principalNameSchema = z
  .string()
  .min(1)
  .max(64, 'names are at most 64 characters')
  .regex(/^[\p{L}\p{N}][\p{L}\p{N}._@+-]*$/u, 'a name of letters, digits and . _ @ + - (as in allowed_signers), e.g. alice or alice@acme.dev');

/** A group's name (`groups:`); lists refer to a group as `@name`. */
export const groupNameSchema = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a group name of lowercase letters, digits, _ and -, e.g. sre');

/** A person or, written `@sre`, every member of a group. */
export const principalRefSchema = z.union([
  z.string().regex(/^@[a-z][a-z0-9_-]{0,31}$/, 'a group as @name, e.g. @sre'),
  principalNameSchema,
]);

/**
 * What a gate needs before the environment behind it changes: `required` distinct approvals in all, at least
 * `from[group]` of them from each named group, and no rejection (a single reject vetoes).
 */
export const gateRuleSchema = z.strictObject({
  /** Who may vote (names or @groups); the members of the groups in `from` may always vote. */
  approvers: z.array(principalRefSchema).default([]),
  /** Distinct approvals in all. */
  required: z.number().int().min(1).default(1),
  /** Minimum approvals per group, e.g. { sre: 1, product: 1 }. */
  from: z.record(groupNameSchema, z.number().int().min(1)).default({}),
  /** A vote without a reason is refused. */
  reasonRequired: z.boolean().default(false),
});

/** An environment's name, as written under `environments:` (in the order releases go through them). */
export const environmentNameSchema = z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'an environment name of lowercase letters, digits and dashes, e.g. staging, qa or production');

export const environmentSchema = z.strictObject({
  deploy: deploySchema,
  checks: z.array(httpCheckSchema).min(1, 'list at least one check (e.g. /health)'),
  /** How long checks may keep failing before the environment is declared unhealthy. */
  window: durationSchema.default('5m'),
  /**
   * Wrong answers in a row from one check (status, body or JSON; not a refused connection while starting) that
   * end smoke or health at once, without waiting out the window; 0 waits out the whole window.
   */
  failureLimit: z.number().int().min(0).max(100).default(3),
  /**
   * A gate before this environment changes, with its rule. The last environment (production) is always gated:
   * by this rule, or else by the service's `approvals`.
   */
  gate: gateRuleSchema.optional(),
});

/**
 * A deny window: deploys to the environments it covers wait at their gate while it lasts. It starts at every
 * occurrence of `cron` (5 fields) or `rrule` (RFC 5545 DTSTART and RRULE lines) and lasts `duration`.
 */
export const denyWindowSchema = z
  .strictObject({
    name: z.string().min(1).max(64),
    cron: z.string().min(1).optional(),
    rrule: z.string().min(1).optional(),
    duration: durationSchema,
    /** IANA time zone the cron or rule is read in; default UTC. */
    timezone: z.string().min(1).optional(),
    /** Which environments it covers; default every environment (its gate, or production's, holds the release). */
    environments: z.array(environmentNameSchema).optional(),
    reason: z.string().max(1000).optional(),
  })
  .superRefine((w, ctx) => {
    if ((w.cron === undefined) === (w.rrule === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['cron'], message: `deny window "${w.name}" needs exactly one of cron: ("0 18 * * 5") or rrule: ("DTSTART:20261224T000000Z\nRRULE:FREQ=YEARLY")` });
      return;
    }
    const problem = denyWindowProblem(w);
    if (problem) ctx.addIssue({ code: 'custom', path: [w.cron !== undefined ? 'cron' : 'rrule'], message: problem });
  });

/**
 * Where repo.testCommand runs. Repository code must not run as the worker: the worker can read its secret files
 * and its own environment, and the command's output ends up in release history.
 */
const testRunnerSchema = z.discriminatedUnion('kind', [
  /** A throwaway container on the engine: only the checkout is mounted (at /workspace), no secrets, no engine socket. */
  z.strictObject({
    kind: z.literal('container'),
    /** The image the tests run in; it needs /bin/sh. */
    image: z.string().regex(/^[^\s]+$/, 'an image reference such as node:20 or registry.example.com/ci/node:20'),
    /** `none` (the default): no network at all; `default`: the engine's default network. */
    network: z.enum(['none', 'default']).default('none'),
    /** Docker/Podman API socket on the worker; default DOCKER_HOST or /var/run/docker.sock. */
    socketPath: z.string().optional(),
    /** Run as this uid (or uid:gid) inside the container instead of the image's user. */
    user: z.string().regex(/^\d+(:\d+)?$/, 'a numeric uid or uid:gid such as 1000 or 1000:1000').optional(),
  }),
  /** A separate OS user on the worker (the worker must run as root to switch to it). */
  z.strictObject({
    kind: z.literal('user'),
    user: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/, 'a user name on the worker such as nobody'),
  }),
]);

export const repoSchema = z
  .strictObject({
    /** A git URL or path the worker can clone and push to. */
    url: z.string().min(1).superRefine(noCredentials),
    branch: z.string().default('main'),
    changelog: z.string().default('CHANGELOG.md'),
    /** Run in a checkout of the release commit during preflight; must exit 0. Needs testRunner. */
    testCommand: z.string().optional(),
    /** Where testCommand runs: `{ kind: container, image }` or `{ kind: user, user: nobody }`. */
    testRunner: testRunnerSchema.optional(),
    /** Credentials for pushing over HTTPS, by reference. */
    token: secretRefSchema.optional(),
  })
  .superRefine((repo, ctx) => {
    if (repo.testCommand !== undefined && !repo.testRunner) {
      ctx.addIssue({
        code: 'custom',
        path: ['testRunner'],
        message:
          'is required with testCommand: the test command is repository code, and run as the worker it could read the worker\'s ' +
          'secret files and environment (and print them into the release history). Say where it runs instead, either ' +
          '`testRunner: { kind: container, image: node:20 }` (a throwaway container with only the checkout mounted, no network unless ' +
          '`network: default`) or `testRunner: { kind: user, user: nobody }` (a separate OS user; the worker must run as root)',
      });
    }
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
  baseUrl: z.url().superRefine(noCredentials).default('https://api.github.com'),
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
  signingKey: secretRefSchema.optional(),
});

export const approvalsSchema = z.strictObject({
  /** Names or @groups. */
  approvers: z.array(principalRefSchema).min(1, 'list at least one approver'),
  required: z.number().int().min(1).default(1),
  /**
   * `signed` (default): every vote and decision is a statement signed with the person's SSH key listed in
   * allowedSigners. `declared`: names are taken as typed (README: Trust model says what that does not protect).
   */
  identity: z.enum(['signed', 'declared']).default('signed'),
  /** Let the person who started the release approve it too (four-eyes is the default). */
  allowSelfApproval: z.boolean().default(false),
});

export const timeoutsSchema = z.strictObject({
  approval: durationSchema.default('72h'),
  decision: durationSchema.default('24h'),
});

/** Where approvers hear about gates: a Slack-compatible webhook, reminders and how long a lane may be waited on. */
export const noticesSchema = z.strictObject({
  /** The approvers' channel: a Slack (or compatible) incoming-webhook URL, by reference. */
  webhook: secretRefSchema,
  /** Remind the channel this long before the approval times out. */
  reminderBefore: durationSchema.default('1h'),
  /** Tell the channel when a release has waited this long for its lane. */
  laneWaitLongerThan: durationSchema.default('30m'),
  /** The Temporal Web UI's address, for links in notices (e.g. http://127.0.0.1:8233). */
  webUi: z.url().superRefine(noCredentials).optional(),
});

/** The path that skips the environments before the last (production), with its own gate rule. */
export const hotfixSchema = z.strictObject({
  allowed: z.boolean().default(false),
  /** The gate a hotfix must pass instead of the last environment's usual rule. */
  gate: gateRuleSchema,
});

/** Who may let a release through a freeze, with an extra approval and a reason. */
export const breakGlassSchema = z.strictObject({
  group: groupNameSchema,
  required: z.number().int().min(1).default(1),
});

export const serviceSchema = z
  .strictObject({
    repo: repoSchema,
    image: imageSchema,
    build: buildSchema.default({ kind: 'docker', dockerfile: 'Dockerfile', context: '.', args: {} }),
    /**
     * In the order releases go through them, e.g. staging, qa, production. The last is production: gated, and
     * rolled back when its health fails; the ones before deploy and smoke-check.
     */
    environments: z
      .record(environmentNameSchema, environmentSchema)
      .refine((e) => Object.keys(e).length > 0, 'list at least one environment (e.g. staging and production)'),
    /** The identity mode and the default rule of the last environment's gate (when it has no gate: of its own). */
    approvals: approvalsSchema,
    /** Who may start, decide and cancel releases of this service; empty: anyone listed in allowedSigners. */
    operators: z.array(principalNameSchema).default([]),
    /** Who may freeze this service (names or @groups); default: its operators, or anyone in allowedSigners when it names none. */
    freezers: z.array(principalRefSchema).optional(),
    denyWindows: z.array(denyWindowSchema).default([]),
    breakGlass: breakGlassSchema.optional(),
    hotfix: hotfixSchema.optional(),
    notices: noticesSchema.optional(),
    timeouts: timeoutsSchema.default({ approval: '72h', decision: '24h' }),
    steps: stepsSchema.default({}),
    announce: announceSchema.default({}),
    github: githubSchema.optional(),
  })
  .superRefine((svc, ctx) => {
    if (new Set(svc.approvals.approvers).size !== svc.approvals.approvers.length) {
      ctx.addIssue({ code: 'custom', path: ['approvals', 'approvers'], message: 'lists an approver twice; list each once' });
    }
    if (svc.build.kind === 'github-actions' && !svc.github) {
      ctx.addIssue({ code: 'custom', path: ['build', 'kind'], message: 'github-actions builds need a github: section (owner, repo, token)' });
    }
    for (const [step, o] of Object.entries(svc.steps)) {
      if (o?.skippable && step !== 'smoke' && step !== 'announce') {
        ctx.addIssue({
          code: 'custom', path: ['steps', step, 'skippable'],
          message: `${step} cannot be skippable: only smoke and announce may be passed by \`decide skip\` (the others guard the release or production)`,
        });
      }
    }
    const names = Object.keys(svc.environments);
    const gated = gatedEnvironments(svc);
    svc.denyWindows.forEach((w, i) => {
      (w.environments ?? []).forEach((e, j) => {
        if (!names.includes(e)) ctx.addIssue({ code: 'custom', path: ['denyWindows'], message: `deny window "${w.name}" names environment ${e}, which ${names.join(', ')} does not include` });
        else if (!gated.includes(e)) ctx.addIssue({ code: 'custom', path: ['denyWindows', i, 'environments', j], message: ungatedWindowProblem(w.name, e, gated) });
      });
    });
    if (svc.breakGlass && !svc.notices) {
      ctx.addIssue({
        code: 'custom', path: ['breakGlass'],
        message: 'needs a notices: channel: a break-glass is always announced, and without one the only announcement is the release\'s, ' +
          'which `decide skip` may skip; add notices: { webhook: { env: APPROVERS_WEBHOOK } } (the approvers\' channel), or remove breakGlass',
      });
    }
  });

/** Deny windows are checked at gates only: one covering an ungated environment would hold nothing. */
function ungatedWindowProblem(window: string, environment: string, gated: string[]): string {
  return `deny window "${window}" covers ${environment}, which has no approval gate, so it would hold nothing (releases check deny windows ` +
    `and freezes at their gates); cover ${gated.join(' or ')} instead, or give ${environment} a gate (environments.${environment}.gate)`;
}

/**
 * The people who may sign decisions and their SSH public keys, in git's allowed_signers form
 * (`alice ssh-ed25519 AAAA… [comment]`, see ssh-keygen(1) ALLOWED SIGNERS): inline text, or a file on the worker.
 */
export const allowedSignersSchema = z.union([
  z.string().min(1),
  z.strictObject({ file: z.string().min(1, 'a path to an allowed_signers file readable by the worker') }),
]);

export const configSchema = z
  .strictObject({
    allowedSigners: allowedSignersSchema.optional(),
    /** Named groups of principals, used in gate rules (`from: { sre: 1 }`) and lists (`@sre`). */
    groups: z.record(groupNameSchema, z.array(principalNameSchema).min(1, 'a group lists at least one person')).default({}),
    /** Who may freeze every service at once (`gantry freeze --all`); names or @groups. */
    freezers: z.array(principalRefSchema).default([]),
    /** Deny windows for every service. */
    denyWindows: z.array(denyWindowSchema).default([]),
    services: z
      .record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'service names are lowercase letters, digits and dashes'), serviceSchema)
      .refine((s) => Object.keys(s).length > 0, 'define at least one service'),
  })
  .superRefine((cfg, ctx) => {
    const groups = cfg.groups;
    const unknownGroup = (g: string) => !(g in groups);
    const known = Object.keys(groups).join(', ') || 'none';
    const checkRefs = (refs: string[], path: (string | number)[]) => {
      refs.forEach((r, i) => {
        if (r.startsWith('@') && unknownGroup(r.slice(1))) {
          ctx.addIssue({ code: 'custom', path: [...path, i], message: `names group ${r}, which groups: does not define (groups: ${known}); add it under groups: or fix the name` });
        }
      });
    };
    checkRefs(cfg.freezers, ['freezers']);
    for (const [name, svc] of Object.entries(cfg.services)) {
      const base = ['services', name];
      checkRefs(svc.approvals.approvers, [...base, 'approvals', 'approvers']);
      checkRefs(svc.freezers ?? [], [...base, 'freezers']);
      const approvers = expandRefs(svc.approvals.approvers, groups);
      if (svc.approvals.required > approvers.length) {
        ctx.addIssue({
          code: 'custom', path: [...base, 'approvals', 'required'],
          message: `requires ${svc.approvals.required} approvals but only ${approvers.length} approvers are listed; lower required or add approvers`,
        });
      }
      const checkRule = (rule: GateRuleConfig, path: (string | number)[]) => {
        checkRefs(rule.approvers, [...path, 'approvers']);
        for (const [g, n] of Object.entries(rule.from)) {
          if (unknownGroup(g)) {
            ctx.addIssue({ code: 'custom', path: [...path, 'from', g], message: `group ${g} is not defined under groups: (groups: ${known}); add it or fix the name` });
          } else if (n > groups[g]!.length) {
            ctx.addIssue({ code: 'custom', path: [...path, 'from', g], message: `needs ${n} approvals from ${g}, which has only ${groups[g]!.length} member(s); lower it or add members` });
          }
        }
        const voters = ruleApprovers(rule, groups, svc.approvals.approvers);
        const fromSum = Object.values(rule.from).reduce((a, b) => a + b, 0);
        if (rule.required > voters.length) {
          ctx.addIssue({ code: 'custom', path: [...path, 'required'], message: `requires ${rule.required} approvals but only ${voters.length} people may vote (${voters.join(', ')}); lower required or add approvers` });
        } else if (fromSum > voters.length) {
          ctx.addIssue({ code: 'custom', path: [...path, 'from'], message: `asks for ${fromSum} approvals from its groups, more than the ${voters.length} people who may vote` });
        }
      };
      for (const [env, e] of Object.entries(svc.environments)) if (e.gate) checkRule(e.gate, [...base, 'environments', env, 'gate']);
      if (svc.hotfix) checkRule(svc.hotfix.gate, [...base, 'hotfix', 'gate']);
      if (svc.breakGlass && unknownGroup(svc.breakGlass.group)) {
        ctx.addIssue({ code: 'custom', path: [...base, 'breakGlass', 'group'], message: `group ${svc.breakGlass.group} is not defined under groups: (groups: ${known})` });
      }
    }
    // A top-level window names environments of the services; it holds those that gate it, and when none does, nothing.
    const services = Object.values(cfg.services);
    const environmentNames = [...new Set(services.flatMap((s) => Object.keys(s.environments)))];
    const gatedAnywhere = new Set(services.flatMap((s) => gatedEnvironments(s)));
    cfg.denyWindows.forEach((w, i) => {
      (w.environments ?? []).forEach((e, j) => {
        if (!environmentNames.includes(e)) {
          ctx.addIssue({ code: 'custom', path: ['denyWindows', i, 'environments', j], message: `deny window "${w.name}" names environment ${e}, which no service has (they have ${environmentNames.join(', ')})` });
        } else if (!gatedAnywhere.has(e)) {
          ctx.addIssue({ code: 'custom', path: ['denyWindows', i, 'environments', j], message: ungatedWindowProblem(w.name, e, [...gatedAnywhere].sort()) });
        }
      });
    });
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
export type ApprovalsConfig = z.infer<typeof approvalsSchema>;
export type GateRuleConfig = z.infer<typeof gateRuleSchema>;
export type DenyWindow = z.infer<typeof denyWindowSchema>;
export type NoticesConfig = z.infer<typeof noticesSchema>;

