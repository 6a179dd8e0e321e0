/** `gantry start <service> <version>`: start a release (or print its plan), optionally follow it to the end. */
import os from 'node:os';
import { Command, Option } from 'commander';
// What runs before the release is started loads neither the Temporal SDK nor the config schema: the start goes
// out over the server's HTTP API where it can, and the SDK loads while the release's first steps run.
import { formatPlan } from '../client/format';
import { httpApiFor, startOverHttp, type StartCall } from '../client/http-api';
import { releaseAddress } from '../client/snapshot';
import { buildStartRequest, checkRequest, localDigest, startCall } from '../client/start-request';
import type { LocalCopy, StartedRelease } from '../client/start';
import { approveCommand, describeNeeds } from '../shared/gate-rules';
import { temporalSettings } from '../connection';
import { addSigningOptions, err, globals, out, setExitCode, signingOptions, webUrlFor, withClient, type SigningFlags } from './common';
import { ExitCode } from './exit-codes';
import { UsageError } from '../client/errors';

/** How long the start over the HTTP API may take before the SDK sends it again (a lost answer is still one run). */
const HTTP_START_TIMEOUT_MS = 10_000;

interface StartOptions extends SigningFlags {
  config?: string;
  dryRun?: boolean;
  requestedBy: string;
  wait?: boolean;
  follow?: boolean;
  approveAs?: string;
  approveKey?: string;
  reason?: string;
  stopAtGate?: boolean;
  json?: boolean;
  unsigned?: boolean;
  hotfix?: boolean;
}

