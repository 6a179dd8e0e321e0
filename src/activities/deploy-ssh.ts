/**
 * Deploy target `kind: ssh`, the production path: node-ssh to each host in turn, then the container CLI there
 * (`docker` by default; `containerCli` and `cliEnv` from config): pull by digest, note the previous image, stop,
 * rm, run with the restart policy, wait until it runs. Hosts go one after another; the first failure stops the
 * deploy and its error lists the hosts already changed. See deploy.ts for the labels that make retries and
 * rollbacks safe.
 *
 * The private key is a reference resolved here, on the worker; it never leaves this process. Every host's key is
 * pinned (`hostKey`: a public key or its SHA256 fingerprint, or `knownHosts`: a known_hosts file on the worker,
 * read at each connection) and checked during the key exchange, before the deploy key is offered: a host
 * presenting another key is refused and nothing runs there.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { NodeSSH } from 'node-ssh';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import { parseHostKey, SSH_HOST_KEY_TYPES, sshKeyBlobType, type SshDeploy } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { classifyEngineText, containerLabels, type Deployer, formatPublish, LABELS, parsePort, previousImageOf, type Restored, type RestoreRequest, rollbackLabels } from './docker';
import { beat, cancellation, pause } from './heartbeat';
import { describeSecretRef, redact, resolveSecret } from './secrets';
import type { DeployedTarget, DeployRequest } from './types';

export interface SshDeployDeps {
  /** Resolves `privateKey` references. */
  env: NodeJS.ProcessEnv;
  /** @default 20000 */
  connectTimeoutMs?: number;
  /** Per remote command. @default 600000 (a pull can be slow) */
  commandTimeoutMs?: number;
  /** How long a new container may take to be running. @default 60000 */
  startTimeoutMs?: number;
}

type Host = SshDeploy['hosts'][number];

/** POSIX shell quoting for one argument. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_/.:@%+=,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function sshTargetName(host: Host, container: string): string {
  return `ssh:${host.user}@${host.host}:${host.port}/${container}`;
}

/** A host key's fingerprint as `ssh-keygen -l` prints it: `SHA256:` and the unpadded base64 of the key blob's SHA-256. */
export function hostKeyFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The name OpenSSH gives a host in known_hosts: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** One key a known_hosts file or a hostKey pins; a fingerprint-only pin has no blob. */
interface PinnedKey {
  type?: string;
  blob?: Buffer;
  fingerprint: string;
}

function pinnedKey(blob: Buffer): PinnedKey {
  return { type: sshKeyBlobType(blob), blob, fingerprint: hostKeyFingerprint(blob) };
}

/** One known_hosts host pattern (`*` and `?` wildcards), as OpenSSH matches it: case-insensitive, whole name. */
function patternMatches(pattern: string, name: string): boolean {
  const re = pattern.toLowerCase().replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(name);
}

