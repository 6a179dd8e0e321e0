/**
 * The local release lab: every system a release touches, started and torn down by gantry's own code, all on
 * 127.0.0.1, with its data under one directory (default ./.gantry/lab).
 *
 *   engine    Podman's Docker-compatible API (`podman system service`), or an existing Docker engine
 *   registry  Debian's docker-registry (distribution v2), on a port from the range provision.sh marks insecure
 *   repo      a bare git repository holding the sample service (good revision on main, a broken one beside it)
 *   ssh       an sshd acting as the production host; commands there reach the same engine with the docker CLI
 *   webhook   a Slack-style receiver that records each message as a JSON line
 *
 * `startLab` returns all addresses plus a ready release config (service `hello`). Data (registry, repo, keys)
 * survives a restart in the same directory; a lab left running by a dead process is cleaned up on the next start.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { stringify } from 'yaml';
import { loadConfig } from '../config/load';
import { BASE_IMAGE, ensureBaseImage } from './base-image';
import { type Daemon, canBind, freePort, holdPort, isAlive, killGroup, logTail, startDaemon, tcpOpen, waitUntilReady } from './daemon';
import { acceptedPushes, ensureSampleRepo, moveBranch, offeredPushes, type RefUpdate, type SampleRepo, setPushDelay } from './sample-repo';
import { startWebhookReceiver, type WebhookReceiver } from './webhook';

export const PROVISION_HINT = 'run `bash scripts/lab/provision.sh` as root';
export const WEBHOOK_ENV = 'GANTRY_LAB_WEBHOOK_URL';

export interface LabOptions {
  /** Where the lab keeps its data. @default ./.gantry/lab */
  dir?: string;
  /** Use this Docker-compatible engine socket instead of starting Podman's API service. */
  engineSocket?: string;
  /** The registry port range marked insecure by provision.sh. @default GANTRY_LAB_REGISTRY_PORT (5005) and GANTRY_LAB_REGISTRY_PORTS (20) */
  registryPorts?: { first: number; count: number };
  /** Health/smoke windows in the generated config. @default { staging: '30s', production: '30s' } */
  windows?: { staging?: string; production?: string };
  log?: (line: string) => void;
}

export interface LabEnvironment {
  container: string;
  port: number;
  /** http://127.0.0.1:port */
  url: string;
}

export interface Lab {
  id: string;
  dir: string;
  engine: { socketPath: string; dockerHost: string; managed: boolean };
  registry: {
    host: string;
    port: number;
    url: string;
    /** The digests of every manifest the registry stores for image `name` (read from its storage). */
    manifests(name: string): string[];
    /** Every request the registry answered, from its access log (across restarts). */
    requests(): RegistryRequest[];
  };
  baseImage: string;
  repo: SampleRepo & {
    moveBranch(branch: string, commit: string): void;
    /** Ref updates the repository accepted (its post-receive hook's log). */
    pushes(): RefUpdate[];
    /** Ref updates offered to it, logged before any delay (its pre-receive hook's log). */
    offered(): RefUpdate[];
    /** Hold every push this many seconds before it is accepted (0: no delay). */
    setPushDelay(seconds: number): void;
  };
  /**
   * Faults to inject: stop a daemon (SIGTERM to its process group; sessions sshd already forked live on; its port
   * stays held, every connection reset, see daemon.ts holdPort) and start it again on the same port with the same
   * data.
   */
  faults: { stopRegistry(): Promise<void>; startRegistry(): Promise<void>; stopSshd(): Promise<void>; startSshd(): Promise<void> };
  ssh: { host: string; port: number; user: string; privateKeyFile: string; hostKeyFingerprint: string };
  webhook: WebhookReceiver;
  /**
   * The people of the lab and their SSH signing keys (private key files): `operator` starts releases, `alice`
   * and `bob` approve them; `allowedSigners` lists their public keys (the worker config's allowedSigners).
   */
  people: { operator: string; alice: string; bob: string; allowedSigners: string };
  /** The worker's own key, which signs each release's manifest (announce.signingKey). */
  releaseSigningKey: string;
  staging: LabEnvironment;
  production: LabEnvironment;
  /** The release config for the lab (service `hello`) and where it was written. */
  configYaml: string;
  configFile: string;
  /** Environment the worker needs for the config's secret references. */
  env: Record<string, string>;
  /** The Docker-compatible engine, for tests and status. */
  docker: Docker;
  /** Remove the lab's containers, stop its daemons and webhook; data stays. `removeImages` also deletes the engine's copies of images from the lab registry. */
  stop(opts?: { removeImages?: boolean }): Promise<void>;
}