function defaultUser(): string {
  if (process.env.USER) return process.env.USER;
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

export function startCommand(): Command {
  const cmd = new Command('start')
    .summary('start a release (or print its plan with --dry-run)')
    .description(
      'Start the release of <service> at <version>: the worker resolves the plan from its own release config, then runs ' +
        'preflight, tag, build, staging and smoke, the approval gate, production and health, and the announcement. Only ' +
        'the request is sent (service, version, requester), signed with your SSH key. With --dry-run it prints the plan ' +
        'from a local config file and starts nothing. Returns once started, or with --wait follows it.',
    )
    .argument('<service>', 'service name from the worker\'s config, e.g. hello')
    .argument('<version>', 'version to release (semver, with or without a leading v), e.g. 1.2.3')
    .addOption(new Option('-c, --config <file>', 'a local copy of the release config: for --dry-run, and to check it matches the worker\'s').env('GANTRY_CONFIG'))
    .option('--dry-run', 'print the plan from the local config (steps, targets, image, checks) and start nothing; needs no server')
    .option('--requested-by <name>', 'who asks for the release (signed as this principal)', defaultUser())
    .option('--unsigned', 'do not sign the start (accepted only by services with approvals.identity: declared)')
    .option('-w, --wait', 'follow the release: stage changes and step progress; at the gate, print the Web UI address and the approve command; exit with the outcome\'s code')
    .option('-f, --follow', 'same as --wait')
    .option('--approve-as <name>', 'approve as <name> as soon as the gate opens (signed with --key; for non-interactive runs; implies --wait)')
    .option('--approve-key <file>', 'the key --approve-as signs with (default: --key)')
    .option('--reason <text>', 'reason recorded with --approve-as, or why a --hotfix skips the environments before production')
    .option('--hotfix', 'skip the environments before production (where the service\'s config allows hotfixes; needs --reason, passes the hotfix gate rule)')
    .option('--stop-at-gate', 'with --wait: return (exit 0) once the gate is open instead of waiting for the end')
    .option('--json', 'print the plan (--dry-run) or the started release as JSON');
  addSigningOptions(cmd, 'start');
  return cmd.action(async (service: string, version: string, opts: StartOptions, c: Command) => {
    const req = checkRequest({ service, version, requestedBy: opts.requestedBy });
    if (opts.dryRun) {
      const { localConfig, localPlanInput } = require('../client/start') as typeof import('../client/start');
      const { planRelease } = require('../shared/plan') as typeof import('../shared/plan');
      const input = localPlanInput(localConfig(opts.config, true)!, req);
      const plan = planRelease(input);
      if (opts.json) out.json({ plan, input });
      else out.print(formatPlan(plan, input, `gantry start ${req.service} ${req.version}`, out.style));
      return;
    }
    if (opts.hotfix && !opts.reason?.trim()) {
      throw new UsageError('--hotfix needs --reason "…": the reason is shown at the gate, kept in the record and announced.');
    }
    // Only compared with the worker's config, by its hash: validated only when the worker's hash differs (an
    // identical copy is the worker's own valid config). A missing or invalid local copy never stops the start.
    const configFile = opts.config ?? 'gantry.yaml';
    const explicit = opts.config !== undefined;
    let copy = localDigest(configFile, explicit);
    // The full check, when it has run: the one the copy gets after the start if the worker's hash differs.
    let checked: LocalCopy | undefined;
    if (copy && !copy.sha256 && !copy.problem) {
      // Not even hashable (YAML errors, an odd allowedSigners): the full check says why, now.
      checked = (require('../client/start') as typeof import('../client/start')).localCopy(configFile, explicit);
      copy = checked?.loaded ? { file: configFile, sha256: checked.loaded.sha256 } : { file: configFile, problem: checked?.problem ?? 'cannot be read' };
    }
    if (copy?.problem) {
      err.print(err.style.warn(`gantry: your local config ${copy.file} ${copy.problem}; it is not compared with the worker's, whose config decides the plan.`));
    }
    const signing = signingOptions(opts);
    const request = await buildStartRequest(req, {
      signing, requireSignature: false, ...(copy?.sha256 ? { localSha256: copy.sha256 } : {}), ...(opts.hotfix ? { hotfix: { reason: opts.reason!.trim() } } : {}),
    });
    if (opts.unsigned) delete request.signed;
    if (!request.signed && !opts.unsigned) {
      err.print(err.style.warn('gantry: no SSH key to sign with; the start goes unsigned and is accepted only where approvals.identity is declared ' +
        '(pass --key FILE, set GANTRY_SIGNING_KEY, or load a key into ssh-agent).'));
    }
    const follow = Boolean(opts.wait || opts.follow || opts.approveAs || opts.stopAtGate);
    const call = startCall(request);
    const early = await startOverHttpFirst(c, call);
    await withClient(c, async (gc) => {
      const { awaitResolved, localCopy, startRelease } = require('../client/start') as typeof import('../client/start');
      const started = early ?? await startRelease(gc, request, call);
      const addr = releaseAddress(req.service, req.version, undefined);
      const webUrl = webUrlFor(gc, started.workflowId);
      const resolved = await awaitResolved(gc, started.workflowId, started.runId);
      // The worker resolved from another config than the local copy: is the copy itself valid?
      const differs = Boolean(copy?.sha256 && resolved?.input && resolved.input.configSha256 !== copy.sha256);
      const invalid = differs ? (checked ?? localCopy(configFile, explicit))?.problem : undefined;
      if (invalid) {
        err.print(err.style.warn(`gantry: your local config ${configFile} ${invalid}; the release runs on the worker's config, which decides the plan.`));
      }
      if (opts.json && !follow) {
        out.json({
          workflowId: started.workflowId, runId: started.runId, namespace: gc.namespace, address: gc.settings.address, webUrl,
          signed: Boolean(request.signed), resolved: resolved?.input ? { configSource: resolved.input.configSource, configSha256: resolved.input.configSha256 } : null,
          ...(resolved?.configNote ? { configNote: resolved.configNote } : {}), ...(resolved?.outcome ? { outcome: resolved.outcome, message: resolved.message } : {}),
        });
        if (resolved?.outcome) setExitCode(ExitCode.Failed);
        return;
      }
      const st = out.style;
      out.print(st.bold(`Started release ${addr.label}`) + ` requested by ${req.requestedBy}${request.signed ? ' (signed)' : ''} (workflow ${started.workflowId}, run ${started.runId})`);
      out.print(`  server   ${gc.settings.address}, namespace ${gc.namespace}`);
      if (webUrl) out.print(`  Web UI   ${webUrl}`);
      if (resolved?.input) {
        out.print(`  plan     resolved on the worker from ${resolved.input.configSource ?? 'its config'}`);
        if (resolved.configNote) out.print(st.warn(`  note     ${resolved.configNote}`));
        else if (copy?.sha256 && !differs) out.print(`           (your local ${copy.file} is the same file)`);
      } else if (resolved?.outcome) {
        err.print(st.bad(`The release ended at once (${resolved.outcome}): ${resolved.message}`));
        setExitCode(ExitCode.Failed);
        return;
      } else {
        out.print(st.warn('  plan     not resolved yet: no worker answered within 15 s (start one with `gantry worker --config …`)'));
      }
      if (!follow) {
        out.print(`  follow   gantry status ${addr.args}`);
        out.print(`  history  gantry history ${addr.args}`);
        if (resolved?.input) {
          const g = resolved.gate;
          const where = g.environment ? `${g.environment}'s gate` : 'the gate';
          out.print(`When the release reaches it, ${where} ${g.needs ?? describeNeeds([], { identity: g.identity, approvers: g.approvers, required: g.required, allowSelfApproval: false, operators: [], keys: [] })}` +
            `${g.rule ? ` (rule: ${g.rule})` : ''}:`);
          if (resolved.hotfix) out.print(st.warn(`  HOTFIX   skips ${resolved.hotfix.skipped.join(', ') || 'nothing'}: ${resolved.hotfix.reason}`));
          out.print(`  ${approveCommand(req.service, req.version, g)}`);
        }
        return;
      }
      out.print('');
      const { followAndExit } = require('./following') as typeof import('./following');
      await followAndExit(gc, addr, {
        ...(opts.approveAs ? { approveAs: opts.approveAs } : {}),
        ...(opts.reason ? { approveReason: opts.reason } : {}),
        signing: opts.approveKey ? { ...signing, key: opts.approveKey } : signing,
        stopAtGate: Boolean(opts.stopAtGate),
        runId: started.runId,
      });
    });
  });
}

/**
 * The start over the server's HTTP API, when the connection settings allow it (a local server or GANTRY_HTTP_API,
 * no TLS, API key or gRPC metadata): the run it began, or `undefined` and the SDK starts the release instead,
 * explaining any refusal. An attempt whose answer was lost is still one run: the SDK's start then finds the release
 * running, and the server's record of the request ids that started it names this one (`startRelease`).
 */
async function startOverHttpFirst(c: Command, call: StartCall): Promise<StartedRelease | undefined> {
  const g = globals(c);
  let settings: ReturnType<typeof temporalSettings>;
  try {
    settings = temporalSettings({ ...(g.address ? { address: g.address } : {}), ...(g.namespace ? { namespace: g.namespace } : {}) });
  } catch {
    return undefined; // unusable settings: connecting says which, with its exit code
  }
  const base = httpApiFor(settings);
  if (!base) return undefined;
  const started = await startOverHttp(base, settings.namespace, call, HTTP_START_TIMEOUT_MS);
  return started ? { workflowId: call.workflowId, runId: started.runId } : undefined;
}