/** Whether a known_hosts line's host field names `name`: a hashed `|1|salt|hmac` entry, or a comma list with `!` negations. */
function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const expected = Buffer.from(hash, 'base64');
    const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
  let matched = false;
  for (const pattern of field.split(',')) {
    if (pattern.startsWith('!')) {
      if (patternMatches(pattern.slice(1), name)) return false;
    } else if (patternMatches(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

/**
 * The keys a known_hosts file holds for `name` (see {@link knownHostsName}), and those it marks `@revoked`.
 * `@cert-authority` lines are skipped: gantry pins host keys, not certificates.
 */
export function knownHostsKeys(text: string, name: string): { keys: PinnedKey[]; revoked: PinnedKey[] } {
  const keys: PinnedKey[] = [];
  const revoked: PinnedKey[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const words = line.split(/\s+/);
    const marker = words[0]!.startsWith('@') ? words.shift() : undefined;
    const [field, type, b64] = words;
    if (!field || !type || !b64 || marker === '@cert-authority' || (marker && marker !== '@revoked')) continue;
    if (!hostFieldMatches(field, name)) continue;
    const blob = Buffer.from(b64, 'base64');
    if (sshKeyBlobType(blob) !== type) continue; // a damaged line pins nothing
    (marker === '@revoked' ? revoked : keys).push(pinnedKey(blob));
  }
  return { keys, revoked };
}

/** What a host's key must be, where that pin comes from and how to change it. */
interface HostKeyPolicy {
  keys: PinnedKey[];
  revoked: PinnedKey[];
  source: string;
  update: string;
}

function keyscanHint(host: Host): string {
  return `\`ssh-keyscan -p ${host.port} ${host.host}\` from a trusted network, checked against \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` run on the host itself`;
}

/** The host's pin, from config; a known_hosts file is read now (workers keep no state between activities). */
function hostKeyPolicy(host: Host, target: SshDeploy, name: string): HostKeyPolicy {
  // A release started before pins moved onto the hosts carries the target-level fingerprint in its input: still a pin.
  const legacy = (target as { hostKeyFingerprint?: unknown }).hostKeyFingerprint;
  const hostKey = host.hostKey ?? (host.knownHosts === undefined && typeof legacy === 'string' ? legacy : undefined);
  if (hostKey !== undefined) {
    const pin = parseHostKey(hostKey);
    if ('problem' in pin) {
      throw new HostError(`${name}: its hostKey ${pin.problem}. Fix hostKey for this host in the release config (get the key with ${keyscanHint(host)}).`,
        false, GantryErrorType.ConfigInvalid);
    }
    return {
      keys: [pin.kind === 'key' ? pinnedKey(pin.blob) : { fingerprint: pin.fingerprint }],
      revoked: [],
      source: 'hostKey in the release config',
      update: 'update hostKey for this host in the release config',
    };
  }
  if (host.knownHosts !== undefined) {
    const file = host.knownHosts;
    const entryName = knownHostsName(host.host, host.port);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new HostError(`${name}: cannot read the known_hosts file ${file} (${code === 'ENOENT' ? 'it does not exist' : code}) that pins this host's key. ` +
        `Put it on every worker, readable by the worker's user (e.g. \`ssh-keyscan -H -p ${host.port} ${host.host} >> ${file}\` from a trusted network, ` +
        'then check the fingerprints), or fix knownHosts for this host in the release config.', false, GantryErrorType.ConfigInvalid);
    }
    const { keys, revoked } = knownHostsKeys(text, entryName);
    if (keys.length === 0) {
      throw new HostError(`${name}: the known_hosts file ${file} has no key for ${entryName}${revoked.length ? ' that is not @revoked' : ''}, so the host cannot be ` +
        `checked and gantry does not connect. Add it: run \`ssh-keyscan -H -p ${host.port} ${host.host} >> ${file}\` from a trusted network, compare ` +
        `\`ssh-keygen -lF '${entryName}' -f ${file}\` with \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` run on the host, then retry.`,
        false, GantryErrorType.ConfigInvalid);
    }
    return { keys, revoked, source: `the known_hosts file ${file}`, update: `replace its entry for ${entryName} in ${file}` };
  }
  throw new HostError(`${name}: no host key is pinned for this host, and gantry does not trust a host on first use. Add hostKey (or knownHosts) to it ` +
    `in the release config; get the key with ${keyscanHint(host)}.`, false, GantryErrorType.ConfigInvalid);
}

/** The host key algorithms to offer when every pinned key's type is known, so the host presents a pinned one. */
function hostKeyAlgorithms(policy: HostKeyPolicy): ServerHostKeyAlgorithm[] | undefined {
  if (policy.keys.some((k) => !k.type)) return undefined;
  const types = new Set(policy.keys.map((k) => k.type!));
  const ordered = SSH_HOST_KEY_TYPES.filter((t) => types.has(t));
  return ordered.flatMap((t): ServerHostKeyAlgorithm[] => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));
}

/** A failure on one host, before it is reported with what the other hosts did. */
class HostError extends Error {
  constructor(message: string, readonly retry: boolean, readonly type: GantryErrorType = GantryErrorType.DeployFailed) {
    super(message);
  }
}

interface RemoteContainer {
  image: string;
  imageId: string;
  running: boolean;
  restarting: boolean;
  status: string;
  exitCode: number;
  startedAt: string;
  restartCount: number;
  labels: Record<string, string>;
}

/** One SSH session to one host, running the container CLI. */
class RemoteCli {
  private constructor(private readonly ssh: NodeSSH, private readonly target: SshDeploy, private readonly name: string, private readonly timeoutMs: number) {}

  static async connect(host: Host, target: SshDeploy, key: string, deps: SshDeployDeps): Promise<RemoteCli> {
    const name = sshTargetName(host, target.container);
    const policy = hostKeyPolicy(host, target, name);
    const ssh = new NodeSSH();
    let refused: { blob: Buffer; revoked: boolean } | undefined;
    const serverHostKey = hostKeyAlgorithms(policy);
    try {
      await ssh.connect({
        host: host.host,
        port: host.port,
        username: host.user,
        privateKey: key,
        readyTimeout: deps.connectTimeoutMs ?? 20_000,
        ...(serverHostKey ? { algorithms: { serverHostKey } } : {}),
        // During the key exchange, before any authentication: a false answer ends the connection.
        hostVerifier: (blob: Buffer) => {
          const fp = hostKeyFingerprint(blob);
          const same = (k: PinnedKey) => (k.blob ? k.blob.equals(blob) : k.fingerprint === fp);
          const revoked = policy.revoked.some(same);
          if (revoked || !policy.keys.some(same)) {
            refused = { blob: Buffer.from(blob), revoked };
            return false;
          }
          return true;
        },
      });
    } catch (err) {
      ssh.dispose();
      const text = redact(String((err as Error)?.message ?? err), [key]);
      if (refused) {
        const fp = hostKeyFingerprint(refused.blob);
        const type = sshKeyBlobType(refused.blob) ?? 'unknown';
        throw new HostError(refused.revoked
          ? `${name}: the host key is ${fp} (${type}), which ${policy.source} marks @revoked. Nothing was run there and the deploy key was not offered. ` +
            'Give the host a new key and pin it, then retry the release.'
          : `${name}: the host key is ${fp} (${type}), not the pinned ${policy.keys.map((k) => k.fingerprint).join(' or ')} (${policy.source}). ` +
            'Someone may be intercepting the connection, or the host was reinstalled; nothing was run there and the deploy key was not offered. ' +
            'Check the key on the host itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console); only if it really changed, ' +
            `${policy.update}, then retry.`, false);
      }
      if (serverHostKey && /no matching host key/i.test(text)) {
        throw new HostError(`${name}: the host offers no ${[...new Set(policy.keys.map((k) => k.type))].join(' or ')} host key, the type pinned by ` +
          `${policy.source} (${text}). Pin the key the host has (${keyscanHint(host)}), then retry.`, false);
      }
      if (/authentication methods failed|permission denied|auth/i.test(text)) {
        throw new HostError(`${name}: the host refused the deploy key (${text}). Add the key's public half to ~${host.user}/.ssh/authorized_keys ` +
          `on the host, or fix privateKey (${describeSecretRef(target.privateKey)}) or the user in the release config.`, false, GantryErrorType.ConfigInvalid);
      }
      if (/privatekey|private key|unsupported key|parse/i.test(text)) {
        throw new HostError(`${name}: the deploy key from ${describeSecretRef(target.privateKey)} cannot be used (${text}). ` +
          'Point privateKey at an unencrypted OpenSSH private key.', false, GantryErrorType.ConfigInvalid);
      }
      throw new HostError(`${name}: could not connect over SSH (${text}). Gantry retries; if it persists, check the host is up and sshd listens on port ${host.port}.`, true);
    }
    return new RemoteCli(ssh, target, name, deps.commandTimeoutMs ?? 600_000);
  }

  dispose(): void {
    this.ssh.dispose();
  }

  /** `{cliEnv…} {containerCli} args…`, each word quoted. */
  command(args: string[]): string {
    const env = Object.entries(this.target.cliEnv).map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
        throw new HostError(`${this.name}: cliEnv key "${k}" is not an environment variable name; fix it in the release config (letters, digits and _).`,
          false, GantryErrorType.ConfigInvalid);
      }
      return `${k}=${shellQuote(v)}`;
    });
    const cli = this.target.containerCli.trim().split(/\s+/).map(shellQuote);
    return [...(env.length ? ['env', ...env] : []), ...cli, ...args.map(shellQuote)].join(' ');
  }

  async run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; command: string }> {
    const command = this.command(args);
    const signal = cancellation();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HostError(`${this.name}: \`${command}\` did not finish within ${this.timeoutMs / 1000}s; gantry retries.`, true)), this.timeoutMs);
    });
    try {
      const res = await Promise.race([this.ssh.execCommand(command, {}), timeout]);
      if (signal.aborted) throw signal.reason;
      return { code: res.code, stdout: res.stdout, stderr: res.stderr, command };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Run and require exit 0; a failure is classified from the CLI's output. */
  async must(args: string[], what: string): Promise<string> {
    const r = await this.run(args);
    if (r.code === 0) return r.stdout;
    const out = (r.stderr || r.stdout).trim().slice(-800);
    if (r.code === 127 || /command not found|not found in \$?PATH|executable file not found/i.test(out)) {
      throw new HostError(`${this.name}: \`${this.target.containerCli}\` is not installed there (${out}). Install it on the host or set containerCli in the release config.`,
        false, GantryErrorType.ConfigInvalid);
    }
    const kind = classifyEngineText(out);
    if (kind === 'unreachable' || /cannot connect to the docker daemon|is the docker daemon running/i.test(out)) {
      throw new HostError(`${this.name}: ${what} failed because something did not answer (\`${r.command}\`: ${out}). Gantry retries; if it persists, ` +
        'check the engine on the host and the registry it pulls from.', true);
    }
    if (kind === 'not-found' && args[0] === 'pull') {
      throw new HostError(`${this.name}: the registry has no ${args[1]} (${out}). Release a new version to rebuild it, or restore the image in the registry.`, false);
    }
    throw new HostError(`${this.name}: ${what} failed (\`${r.command}\` exited ${r.code}: ${out}). Fix it on the host, then retry the release.`, false);
  }

  async inspect(container: string): Promise<RemoteContainer | null> {
    const r = await this.run(['inspect', '--type', 'container', '--format', '{{json .}}', container]);
    if (r.code !== 0) {
      if (/no such (object|container)|no container with name/i.test(r.stderr + r.stdout)) return null;
      await this.must(['inspect', '--type', 'container', '--format', '{{json .}}', container], `inspecting ${container}`);
    }
    const c = JSON.parse(r.stdout) as {
      Config: { Image: string; Labels?: Record<string, string> | null };
      Image: string;
      RestartCount?: number;
      State: { Running: boolean; Restarting?: boolean; Status: string; ExitCode: number; StartedAt: string };
    };
    return {
      image: c.Config.Image,
      imageId: c.Image,
      running: c.State.Running,
      restarting: c.State.Restarting ?? false,
      status: c.State.Status,
      exitCode: c.State.ExitCode,
      startedAt: c.State.StartedAt,
      restartCount: c.RestartCount ?? 0,
      labels: c.Config.Labels ?? {},
    };
  }

  async imageId(image: string): Promise<string | null> {
    const r = await this.run(['image', 'inspect', '--format', '{{.Id}}', image]);
    return r.code === 0 ? r.stdout.trim() : null;
  }

  async imageLabels(image: string): Promise<Record<string, string>> {
    const r = await this.run(['image', 'inspect', '--format', '{{json .Config.Labels}}', image]);
    try {
      return r.code === 0 ? ((JSON.parse(r.stdout) as Record<string, string> | null) ?? {}) : {};
    } catch {
      return {};
    }
  }

  async pull(image: string): Promise<string> {
    beat({ phase: 'pull', target: this.name, detail: image });
    await this.must(['pull', image], `pulling ${image}`);
    const id = await this.imageId(image);
    if (!id) throw new HostError(`${this.name}: pulled ${image} but the CLI cannot inspect it; gantry retries.`, true);
    return id;
  }

  async remove(container: string): Promise<void> {
    const stop = await this.run(['stop', '--time', '10', container]);
    if (stop.code !== 0 && !/no such (object|container)|no container with name/i.test(stop.stderr + stop.stdout)) {
      await this.must(['stop', '--time', '10', container], `stopping ${container}`);
    }
    const rm = await this.run(['rm', '--force', container]);
    if (rm.code !== 0 && !/no such (object|container)|no container with name/i.test(rm.stderr + rm.stdout)) {
      await this.must(['rm', '--force', container], `removing ${container}`);
    }
  }

  /** stop, rm, run; then wait until it runs steadily. */
  async replace(image: string, labels: Record<string, string>, startTimeoutMs: number): Promise<void> {
    const t = this.target;
    beat({ phase: 'replace', target: this.name, detail: `stopping ${t.container}` });
    await this.remove(t.container);
    const args = ['run', '--detach', '--name', t.container, '--restart', t.restart];
    for (const p of t.ports.map(parsePort)) args.push('--publish', formatPublish(p));
    if (t.envFile) args.push('--env-file', t.envFile);
    for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
    args.push(image);
    beat({ phase: 'replace', target: this.name, detail: `starting ${image}` });
    await this.must(args, `starting ${t.container} from ${image}`);

    const deadline = Date.now() + startTimeoutMs;
    let seenRunningSince: string | undefined;
    for (;;) {
      const c = await this.inspect(t.container);
      if (!c) throw new HostError(`${this.name}: ${t.container} vanished right after it was started; gantry retries.`, true);
      if (c.running && !c.restarting && c.restartCount === 0) {
        if (seenRunningSince === c.startedAt) return;
        seenRunningSince = c.startedAt;
      } else if ((!c.running && !c.restarting && c.status !== 'created') || c.restartCount > 0) {
        const logs = await this.run(['logs', '--tail', '20', t.container]);
        throw new HostError(`${this.name}: ${t.container} stopped right after starting (status ${c.status}, exit code ${c.exitCode}, ${c.restartCount} restarts) ` +
          `with ${image}. Its last output:\n${(logs.stdout + logs.stderr).trim().slice(-1500) || '(none)'}\nFix the image and release a new version.`, false);
      }
      if (Date.now() > deadline) throw new HostError(`${this.name}: ${t.container} was not running ${startTimeoutMs / 1000}s after it was started (status ${c.status}); gantry retries.`, true);
      beat({ phase: 'wait', target: this.name, detail: c.status });
      await pause(500);
    }
  }
}

