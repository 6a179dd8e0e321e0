/**
 * Deploy target `kind: ssh`, the production path: one node-ssh session per host for the whole step, one remote
 * shell in it, and in that shell two scripts run by the container CLI there (`docker` by default; `containerCli`
 * and `cliEnv` from config): the survey (what runs, the kept container, the image id; pull by digest only when
 * the host lacks it) and the swap of deployer.ts (rename, create, stop the kept one, start, wait with short
 * backoff; put the kept one back when the new one does not start). Each script reports line by line, so what ran
 * before reaches the heartbeat before anything changes, and it ignores a lost session, so a worker dying mid-swap
 * never leaves it half done. Hosts go one after another (the next host's session opens while one swaps); when one
 * fails, the hosts this step already changed get their kept containers back (over their open sessions) and the
 * error says host by host what happened.
 *
 * The private key is a reference resolved here, on the worker; it never leaves this process. Every host's key is
 * pinned (`hostKey`: a public key or its SHA256 fingerprint, or `knownHosts`: a known_hosts file on the worker,
 * read at each connection) and checked during the key exchange, before the deploy key is offered: a host
 * presenting another key is refused and nothing runs there.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import { parseHostKey, SSH_HOST_KEY_TYPES, sshKeyBlobType, type SshDeploy } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { classifyEngineText, formatPublish, parsePort } from './docker';
import {
  containerLabels,
  type ContainerState,
  type Deployer,
  type DeployProgress,
  failedName,
  LABELS,
  newProgress,
  planSwap,
  previousName,
  recordedPrevious,
  type Restored,
  type RestoreRequest,
  rollbackLabels,
  servingBefore,
  type SwapPlan,
} from './deployer';
import { beat, cancellation, keepBeating } from './heartbeat';
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
  /** How long a started container must keep running, unrestarted, to count as started. @default 300 */
  settleMs?: number;
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

/**
 * A TCP connection to an SSH server with Nagle's algorithm off. SSH's handshake and every script's start are
 * small request/answer exchanges; with Nagle on, each one waits out the peer's delayed ACK (about 40 ms on Linux),
 * which made the handshake alone take 200 ms on loopback.
 */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host, port, noDelay: true, timeout: timeoutMs });
    const fail = (err: Error) => {
      sock.destroy();
      reject(err);
    };
    sock.once('error', fail);
    sock.once('timeout', () => fail(new Error(`timed out after ${timeoutMs / 1000}s connecting to ${host}:${port}`)));
    sock.once('connect', () => {
      sock.removeListener('error', fail);
      sock.removeAllListeners('timeout');
      sock.setTimeout(0);
      resolve(sock);
    });
  });
}

/** A failure on one host, before it is reported with what the other hosts did. */
class HostError extends Error {
  constructor(message: string, readonly retry: boolean, readonly type: GantryErrorType = GantryErrorType.DeployFailed) {
    super(message);
  }
}

/** A remote script's end: its exit code (null when the session ended first), its reports and what it wrote to stderr. */
interface ScriptResult {
  code: number | null;
  reports: Report[];
  stderr: string;
}

/** The script running in the session's shell now: its reports so far, and how to end it. */
interface Running {
  token: string;
  reports: Report[];
  onReport: (key: string, args: string[]) => void;
  stderrFrom: number;
  done: (r: ScriptResult) => void;
  fail: (err: unknown) => void;
}

/** One remote `sh -s` per session: every script of the step runs in it, so the host starts one shell, not one per script. */
interface Shell {
  stdin: PassThrough;
  stderr: string;
  running?: Running;
}

/** One SSH session to one host, running the container CLI. */
class RemoteCli {
  private shell?: Shell;

  private constructor(private readonly ssh: NodeSSH, private readonly target: SshDeploy, private readonly name: string, private readonly timeoutMs: number) {}