interface LabState {
  id: string;
  ownerPid?: number;
  pids?: Record<string, number>;
  dir: string;
  engineSocket?: string;
  managedEngine?: boolean;
  registryPort?: number;
  sshPort?: number;
  stagingPort?: number;
  productionPort?: number;
  webhookToken?: string;
  containers?: string[];
  startedAt?: string;
}

let current: Lab | undefined;

function stateFile(dir: string): string {
  return path.join(dir, 'lab.json');
}

function readState(dir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function writeState(state: LabState): void {
  writeFileSync(stateFile(state.dir), `${JSON.stringify(state, null, 2)}\n`);
}

function which(cmd: string): boolean {
  if (cmd.includes('/')) return existsSync(cmd);
  return (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').some((d) => existsSync(path.join(d, cmd)));
}

/** The binaries the lab runs; a missing one is a loud error naming the fix. */
export function checkLabPrerequisites(opts: { managedEngine: boolean }): void {
  const needed = ['docker-registry', '/usr/sbin/sshd', 'ssh-keygen', 'git', 'docker', ...(opts.managedEngine ? ['podman'] : [])];
  const missing = needed.filter((c) => !which(c));
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) missing.push('busybox (busybox-static)');
  if (missing.length > 0) {
    throw new Error(`The release lab needs ${missing.join(', ')}, not found on this machine; ${PROVISION_HINT} (installs podman, ` +
      'docker-registry, openssh-server, busybox-static and writes the container config), then retry. The `docker` CLI is the client ' +
      'the production host uses to reach the engine.');
  }
}

function registryRange(opts: LabOptions): { first: number; count: number } {
  if (opts.registryPorts) return opts.registryPorts;
  const first = Number(process.env.GANTRY_LAB_REGISTRY_PORT ?? 5005);
  const count = Number(process.env.GANTRY_LAB_REGISTRY_PORTS ?? 20);
  return { first, count };
}

/** Pids recorded in a state file belong to the lab only while their command line still names its directory. */
function labPidAlive(pid: number | undefined, dir: string): pid is number {
  if (!pid || !isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return true;
  }
}

/** Remove the lab's containers, through the engine's API when it answers, else with the podman CLI. */
async function removeContainers(names: string[], docker: Docker | undefined): Promise<string[]> {
  const removed: string[] = [];
  for (const name of names) {
    if (docker) {
      try {
        await docker.getContainer(name).remove({ force: true });
        removed.push(name);
        continue;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) continue;
      }
    }
    if (which('podman')) {
      try {
        const out = execFileSync('podman', ['rm', '--force', '--ignore', '--time', '2', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        if (out.trim()) removed.push(name);
      } catch {
        // reported by status if still there
      }
    }
  }
  return removed;
}

/**
 * Drop the engine's references to images of the lab registry. Never by id and never forced: the engine's storage
 * is shared (other labs, other users), identical builds share an image id, and a forced removal would also
 * delete every container running that image. Tags are untagged; an image is deleted only when all its names are
 * the lab registry's and no container uses it.
 */
async function removeRegistryImages(docker: Docker, host: string): Promise<void> {
  const images = await docker.listImages().catch(() => []);
  const ours = (r: string) => r.startsWith(`${host}/`);
  for (const img of images) {
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    const digests = (img.RepoDigests ?? []).filter((d) => !d.startsWith('<none>'));
    const refs = [...tags, ...digests];
    if (!refs.some(ours)) continue;
    // Untag first; then, when every name was the lab's, drop the digest names too (the last one deletes the image).
    for (const t of tags.filter(ours)) await docker.getImage(t).remove().catch(() => undefined);
    if (refs.every(ours)) {
      for (const d of digests) await docker.getImage(d).remove().catch(() => undefined);
    }
  }
}

async function startEngine(dir: string, log: (l: string) => void): Promise<{ daemon: Daemon; socketPath: string }> {
  const socketPath = path.join(dir, 'run', 'podman.sock');
  if (socketPath.length > 100) {
    throw new Error(`The lab directory ${dir} is too deep for a unix socket path (${socketPath.length} > 100 characters); pass a shorter --dir.`);
  }
  rmSync(socketPath, { force: true });
  const daemon = startDaemon('podman system service', 'podman', ['system', 'service', '--time=0', `unix://${socketPath}`], path.join(dir, 'logs', 'podman.log'));
  const docker = new Docker({ socketPath });
  await waitUntilReady(daemon, `answering on ${socketPath}`, async () => {
    await docker.ping();
    return true;
  });
  log(`engine: Podman API on unix://${socketPath}`);
  return { daemon, socketPath };
}

async function startRegistry(dir: string, range: { first: number; count: number }, preferred: number | undefined, log: (l: string) => void): Promise<{ daemon: Daemon; port: number }> {
  const ports = [...new Set([...(preferred ? [preferred] : []), ...Array.from({ length: range.count }, (_, i) => range.first + i)])];
  const configFile = path.join(dir, 'registry', 'config.yml');
  const tried: string[] = [];
  for (const port of ports) {
    if (port < range.first || port >= range.first + range.count) continue;
    if (!(await canBind(port))) {
      tried.push(`${port} (in use)`);
      continue;
    }
    writeFileSync(configFile, stringify({
      version: 0.1,
      // The access log is on: tests count pushes from it (Lab.registry.requests).
      log: { level: 'warn', accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: path.join(dir, 'registry', 'data') }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}` },
    }));
    const daemon = startDaemon('docker-registry', 'docker-registry', ['serve', configFile], path.join(dir, 'logs', 'registry.log'));
    try {
      await waitUntilReady(daemon, `answering on 127.0.0.1:${port}`, async () => (await fetch(`http://127.0.0.1:${port}/v2/`)).status === 200, 15_000);
      log(`registry: http://127.0.0.1:${port}`);
      return { daemon, port };
    } catch (err) {
      await daemon.stop();
      tried.push(`${port} (${(err as Error).message.split('\n').pop()})`);
    }
  }
  throw new Error(`No lab registry port was free in ${range.first}-${range.first + range.count - 1}: ${tried.join('; ')}. ` +
    'Stop other labs (`npx tsx scripts/lab/lab.ts status`), or choose another range with GANTRY_LAB_REGISTRY_PORT and ' +
    `GANTRY_LAB_REGISTRY_PORTS and ${PROVISION_HINT} again so podman trusts it.`);
}

function ensureSshKeys(sshDir: string): { clientKey: string; hostKey: string; fingerprint: string } {
  const clientKey = path.join(sshDir, 'id_ed25519');
  const hostKey = path.join(sshDir, 'ssh_host_ed25519_key');
  for (const [file, comment] of [[clientKey, 'gantry-lab-deployer'], [hostKey, 'gantry-lab-host']] as const) {
    if (!existsSync(file)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdio: 'ignore' });
    chmodSync(file, 0o600);
  }
  writeFileSync(path.join(sshDir, 'authorized_keys'), readFileSync(`${clientKey}.pub`, 'utf8'), { mode: 0o600 });
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`], { encoding: 'utf8' }).split(' ')[1] ?? '';
  return { clientKey, hostKey, fingerprint: fp };
}

/** The lab worker's release-signing key (ed25519, a secret the worker reads by reference). */
export function ensureReleaseSigningKey(keysDir: string): string {
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const file = path.join(keysDir, 'release-signing');
  if (!existsSync(file)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'gantry-lab-worker', '-f', file], { stdio: 'ignore' });
  chmodSync(file, 0o600);
  return file;
}

/** The lab's people (operator, alice, bob) with ed25519 signing keys, and the allowed_signers file listing them. */
export function ensurePeopleKeys(keysDir: string): Lab['people'] {
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const people = { operator: path.join(keysDir, 'operator'), alice: path.join(keysDir, 'alice'), bob: path.join(keysDir, 'bob') };
  const lines = ['# The lab\'s people and their signing keys (written by src/lab/lab.ts)'];
  for (const [name, file] of Object.entries(people)) {
    if (!existsSync(file)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@gantry-lab`, '-f', file], { stdio: 'ignore' });
    chmodSync(file, 0o600);
    lines.push(`${name} namespaces="gantry" ${readFileSync(`${file}.pub`, 'utf8').trim()}`);
  }
  const allowedSigners = path.join(keysDir, 'allowed_signers');
  writeFileSync(allowedSigners, `${lines.join('\n')}\n`);
  return { ...people, allowedSigners };
}

