/** `gantry start <service> <version>`: start a release (or print its plan), optionally follow it to the end. */
import os from 'node:os';
import { Command, Option } from 'commander';
import { formatPlan } from '../client/format';
import { releaseAddress } from '../client/release';
import { prepareRelease, startRelease } from '../client/start';
import { planRelease } from '../shared/plan';
import { out, webUrlFor, withClient } from './common';
import { followAndExit } from './following';

interface StartOptions {
  config: string;
  dryRun?: boolean;
  requestedBy: string;
  wait?: boolean;
  follow?: boolean;
  approveAs?: string;
  reason?: string;
  stopAtGate?: boolean;
  json?: boolean;
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
  return new Command('start')
    .summary('start a release (or print its plan with --dry-run)')
    .description(
      'Start the release of <service> at <version> from the config file: preflight, tag, build, staging and smoke, ' +
        'then the approval gate, production and health, then the announcement. The release runs on the server; ' +
        'this command returns once it started, or with --wait follows it.',
    )
    .argument('<service>', 'service name from the config, e.g. hello')
    .argument('<version>', 'version to release (semver, with or without a leading v), e.g. 1.2.3')
    .addOption(new Option('-c, --config <file>', 'release config (YAML)').env('GANTRY_CONFIG').default('gantry.yaml'))
    .option('--dry-run', 'print the plan (steps, targets, image, checks) and start nothing')
    .option('--requested-by <name>', 'who asks for the release, recorded in it', defaultUser())
    .option('-w, --wait', 'follow the release: stage changes and step progress; at the gate, print the Web UI address and the approve command; exit with the outcome\'s code')
    .option('-f, --follow', 'same as --wait')
    .option('--approve-as <name>', 'approve as <name> as soon as the gate opens (for non-interactive runs; implies --wait)')
    .option('--reason <text>', 'reason recorded with --approve-as')
    .option('--stop-at-gate', 'with --wait: return (exit 0) once the gate is open instead of waiting for the end')
    .option('--json', 'print the plan (--dry-run) or the started release as JSON')
    .action(async (service: string, version: string, opts: StartOptions, cmd: Command) => {
      const input = prepareRelease({ configFile: opts.config, service, version, requestedBy: opts.requestedBy, dryRun: Boolean(opts.dryRun) });
      const configFlag = opts.config === 'gantry.yaml' && !process.env.GANTRY_CONFIG ? '' : ` --config ${opts.config}`;
      if (opts.dryRun) {
        const plan = planRelease(input);
        if (opts.json) out.json({ plan, input });
        else out.print(formatPlan(plan, input, `gantry start ${input.service} ${input.version}${configFlag}`, out.style));
        return;
      }
      const follow = Boolean(opts.wait || opts.follow || opts.approveAs || opts.stopAtGate);
      await withClient(cmd, async (gc) => {
        const handle = await startRelease(gc, input);
        const addr = releaseAddress(input.service, input.version, undefined);
        const webUrl = webUrlFor(gc, handle.workflowId);
        if (opts.json && !follow) {
          out.json({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId, namespace: gc.namespace, address: gc.settings.address, webUrl });
          return;
        }
        const st = out.style;
        out.print(st.bold(`Started release ${addr.label}`) + ` requested by ${input.requestedBy} (workflow ${handle.workflowId}, run ${handle.firstExecutionRunId})`);
        out.print(`  server   ${gc.settings.address}, namespace ${gc.namespace}`);
        if (webUrl) out.print(`  Web UI   ${webUrl}`);
        if (!follow) {
          const a = input.config.approvals;
          out.print(`  follow   gantry status ${addr.args}`);
          out.print(`  history  gantry history ${addr.args}`);
          out.print(`After staging passes its smoke checks it waits for ${a.required} approval(s) from ${a.approvers.join(', ')}:`);
          out.print(`  gantry approve ${addr.args} --as <name>`);
          return;
        }
        out.print('');
        await followAndExit(gc, addr, {
          ...(opts.approveAs ? { approveAs: opts.approveAs } : {}),
          ...(opts.reason ? { approveReason: opts.reason } : {}),
          stopAtGate: Boolean(opts.stopAtGate),
        });
      });
    });
}