  static async connect(host: Host, target: SshDeploy, key: string, deps: SshDeployDeps): Promise<RemoteCli> {
    const name = sshTargetName(host, target.container);
    const policy = hostKeyPolicy(host, target, name);
    const ssh = new NodeSSH();
    let refused: { blob: Buffer; revoked: boolean } | undefined;
    const serverHostKey = hostKeyAlgorithms(policy);
    const timeoutMs = deps.connectTimeoutMs ?? 20_000;
    const started = Date.now();
    let sock: Socket | undefined;
    try {
      sock = await tcpConnect(host.host, host.port, timeoutMs);
      await ssh.connect({
        sock,
        username: host.user,
        privateKey: key,
        readyTimeout: Math.max(1, timeoutMs - (Date.now() - started)),
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
      sock?.destroy();
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
    this.shell?.stdin.end();
    this.shell = undefined;
    this.ssh.dispose();
  }

  /** Start the session's shell now, so it is up by the first script (a problem starting it shows at that script). */
  warm(): void {
    try {
      this.openShell();
    } catch {
      // met again by the first script
    }
  }

  /** `{cliEnv…} {containerCli}`, each word quoted: the start of every CLI command on the host. */
  cliPrefix(): string {
    const env = Object.entries(this.target.cliEnv).map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
        throw new HostError(`${this.name}: cliEnv key "${k}" is not an environment variable name; fix it in the release config (letters, digits and _).`,
          false, GantryErrorType.ConfigInvalid);
      }
      return `${k}=${shellQuote(v)}`;
    });
    const cli = this.target.containerCli.trim().split(/\s+/).map(shellQuote);
    return [...(env.length ? ['env', ...env] : []), ...cli].join(' ');
  }