/** The lab sshd's public host key line (`ssh-ed25519 AAAA… gantry-lab-host`), which the lab config pins on its host. */
function labHostPublicKey(sshDir: string): string {
  return readFileSync(path.join(sshDir, 'ssh_host_ed25519_key.pub'), 'utf8').trim();
}

async function startSshd(dir: string, port: number, hostKey: string, user: string, log: (l: string) => void): Promise<Daemon> {
  const sshDir = path.join(dir, 'ssh');
  const configFile = path.join(sshDir, 'sshd_config');
  writeFileSync(configFile, [
    '# The lab\'s "production host" (written by src/lab/lab.ts)',
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${path.join(sshDir, 'authorized_keys')}`,
    `PidFile ${path.join(dir, 'run', 'sshd.pid')}`,
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    `AllowUsers ${user}`,
    'PrintMotd no',
    'LogLevel INFO',
    '',
  ].join('\n'));
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const daemon = startDaemon('sshd', '/usr/sbin/sshd', ['-D', '-e', '-f', configFile], path.join(dir, 'logs', 'sshd.log'));
  await waitUntilReady(daemon, `listening on 127.0.0.1:${port}`, () => tcpOpen(port), 15_000);
  log(`ssh: ${user}@127.0.0.1:${port}`);
  return daemon;
}

/** One request the lab registry answered (its access log line). */
export interface RegistryRequest {
  method: string;
  path: string;
  status: number;
}

/** The requests in the registry's log (the combined access-log lines it writes beside its own messages). */
export function registryRequests(logFile: string): RegistryRequest[] {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  const out: RegistryRequest[] = [];
  for (const m of text.matchAll(/"([A-Z]+) (\/v2\/\S*) HTTP\/[\d.]+" (\d{3})/g)) out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]) });
  return out;
}

/** The manifests a filesystem-backed registry stores for `name`: its revisions directory, one entry per digest. */
function storedManifests(registryDir: string, name: string): string[] {
  const dir = path.join(registryDir, 'data', 'docker', 'registry', 'v2', 'repositories', name, '_manifests', 'revisions', 'sha256');
  try {
    return readdirSync(dir).map((d) => `sha256:${d}`).sort();
  } catch {
    return [];
  }
}

/** A container event on the engine (create, start, die, remove, …), with the container's name and image. */
export interface ContainerEvent {
  action: string;
  id: string;
  name: string;
  image: string;
  /** Milliseconds since the epoch, as the engine stamped it. */
  time: number;
}

export interface ContainerWatch {
  /** The events seen so far, in order. */
  events(): ContainerEvent[];
  /** Resolves with the first event (already seen or still to come) that `pred` accepts. */
  next(pred: (e: ContainerEvent) => boolean, timeoutMs?: number): Promise<ContainerEvent>;
  stop(): void;
}

/**
 * Follow the engine's container events (its /events stream), so a test counts creates and starts on the engine
 * itself and can act the moment one happens (e.g. kill a worker right after it created a container).
 */
export async function watchContainers(docker: Docker): Promise<ContainerWatch> {
  const seen: ContainerEvent[] = [];
  const keys = new Set<string>();
  const waiters = new Set<{ pred: (e: ContainerEvent) => boolean; resolve: (e: ContainerEvent) => void }>();
  const stream = (await docker.getEvents({ filters: { type: ['container'] } })) as NodeJS.ReadableStream & { destroy(): void };
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      const e = JSON.parse(line) as { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; from?: string; time?: number; timeNano?: number };
      const event: ContainerEvent = {
        action: e.Action ?? e.status ?? '',
        id: e.Actor?.ID ?? e.id ?? '',
        name: e.Actor?.Attributes?.name ?? '',
        image: e.Actor?.Attributes?.image ?? e.from ?? '',
        time: e.timeNano ? Math.round(e.timeNano / 1e6) : (e.time ?? 0) * 1000,
      };
      // Podman's stream can deliver one event twice (same action, container and nanosecond; its own event log
      // holds it once): keep it once.
      const key = `${event.action} ${event.id} ${e.timeNano ?? e.time}`;
      if (keys.has(key)) continue;
      keys.add(key);
      seen.push(event);
      for (const w of [...waiters]) {
        if (w.pred(event)) {
          waiters.delete(w);
          w.resolve(event);
        }
      }
    }
  });
  stream.on('error', () => undefined);
  return {
    events: () => [...seen],
    next: (pred, timeoutMs = 120_000) => {
      const found = seen.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (e: ContainerEvent) => { clearTimeout(timer); resolve(e); } };
        const timer = setTimeout(() => { waiters.delete(w); reject(new Error(`no such container event on the engine within ${timeoutMs / 1000}s`)); }, timeoutMs);
        waiters.add(w);
      });
    },
    stop: () => stream.destroy(),
  };
}

function labConfig(lab: Omit<Lab, 'configYaml' | 'configFile' | 'env' | 'docker' | 'stop' | 'webhook' | 'faults'>, envFile: string, windows: LabOptions['windows']): string {
  const checks = (url: string) => [
    { name: 'health', url: `${url}/health`, expect: { status: 200 } },
    { name: 'version', url: `${url}/version`, expect: { status: 200, json: { path: 'version', equals: '{version}' } } },
  ];
  const container = { envFile, restart: 'unless-stopped' };
  const config = {
    allowedSigners: { file: lab.people.allowedSigners },
    services: {
      hello: {
        repo: { url: lab.repo.url, branch: lab.repo.branch, changelog: 'CHANGELOG.md' },
        image: { registry: lab.registry.host, name: 'hello' },
        build: { kind: 'docker', dockerfile: 'Dockerfile', context: '.', args: { GREETING: 'hello from the gantry lab' }, socketPath: lab.engine.socketPath },
        environments: {
          staging: {
            deploy: { kind: 'docker', container: lab.staging.container, ports: [`127.0.0.1:${lab.staging.port}:80`], ...container, socketPath: lab.engine.socketPath },
            checks: checks(lab.staging.url),
            window: windows?.staging ?? '30s',
          },
          production: {
            deploy: {
              kind: 'ssh',
              container: lab.production.container,
              ports: [`127.0.0.1:${lab.production.port}:80`],
              ...container,
              // The production host's key is pinned, as on a real host (its /etc/ssh/ssh_host_ed25519_key.pub).
              hosts: [{ host: lab.ssh.host, port: lab.ssh.port, user: lab.ssh.user, hostKey: labHostPublicKey(path.join(lab.dir, 'ssh')) }],
              privateKey: { file: lab.ssh.privateKeyFile },
              containerCli: 'docker',
              cliEnv: { DOCKER_HOST: lab.engine.dockerHost },
            },
            checks: checks(lab.production.url),
            window: windows?.production ?? '30s',
          },
        },
        approvals: { approvers: ['alice', 'bob'], required: 1, identity: 'signed' },
        operators: ['operator', 'alice', 'bob'],
        announce: {
          webhook: { env: WEBHOOK_ENV },
          auditLog: path.join(lab.dir, 'audit.jsonl'),
          artifactsDir: path.join(lab.dir, 'artifacts', '{service}', '{version}'),
          signingKey: { file: lab.releaseSigningKey },
        },
      },
    },
  };
  return `# The release lab's config (written by src/lab/lab.ts for the lab in ${lab.dir}).\n` +
    `# The webhook URL is a secret reference: the worker needs ${WEBHOOK_ENV} in its environment.\n${stringify(config)}`;
}

export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const log = opts.log ?? (() => undefined);
  const dir = path.resolve(opts.dir ?? path.join('.gantry', 'lab'));
  const managed = !opts.engineSocket;
  checkLabPrerequisites({ managedEngine: managed });
  for (const sub of ['run', 'logs', 'registry', 'ssh', 'git', 'webhook', 'artifacts', 'keys']) mkdirSync(path.join(dir, sub), { recursive: true });

  const previous = readState(dir);
  if (previous?.ownerPid && previous.ownerPid !== process.pid && isAlive(previous.ownerPid) &&
      Object.values(previous.pids ?? {}).some((p) => labPidAlive(p, dir))) {
    throw new Error(`A lab is already running in ${dir} (process ${previous.ownerPid}). Use it, stop that process, ` +
      `or run \`npx tsx scripts/lab/lab.ts cleanup --dir ${dir}\` if it is stuck.`);
  }
  if (previous) await cleanupLab(dir, { quiet: true });

  const state: LabState = { ...previous, id: previous?.id ?? randomBytes(3).toString('hex'), dir, ownerPid: process.pid, pids: {}, startedAt: new Date().toISOString() };
  const daemons: Daemon[] = [];
  let webhook: WebhookReceiver | undefined;
  const abort = async () => {
    await webhook?.close();
    for (const d of daemons.reverse()) await d.stop();
  };
  try {
    let socketPath: string;
    if (managed) {
      const engine = await startEngine(dir, log);
      daemons.push(engine.daemon);
      state.pids!.engine = engine.daemon.pid;
      socketPath = engine.socketPath;
    } else {
      socketPath = opts.engineSocket!;
      await new Docker({ socketPath }).ping().catch((err: Error) => {
        throw new Error(`The container engine at ${socketPath} did not answer (${err.message}); start it, or leave engineSocket unset to use Podman.`);
      });
    }
    state.engineSocket = socketPath;
    state.managedEngine = managed;
    const docker = new Docker({ socketPath });
    if (await ensureBaseImage(docker)) log(`base image: imported ${BASE_IMAGE} from busybox-static`);

    const registry = await startRegistry(dir, registryRange(opts), previous?.registryPort, log);
    daemons.push(registry.daemon);
    state.pids!.registry = registry.daemon.pid;
    state.registryPort = registry.port;

    const repo = ensureSampleRepo(path.join(dir, 'git'));
    log(`repo: ${repo.url} (main = ${repo.good.version} ${repo.good.commit.slice(0, 8)}, broken = ${repo.broken.version} ${repo.broken.commit.slice(0, 8)})`);

    const user = os.userInfo().username;
    const keys = ensureSshKeys(path.join(dir, 'ssh'));
    const sshPort = await freePort(previous?.sshPort);
    const sshd = await startSshd(dir, sshPort, keys.hostKey, user, log);
    daemons.push(sshd);
    state.pids!.sshd = sshd.pid;
    state.sshPort = sshPort;

    state.webhookToken ??= randomBytes(12).toString('hex');
    webhook = await startWebhookReceiver({ file: path.join(dir, 'webhook', 'requests.jsonl'), token: state.webhookToken });
    log(`webhook: ${webhook.url.replace(state.webhookToken, '***')} → ${webhook.file}`);

    state.stagingPort = await freePort(previous?.stagingPort);
    state.productionPort = await freePort(previous?.productionPort === state.stagingPort ? undefined : previous?.productionPort);
    if (state.productionPort === state.stagingPort) state.productionPort = await freePort();
    const staging = { container: `hello-staging-${state.id}`, port: state.stagingPort, url: `http://127.0.0.1:${state.stagingPort}` };
    const production = { container: `hello-production-${state.id}`, port: state.productionPort, url: `http://127.0.0.1:${state.productionPort}` };
    state.containers = [staging.container, production.container];

    const envFile = path.join(dir, 'hello.env');
    writeFileSync(envFile, `# Environment of the lab's hello containers\nLAB_ID=${state.id}\nGREETING=hello from the gantry lab\n`);

    const partial = {
      id: state.id,
      dir,
      engine: { socketPath, dockerHost: `unix://${socketPath}`, managed },
      registry: {
        host: `127.0.0.1:${registry.port}`,
        port: registry.port,
        url: `http://127.0.0.1:${registry.port}`,
        manifests: (name: string) => storedManifests(path.join(dir, 'registry'), name),
        requests: () => registryRequests(path.join(dir, 'logs', 'registry.log')),
      },
      baseImage: BASE_IMAGE,
      repo: {
        ...repo,
        moveBranch: (branch: string, commit: string) => moveBranch(repo, branch, commit),
        pushes: () => acceptedPushes(repo),
        offered: () => offeredPushes(repo),
        setPushDelay: (seconds: number) => setPushDelay(repo, seconds),
      },
      ssh: { host: '127.0.0.1', port: sshPort, user, privateKeyFile: keys.clientKey, hostKeyFingerprint: keys.fingerprint },
      people: ensurePeopleKeys(path.join(dir, 'keys')),
      releaseSigningKey: ensureReleaseSigningKey(path.join(dir, 'keys')),
      staging,
      production,
    };
    const configYaml = labConfig(partial, envFile, opts.windows);
    const configFile = path.join(dir, 'gantry.yaml');
    writeFileSync(configFile, configYaml);
    loadConfig(configFile); // the generated config (and its allowed signers) must pass the same validation as a user's
    writeState(state);

    const hook = webhook;
    /** Stop one of the lab's daemons; `restart` starts it again on its port and puts it in its place. */
    const replaceDaemon = async (which: 'registry' | 'sshd', restart: () => Promise<Daemon>) => {
      const i = daemons.findIndex((d) => d.pid === state.pids![which]);
      const fresh = await restart();
      if (i >= 0) daemons[i] = fresh;
      else daemons.push(fresh);
      state.pids![which] = fresh.pid;
      writeState(state);
    };
    // While a daemon is stopped its port stays the lab's (connections are reset), so another lab cannot take it.
    const held: Partial<Record<'registry' | 'sshd', () => Promise<void>>> = {};
    const stopDaemon = async (which: 'registry' | 'sshd', port: number) => {
      await daemons.find((d) => d.pid === state.pids![which])?.stop();
      held[which] ??= await holdPort(port);
    };
    const release = async (which: 'registry' | 'sshd') => {
      await held[which]?.();
      delete held[which];
    };
    const faults: Lab['faults'] = {
      stopRegistry: () => stopDaemon('registry', registry.port),
      startRegistry: () => replaceDaemon('registry', async () => {
        await release('registry');
        return (await startRegistry(dir, { first: registry.port, count: 1 }, registry.port, log)).daemon;
      }),
      stopSshd: () => stopDaemon('sshd', sshPort),
      startSshd: () => replaceDaemon('sshd', async () => {
        await release('sshd');
        return startSshd(dir, sshPort, keys.hostKey, user, log);
      }),
    };
    const lab: Lab = {
      ...partial,
      faults,
      webhook: hook,
      configYaml,
      configFile,
      env: { [WEBHOOK_ENV]: hook.url },
      docker,
      stop: async (stopOpts = {}) => {
        // With each container, the ones the deployer keeps beside it during a swap (src/activities/deployer.ts).
        await removeContainers((state.containers ?? []).flatMap((c) => [c, `${c}-gantry-previous`, `${c}-gantry-failed`]), docker);
        if (stopOpts.removeImages) await removeRegistryImages(docker, partial.registry.host);
        await hook.close();
        await release('registry');
        await release('sshd');
        for (const d of [...daemons].reverse()) await d.stop();
        writeState({ ...state, ownerPid: undefined, pids: {} });
        if (current === lab) current = undefined;
        log(`stopped the lab in ${dir} (data kept)`);
      },
    };
    current = lab;
    return lab;
  } catch (err) {
    await abort();
    writeState({ ...state, ownerPid: undefined, pids: {} });
    throw err;
  }
}

/** Stop a lab (the last one started by this process by default): its containers, daemons and webhook. Data stays. */
export async function stopLab(lab: Lab | undefined = current): Promise<void> {
  await lab?.stop();
}

export interface LabStatus {
  dir: string;
  id?: string;
  running: boolean;
  ownerPid?: number;
  daemons: { name: string; pid: number; alive: boolean }[];
  containers: { name: string; state: string; image: string }[];
  registry?: string;
  ssh?: string;
  config?: string;
}

/** What a lab directory holds and what of it is running. */
export async function labStatus(dirArg = path.join('.gantry', 'lab')): Promise<LabStatus> {
  const dir = path.resolve(dirArg);
  const state = readState(dir);
  if (!state) return { dir, running: false, daemons: [], containers: [] };
  const daemons = Object.entries(state.pids ?? {}).map(([name, pid]) => ({ name, pid, alive: labPidAlive(pid, dir) }));
  const containers: LabStatus['containers'] = [];
  const socket = state.engineSocket;
  const engineUp = socket && existsSync(socket) && (await new Docker({ socketPath: socket }).ping().then(() => true, () => false));
  for (const name of state.containers ?? []) {
    if (engineUp) {
      try {
        const c = await new Docker({ socketPath: socket }).getContainer(name).inspect();
        containers.push({ name, state: c.State.Status, image: c.Config.Image });
      } catch {
        // not there
      }
    } else if (which('podman')) {
      try {
        const out = execFileSync('podman', ['inspect', '--type', 'container', '--format', '{{.State.Status}} {{.ImageName}}', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        const [st, image] = out.trim().split(' ');
        containers.push({ name, state: st ?? '?', image: image ?? '?' });
      } catch {
        // not there
      }
    }
  }
  return {
    dir,
    id: state.id,
    running: daemons.some((d) => d.alive),
    ownerPid: state.ownerPid,
    daemons,
    containers,
    ...(state.registryPort ? { registry: `127.0.0.1:${state.registryPort}` } : {}),
    ...(state.sshPort ? { ssh: `127.0.0.1:${state.sshPort}` } : {}),
    ...(existsSync(path.join(dir, 'gantry.yaml')) ? { config: path.join(dir, 'gantry.yaml') } : {}),
  };
}

/**
 * Remove what a lab left behind: its containers, and daemons a dead process did not stop. With `purge`, also its
 * data directory (registry, repository, keys, logs).
 */
export async function cleanupLab(dirArg = path.join('.gantry', 'lab'), opts: { purge?: boolean; quiet?: boolean } = {}): Promise<{ removedContainers: string[]; stoppedDaemons: string[] }> {
  const dir = path.resolve(dirArg);
  const state = readState(dir);
  const stoppedDaemons: string[] = [];
  let removedContainers: string[] = [];
  if (state) {
    const socket = state.engineSocket;
    const docker = socket && existsSync(socket) ? new Docker({ socketPath: socket }) : undefined;
    const engineUp = docker ? await docker.ping().then(() => true, () => false) : false;
    removedContainers = await removeContainers(state.containers ?? [], engineUp ? docker : undefined);
    for (const [name, pid] of Object.entries(state.pids ?? {})) {
      if (labPidAlive(pid, dir)) {
        killGroup(pid, 'SIGTERM');
        for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
        if (isAlive(pid)) killGroup(pid, 'SIGKILL');
        stoppedDaemons.push(name);
      }
    }
    writeState({ ...state, ownerPid: undefined, pids: {} });
  }
  if (opts.purge) rmSync(dir, { recursive: true, force: true });
  if (!opts.quiet && stoppedDaemons.length > 0) process.stderr.write(`lab: stopped ${stoppedDaemons.join(', ')} left running in ${dir}\n`);
  return { removedContainers, stoppedDaemons };
}

export { logTail };