export function createSshDeployer(deps: SshDeployDeps): Deployer<SshDeploy> {
  const startTimeoutMs = deps.startTimeoutMs ?? 60_000;

  async function withHost<T>(host: Host, target: SshDeploy, key: string, fn: (cli: RemoteCli) => Promise<T>): Promise<T> {
    const cli = await RemoteCli.connect(host, target, key, deps);
    try {
      return await fn(cli);
    } finally {
      cli.dispose();
    }
  }

  return {
    async deploy(req: DeployRequest & { target: SshDeploy }): Promise<DeployedTarget[]> {
      const { target } = req;
      const key = resolveSecret(target.privateKey, deps.env);
      const done: DeployedTarget[] = [];
      for (const host of target.hosts) {
        const name = sshTargetName(host, target.container);
        try {
          done.push(await withHost(host, target, key, async (cli) => {
            const imageId = await cli.pull(req.imageRef);
            const existing = await cli.inspect(target.container);
            const previousImage = previousImageOf(existing, req.release);
            if (existing && existing.imageId === imageId && existing.running) {
              return { target: name, previousImage, image: req.imageRef, changed: false };
            }
            await cli.replace(req.imageRef, containerLabels(req, req.imageRef, previousImage), startTimeoutMs);
            return { target: name, previousImage, image: req.imageRef, changed: true };
          }));
        } catch (err) {
          throw hostFailure(err, name, done, target, key);
        }
      }
      return done;
    },

    async restore(req: RestoreRequest<SshDeploy>): Promise<Restored> {
      const { target } = req;
      const host = target.hosts.find((h) => sshTargetName(h, target.container) === req.deployed.target);
      if (!host) {
        throw nonRetryable(GantryErrorType.RollbackFailed, `${req.deployed.target} is not among the hosts of the release config any more; ` +
          `restore ${req.deployed.previousImage ?? '(remove the container)'} there by hand.`);
      }
      const key = resolveSecret(target.privateKey, deps.env);
      const image = req.deployed.previousImage;
      try {
        return await withHost(host, target, key, async (cli) => {
          if (image === null) {
            beat({ phase: 'remove', target: req.deployed.target });
            await cli.remove(target.container);
            return { target: req.deployed.target, image: null };
          }
          const imageId = (await cli.imageId(image)) ?? (await cli.pull(image));
          const version = (await cli.imageLabels(imageId))[LABELS.version];
          const existing = await cli.inspect(target.container);
          if (!(existing && existing.imageId === imageId && existing.running)) {
            await cli.replace(image, rollbackLabels(req, image, version), startTimeoutMs);
          }
          return { target: req.deployed.target, image, ...(version ? { version } : {}) };
        });
      } catch (err) {
        if (err instanceof HostError) {
          throw err.retry ? retryable(err.message, { target: req.deployed.target }) : nonRetryable(err.type, err.message, { target: req.deployed.target });
        }
        throw err;
      }
    },
  };
}

/** The step's failure: what went wrong on which host, and which hosts had already changed. */
function hostFailure(err: unknown, failedHost: string, done: DeployedTarget[], target: SshDeploy, key: string): Error {
  const changed = done.filter((t) => t.changed).map((t) => t.target);
  const details = {
    failedHost,
    changedHosts: changed,
    targets: done,
    pendingHosts: target.hosts.map((h) => sshTargetName(h, target.container)).filter((n) => n !== failedHost && !done.some((d) => d.target === n)),
  };
  const tail = changed.length
    ? ` Hosts already changed (they run the new image): ${changed.join(', ')}.`
    : done.length ? ' No host had been changed.' : ' No host had been reached before it.';
  if (err instanceof HostError) {
    const message = redact(err.message, [key]) + tail;
    return err.retry ? retryable(message, details) : nonRetryable(err.type, message, details);
  }
  if (err instanceof Error && 'type' in err) return err; // already an ApplicationFailure (e.g. cancellation)
  return retryable(`${failedHost}: ${redact(String((err as Error)?.message ?? err), [key])}.${tail} Gantry retries.`, details);
}