  /**
   * The session's shell, started on first use: `sh -s` reading scripts from its stdin as they come. It ignores a
   * lost session (HUP, PIPE), so a worker dying mid-swap never leaves a script half done; each script is one
   * subshell, parsed whole before any of it runs (a script cut short by a lost session runs not at all), with
   * /dev/null as its stdin so no command in it can read the scripts after it.
   */
  private openShell(): Shell {
    if (this.shell) return this.shell;
    const prelude = [
      "trap '' HUP PIPE",
      // One report per line: "@token key arg…"; multi-line values have their newlines as \036.
      'say() { printf \'@%s\' "$T"; for a in "$@"; do printf \' %s\' "$(printf \'%s\' "$a" | tr \'\\n \' \'\\036\\037\')"; done; printf \'\\n\'; }',
      `d() { ${this.cliPrefix()} "$@"; }`,
      '',
    ].join('\n');
    const stdin = new PassThrough();
    let buffered = '';
    const shell: Shell = { stdin, stderr: '' };
    const onStdout = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const r = shell.running;
        if (!r || !line.startsWith(`@${r.token} `)) continue;
        const [key = '', ...args] = line.slice(r.token.length + 2).split(' ').map((w) => w.replace(/\x1e/g, '\n').replace(/\x1f/g, ' '));
        if (key === '~end') {
          shell.running = undefined;
          r.done({ code: Number(args[0]), reports: r.reports, stderr: shell.stderr.slice(r.stderrFrom) });
          continue;
        }
        r.reports.push({ key, args });
        r.onReport(key, args);
      }
    };
    const onStderr = (chunk: Buffer) => {
      shell.stderr += chunk.toString('utf8');
    };
    stdin.write(prelude);
    void this.ssh.execCommand('sh -s', { stdin, onStdout, onStderr, noTrim: true }).then((res) => {
      const r = shell.running;
      shell.running = undefined;
      r?.done({ code: res.code, reports: r.reports, stderr: shell.stderr.slice(r.stderrFrom) });
    }, (err: unknown) => {
      const r = shell.running;
      shell.running = undefined;
      r?.fail(err);
    }).finally(() => {
      if (this.shell === shell) this.shell = undefined;
    });
    this.shell = shell;
    return shell;
  }

  /**
   * Run one remote script (POSIX sh) in this session's shell and hand each report line to `onReport` as it
   * arrives; its exit code is the subshell's.
   */
  async script(body: string, onReport: (key: string, args: string[]) => void): Promise<ScriptResult> {
    const token = randomBytes(6).toString('hex');
    const cli0 = shellQuote(this.target.containerCli.trim().split(/\s+/)[0] ?? 'docker');
    const text = [
      `T=${token}`,
      '(',
      `command -v ${cli0} >/dev/null 2>&1 || { echo "${cli0}: command not found" >&2; exit 127; }`,
      body,
      ') </dev/null',
      'printf \'@%s ~end %s\\n\' "$T" "$?"',
      '',
    ].join('\n');
    const shell = this.openShell();
    if (shell.running) throw new Error(`${this.name}: a remote script is already running in this session`);
    const signal = cancellation();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await keepBeating(() => new Promise<ScriptResult>((resolve, reject) => {
        shell.running = { token, reports: [], onReport, stderrFrom: shell.stderr.length, done: resolve, fail: reject };
        timer = setTimeout(() => {
          // That shell is busy until the script ends there: a later script gets a shell of its own.
          shell.running = undefined;
          if (this.shell === shell) this.shell = undefined;
          shell.stdin.end();
          reject(new HostError(`${this.name}: the remote script did not finish within ${this.timeoutMs / 1000}s; gantry retries.`, true));
        }, this.timeoutMs);
        shell.stdin.write(text);
      })).then((res) => {
        if (signal.aborted) throw signal.reason;
        return res;
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** A failure of a script that did not get as far as reporting one: the CLI is missing, or the session broke. */
  scriptFailure(r: { code: number | null; stderr: string }, what: string): HostError {
    const out = r.stderr.trim().slice(-800);
    if (r.code === 127 || /command not found|not found in \$?PATH|executable file not found/i.test(out)) {
      return new HostError(`${this.name}: \`${this.target.containerCli}\` is not installed there (${out}). Install it on the host or set containerCli in the release config.`,
        false, GantryErrorType.ConfigInvalid);
    }
    return new HostError(`${this.name}: ${what} stopped (exit ${r.code}${out ? `: ${out}` : ''}). Gantry retries; if it persists, check the host and its container engine.`, true);
  }

  /** A CLI error the script reported: something that did not answer is retried, anything else is the host's answer. */
  cliError(what: string, text: string): HostError {
    const out = text.trim().slice(-800);
    if (classifyEngineText(out) === 'unreachable' || /cannot connect to the docker daemon|is the docker daemon running/i.test(out)) {
      return new HostError(`${this.name}: ${what} failed because something did not answer (${out}). Gantry retries; if it persists, ` +
        'check the engine on the host and the registry it pulls from.', true);
    }
    return new HostError(`${this.name}: ${what} failed (${out}). Fix it on the host, then retry the release.`, false);
  }

  pullError(image: string, text: string): HostError {
    const out = text.trim().slice(-800);
    if (classifyEngineText(out) === 'not-found') {
      return new HostError(`${this.name}: the registry has no ${image} (${out}). Release a new version to rebuild it, or restore the image in the registry.`, false);
    }
    if (classifyEngineText(out) === 'auth') {
      return new HostError(`${this.name}: the registry refused the host access to ${image} (${out}). Log the host's engine in to the registry (\`docker login\`), then retry.`, false);
    }
    return this.cliError(`pulling ${image}`, out);
  }
}

interface Report {
  key: string;
  args: string[];
}

/** `docker create` options for the target, after `--name`, before the image. */
function createArgs(t: SshDeploy, labels: Record<string, string>): string[] {
  const args = ['--restart', t.restart];
  for (const p of t.ports.map(parsePort)) args.push('--publish', formatPublish(p));
  if (t.envFile) args.push('--env-file', t.envFile);
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
  return args;
}

const q = shellQuote;

/**
 * Shell: `steady C` (right after `start C`) waits until container C runs steadily: running, not restarting, no
 * restarts and the same start for settleMs, as the host's clock measures it (from the start of the first look when
 * that look sees it so, since it then has run since before the look, else from the end of the look that first saw
 * it so; to the start of the look that proves it; where `date` has no %N, the time slept between the looks, which
 * is less). It looks again
 * after 25 ms, doubling to 400 ms, never sleeping past the end of the settle window. Returns 1 when the container
 * stopped (and sets `why`), 2 when it is not running steadily startTimeoutMs after it was started.
 */
function steadyFunction(startTimeoutMs: number, settleMs: number): string {
  return `now_ms() { t=$(date +%s%N 2>/dev/null); case $t in ''|*[!0-9]*) ;; *) printf '%s' "\${t%??????}";; esac; }
steady() {
  c=$1; deadline=$(( $(date +%s) + ${Math.ceil(startTimeoutMs / 1000)} )); seen=""; since=0; slept=0; ms=25; first=1
  while :; do
    before=$(now_ms)
    st=$(d inspect --type container --format '{{.State.Status}}|{{.State.Running}}|{{.State.Restarting}}|{{.RestartCount}}|{{.State.StartedAt}}|{{.State.ExitCode}}' "$c" 2>&1) || { why="it vanished right after it was started ($st)"; return 1; }
    old=$IFS; IFS='|'; set -- $st; IFS=$old
    nap=$ms
    if [ "$2" = true ] && [ "$3" = false ] && [ "$4" = 0 ]; then
      if [ "$seen" = "$5" ]; then up=$(( \${before:-$slept} - since )); [ "$up" -ge ${settleMs} ] && return 0
      else seen=$5; up=0; if [ $first = 1 ]; then since=$before; else since=$(now_ms); fi; since=\${since:-$slept}; fi
      [ $(( ${settleMs} - up )) -lt "$nap" ] && nap=$(( ${settleMs} - up ))
    elif { [ "$2" = false ] && [ "$3" = false ] && [ "$1" != created ] && [ "$1" != configured ]; } || [ "$4" != 0 ]; then
      why="it stopped right after starting (status $1, exit code $6, $4 restarts). Its last output:
$(d logs --tail 20 "$c" 2>&1 | tail -c 1500)"
      return 1
    fi
    [ "$(date +%s)" -gt "$deadline" ] && { why="it was not running ${Math.ceil(startTimeoutMs / 1000)}s after it was started (status $1)"; return 2; }
    sleep "$(printf '%d.%03d' $((nap / 1000)) $((nap % 1000)))"; slept=$((slept + nap)); first=0; [ "$ms" -lt 400 ] && ms=$((ms * 2))
  done
}`;
}

/** Shell: report `main`, `kept` (inspect JSON or null) and `image` (id), pulling it when the host does not have it. */
function surveyScript(t: SshDeploy, image: string): string {
  const inspect = (key: string, name: string) => `out=$(d inspect --type container --format '{{json .}}' ${q(name)} 2>&1)
if [ $? = 0 ]; then say ${key} "$out"
elif printf '%s' "$out" | grep -qiE 'no such (object|container)|no container with name'; then say ${key} null
else say error "inspecting ${name}" "$out"; exit 3; fi`;
  return [
    inspect('main', t.container),
    inspect('kept', previousName(t.container)),
    `img=$(d image inspect --format '{{.Id}}' ${q(image)} 2>/dev/null)`,
    `if [ -z "$img" ]; then say pulling; out=$(d pull ${q(image)} 2>&1) || { say pullfail "$out"; exit 4; }`,
    `  img=$(d image inspect --format '{{.Id}}' ${q(image)} 2>&1) || { say error "inspecting the pulled ${image}" "$img"; exit 3; }; fi`,
    'say image "$img"',
  ].join('\n');
}

/** Shell: the swap of deployer.ts, then `result ok|start|crash|slow why` and, on a failure, `putback ok|failed|none why`. */
function swapScript(t: SshDeploy, image: string, plan: Extract<SwapPlan, { kind: 'swap' }>, labels: Record<string, string>, startTimeoutMs: number, settleMs: number): string {
  const main = q(t.container);
  const kept = q(previousName(t.container));
  return [
    steadyFunction(startTimeoutMs, settleMs),
    'kind=""',
    plan.removeMain ? `d rm -f ${main} >/dev/null 2>&1` : '',
    plan.keepMain ? [
      plan.removeStalePrevious ? `d rm -f ${kept} >/dev/null 2>&1` : '',
      `out=$(d rename ${main} ${kept} 2>&1) || { say error "renaming ${t.container}" "$out"; exit 3; }`,
      'say kept',
    ].join('\n') : '',
    `out=$(d create --name ${main} ${createArgs(t, labels).map(q).join(' ')} ${q(image)} 2>&1) || { kind=start; why="the engine could not create it: $out"; }`,
    plan.kept ? `[ -z "$kind" ] && { d update --restart no ${kept} >/dev/null 2>&1; d stop -t 10 ${kept} >/dev/null 2>&1; }` : '',
    '[ -z "$kind" ] && say created',
    `[ -z "$kind" ] && { out=$(d start ${main} 2>&1) || { kind=start; why="the engine could not start it: $out"; }; }`,
    `if [ -z "$kind" ]; then steady ${main}; rc=$?; [ $rc = 1 ] && kind=crash; [ $rc = 2 ] && kind=slow; fi`,
    'if [ -z "$kind" ]; then say result ok; exit 0; fi',
    'say result "$kind" "$why"',
    `d rm -f ${main} >/dev/null 2>&1`,
    plan.kept ? [
      `out=$(d rename ${kept} ${main} 2>&1) || { say putback failed "renaming ${previousName(t.container)} back: $out"; exit 0; }`,
      `d update --restart ${q(t.restart)} ${main} >/dev/null 2>&1`,
      `out=$(d start ${main} 2>&1) || { say putback failed "starting it: $out"; exit 0; }`,
      `if steady ${main}; then say putback ok; else say putback failed "$why"; fi`,
    ].join('\n') : 'say putback none',
  ].filter(Boolean).join('\n');
}

/** Shell: bring `image` back as the target's container (kept container first, else pull and create); reports `via`, `version`, `result`. */
function restoreScript(t: SshDeploy, image: string, labels: Record<string, string>, startTimeoutMs: number, settleMs: number): string {
  const main = q(t.container);
  const kept = q(previousName(t.container));
  const failed = q(failedName(t.container));
  const img = q(image);
  return [
    steadyFunction(startTimeoutMs, settleMs),
    `id=$(d image inspect --format '{{.Id}}' ${img} 2>/dev/null)`,
    // 0: the container runs the previous image; 1: another one; 2: no such container.
    `is_prev() { x=$(d inspect --type container --format '{{.Config.Image}}|{{.Image}}|{{.State.Running}}|{{index .Config.Labels "${LABELS.version}"}}' "$1" 2>/dev/null) || return 2
  [ "\${x%%|*}" = ${img} ] && return 0; rest=\${x#*|}; [ -n "$id" ] && [ "\${rest%%|*}" = "$id" ] && return 0; return 1; }`,
    `ver=$(d image inspect --format '{{index .Config.Labels "${LABELS.version}"}}' ${img} 2>/dev/null)`,
    `is_prev ${main}; m=$?`,
    `if [ $m = 0 ]; then cver=$(printf '%s' "$x" | cut -d'|' -f4); [ -n "$ver" ] || ver=$cver; case "$x" in *'|true|'*) say version "$ver"; say via running; say result ok; exit 0;; esac; fi`,
    `is_prev ${kept}; k=$?; kx=$x`,
    // Without a kept container, pull first: a pull that fails must not leave the target renamed.
    `if [ $m != 0 ] && [ $k != 0 ] && [ -z "$id" ]; then say pulling; out=$(d pull ${img} 2>&1) || { say pullfail "$out"; exit 4; }
  ver=$(d image inspect --format '{{index .Config.Labels "${LABELS.version}"}}' ${img} 2>/dev/null); fi`,
    `if [ $m = 1 ]; then d rm -f ${failed} >/dev/null 2>&1; out=$(d rename ${main} ${failed} 2>&1) || { say error "renaming ${t.container} aside" "$out"; exit 3; }; fi`,
    `if [ $m != 0 ]; then
  if [ $k = 0 ]; then
    cver=$(printf '%s' "$kx" | cut -d'|' -f4); [ -n "$ver" ] || ver=$cver
    out=$(d rename ${kept} ${main} 2>&1) || { say error "renaming ${previousName(t.container)} back" "$out"; exit 3; }
    say via kept
  else
    out=$(d create --name ${main} ${createArgs(t, labels).map(q).join(' ')} --label "${LABELS.version}=$ver" ${img} 2>&1) || {
      [ $m = 1 ] && d rename ${failed} ${main} >/dev/null 2>&1; say result start "the engine could not create it: $out"; exit 0; }
    say via created
  fi
fi`,
    'say version "$ver"',
    `d update --restart ${q(t.restart)} ${main} >/dev/null 2>&1`,
    `d stop -t 10 ${failed} >/dev/null 2>&1`,
    `out=$(d start ${main} 2>&1) || { say result start "the engine could not start it: $out"; exit 0; }`,
    `steady ${main}; rc=$?`,
    `[ $rc = 1 ] && { say result crash "$why"; exit 0; }`,
    `[ $rc = 2 ] && { say result slow "$why"; exit 0; }`,
    `d rm -f ${failed} >/dev/null 2>&1`,
    'say result ok',
  ].join('\n');
}

function parseInspect(json: string | undefined): ContainerState | null {
  if (!json || json === 'null') return null;
  const c = JSON.parse(json) as { Id: string; Config: { Image: string; Labels?: Record<string, string> | null }; Image: string; State: { Running: boolean } };
  return { id: c.Id, image: c.Config.Image, imageId: c.Image, running: c.State.Running, labels: c.Config.Labels ?? {} };
}

export function createSshDeployer(deps: SshDeployDeps): Deployer<SshDeploy> {
  const startTimeoutMs = deps.startTimeoutMs ?? 60_000;
  const settleMs = deps.settleMs ?? 300;

  /** Deploy to one host over its session: survey (one script), then swap (one script). */
  async function deployHost(cli: RemoteCli, req: DeployRequest & { target: SshDeploy }, name: string, progress: DeployProgress): Promise<DeployedTarget> {
    const { target } = req;
    const recorded = recordedPrevious(name);
    let main: ContainerState | null = null;
    let kept: ContainerState | null = null;
    const survey = await cli.script(surveyScript(target, req.imageRef), (key, args) => {
      if (key === 'main') main = parseInspect(args[0]);
      if (key === 'kept') {
        kept = parseInspect(args[0]);
        // What runs, recorded before anything is touched: a retry on another worker reads it from the heartbeat.
        progress.previous[name] = recorded !== undefined ? recorded : servingBefore(main, kept, req.release);
        beat({ ...progress, phase: 'pull', target: name, detail: req.imageRef });
      }
    });
    const report = (key: string) => survey.reports.find((r) => r.key === key)?.args;
    const error = report('error');
    if (error) throw cli.cliError(error[0] ?? 'inspecting', error[1] ?? '');
    const pullFail = report('pullfail');
    if (pullFail) throw cli.pullError(req.imageRef, pullFail[0] ?? '');
    const imageId = report('image')?.[0];
    if (survey.code !== 0 || !imageId) throw cli.scriptFailure(survey, 'looking at the host');

    const plan = planSwap(main, kept, imageId, req.release, recorded);
    if (plan.kind === 'unchanged') return { target: name, previousImage: plan.previousImage, image: req.imageRef, changed: false };
    const labels = containerLabels(req, req.imageRef, plan.previousImage, { [LABELS.previousContainer]: plan.kept?.id ?? '' });
    beat({ ...progress, phase: 'swap', target: name, detail: `replacing ${target.container}` });
    const swap = await cli.script(swapScript(target, req.imageRef, plan, labels, startTimeoutMs, settleMs), (key) => {
      beat({ ...progress, phase: 'swap', target: name, detail: key });
    });
    const swapReport = (key: string) => swap.reports.find((r) => r.key === key)?.args;
    const swapError = swapReport('error');
    if (swapError) throw cli.cliError(swapError[0] ?? 'swapping', swapError[1] ?? '');
    const [outcome = '', why = ''] = swapReport('result') ?? [];
    if (outcome === 'ok') return { target: name, previousImage: plan.previousImage, image: req.imageRef, changed: true };
    if (!outcome) throw cli.scriptFailure(swap, 'the swap');
    const [back = 'none', backWhy = ''] = swapReport('putback') ?? [];
    const keptName = previousName(target.container);
    const putBack = back === 'ok' ? `The previous container (${plan.kept?.image}) was started again and serves as ${target.container}.`
      : back === 'none' ? 'Nothing ran there before; the new container was removed.'
        : `The previous container (${plan.kept?.image}) could not be started again (${backWhy}). Start it by hand on the host: ` +
          `\`docker rename ${keptName} ${target.container}; docker start ${target.container}\`.`;
    const what = `${name}: ${target.container} did not start from ${req.imageRef}: ${why.trim()}`;
    const unreachable = classifyEngineText(why) === 'unreachable';
    if (outcome === 'slow' || unreachable) throw new HostError(`${what}. ${putBack} Gantry retries.`, true);
    const hint = outcome === 'crash' ? '' : ' Check the ports (another process may hold one, or the engine may not bind it) and the env file in the release config.';
    throw new HostError(`${what}.${hint} ${putBack} Fix the image or the release config, then release again.`, false);
  }

  /** Put the previous version back on one host over its session (one script). */
  async function restoreHost(cli: RemoteCli, req: RestoreRequest<SshDeploy>): Promise<Restored> {
    const { target } = req;
    const name = req.deployed.target;
    const image = req.deployed.previousImage;
    if (image === null) {
      beat({ phase: 'remove', target: name });
      const r = await cli.script(`out=$(d rm -f ${q(target.container)} 2>&1) || { printf '%s' "$out" | grep -qiE 'no such|no container' || say error "removing ${target.container}" "$out"; }\nsay result ok`, () => undefined);
      const error = r.reports.find((x) => x.key === 'error')?.args;
      if (error) throw cli.cliError(error[0] ?? 'removing', error[1] ?? '');
      if (!r.reports.some((x) => x.key === 'result')) throw cli.scriptFailure(r, 'removing the container');
      return { target: name, image: null, via: 'removed' };
    }
    const labels = rollbackLabels(req, image, undefined);
    delete labels[LABELS.version]; // the script adds the image's own
    beat({ phase: 'restore', target: name, detail: image });
    const r = await cli.script(restoreScript(target, image, labels, startTimeoutMs, settleMs), (key, args) => {
      beat({ phase: 'restore', target: name, detail: `${key} ${args[0] ?? ''}`.trim() });
    });
    const report = (key: string) => r.reports.find((x) => x.key === key)?.args;
    const error = report('error');
    if (error) throw cli.cliError(error[0] ?? 'restoring', error[1] ?? '');
    const pullFail = report('pullfail');
    if (pullFail) throw cli.pullError(image, pullFail[0] ?? '');
    const [outcome = '', why = ''] = report('result') ?? [];
    if (!outcome) throw cli.scriptFailure(r, 'the restore');
    if (outcome !== 'ok') {
      throw new HostError(`${name}: ${target.container} did not start again from ${image}: ${why.trim()}. The failed version's container is kept, stopped, as ` +
        `${failedName(target.container)}.`, outcome === 'slow' || classifyEngineText(why) === 'unreachable');
    }
    const version = report('version')?.[0];
    return { target: name, image, ...(version ? { version } : {}), via: (report('via')?.[0] as Restored['via']) ?? 'kept' };
  }

  return {
    async deploy(req: DeployRequest & { target: SshDeploy }): Promise<DeployedTarget[]> {
      const { target } = req;
      const key = resolveSecret(target.privateKey, deps.env);
      const progress = newProgress();
      const done: DeployedTarget[] = [];
      // One session per host for the whole step: a failure on a later host restores earlier ones over theirs.
      const sessions: { host: Host; cli: RemoteCli }[] = [];
      // Host i's session, opened once; the next host's comes up (handshake, shell) while this one swaps.
      const opening = new Map<number, Promise<RemoteCli>>();
      const session = (i: number) => {
        let p = opening.get(i);
        if (!p) {
          p = RemoteCli.connect(target.hosts[i]!, target, key, deps);
          p.catch(() => undefined); // its failure is met when that host's turn comes
          opening.set(i, p);
        }
        return p;
      };
      try {
        for (const [i, host] of target.hosts.entries()) {
          const name = sshTargetName(host, target.container);
          try {
            beat({ ...progress, phase: 'connect', target: name });
            const cli = await session(i);
            sessions.push({ host, cli });
            if (i + 1 < target.hosts.length) void session(i + 1).then((next) => next.warm(), () => undefined);
            done.push(await deployHost(cli, req, name, progress));
          } catch (err) {
            const restored = await restoreChanged(done, sessions, req);
            throw hostFailure(err, name, done, restored, target, key);
          }
        }
        return done;
      } finally {
        for (const p of opening.values()) void p.then((cli) => cli.dispose(), () => undefined);
      }
    },

    async restore(req: RestoreRequest<SshDeploy>): Promise<Restored> {
      const { target } = req;
      const host = target.hosts.find((h) => sshTargetName(h, target.container) === req.deployed.target);
      if (!host) {
        throw nonRetryable(GantryErrorType.RollbackFailed, `${req.deployed.target} is not among the hosts of the release config any more; ` +
          `restore ${req.deployed.previousImage ?? '(remove the container)'} there by hand.`);
      }
      const key = resolveSecret(target.privateKey, deps.env);
      let cli: RemoteCli | undefined;
      try {
        cli = await RemoteCli.connect(host, target, key, deps);
        return await restoreHost(cli, req);
      } catch (err) {
        if (err instanceof HostError) {
          const message = redact(err.message, [key]);
          throw err.retry ? retryable(message, { target: req.deployed.target }) : nonRetryable(err.type, message, { target: req.deployed.target });
        }
        throw err;
      } finally {
        cli?.dispose();
      }
    },
  };

  /** After a failure on a later host: put the previous version back on every host this step changed, over its session. */
  async function restoreChanged(done: DeployedTarget[], sessions: { host: Host; cli: RemoteCli }[], req: DeployRequest & { target: SshDeploy }): Promise<HostRestore[]> {
    const out: HostRestore[] = [];
    for (const t of done.filter((d) => d.changed)) {
      const session = sessions.find((s) => sshTargetName(s.host, req.target.container) === t.target);
      try {
        if (!session) throw new Error('no session');
        const r = await restoreHost(session.cli, { release: req.release, environment: req.environment, target: req.target, deployed: t });
        out.push({ target: t.target, ok: true, detail: `back on ${r.image ?? '(nothing: container removed)'}${r.via === 'kept' ? ' (kept container started again)' : ''}` });
      } catch (err) {
        out.push({ target: t.target, ok: false, detail: `NOT restored (${(err as Error).message}); it still runs ${t.image}: restore ${t.previousImage ?? 'nothing (remove the container)'} there by hand` });
      }
    }
    return out;
  }
}

interface HostRestore {
  target: string;
  ok: boolean;
  detail: string;
}

/** The step's failure: what went wrong on which host, and host by host what the step did and put back. */
function hostFailure(err: unknown, failedHost: string, done: DeployedTarget[], restored: HostRestore[], target: SshDeploy, key: string): Error {
  const changed = done.filter((t) => t.changed).map((t) => t.target);
  const details = {
    failedHost,
    changedHosts: changed,
    restoredHosts: restored.filter((r) => r.ok).map((r) => r.target),
    notRestoredHosts: restored.filter((r) => !r.ok).map((r) => r.target),
    targets: done,
    pendingHosts: target.hosts.map((h) => sshTargetName(h, target.container)).filter((n) => n !== failedHost && !done.some((d) => d.target === n)),
  };
  const lines = [
    ...done.map((t) => {
      const r = restored.find((x) => x.target === t.target);
      return `- ${t.target}: ${r ? `had changed to the new image; ${r.detail}` : 'already ran the new image before this step; left as it is'}`;
    }),
    `- ${failedHost}: failed (above)`,
    ...details.pendingHosts.map((h) => `- ${h}: not reached; unchanged`),
  ];
  const tail = `\nHost by host:\n${lines.join('\n')}`;
  if (err instanceof HostError) {
    const message = redact(err.message, [key]) + tail;
    return err.retry ? retryable(message, details) : nonRetryable(err.type, message, details);
  }
  if (err instanceof Error && 'type' in err) return err; // already an ApplicationFailure (e.g. cancellation)
  return retryable(`${failedHost}: ${redact(String((err as Error)?.message ?? err), [key])}. Gantry retries.${tail}`, details);
}
