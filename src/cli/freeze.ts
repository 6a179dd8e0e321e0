/**
 * `gantry freeze`, `gantry unfreeze`, `gantry freezes`: stop releases of a service (or of every service) from
 * reaching an environment, lift it, and list what stops them now. Freezes and unfreezes are statements signed
 * with your SSH key, checked by the freeze registry against the worker's config (who may freeze what).
 */
import { Command } from 'commander';
import { loadConfig } from '../config/load';
import { freezeLine, freezeMessage, parseUntil, readFreezes, sendFreeze, windowLine, windowsNow } from '../client/freezes';
import { UsageError } from '../client/errors';
import type { FreezeKind, FreezeScope } from '../shared/freezes';
import { addSigningOptions, out, signingOptions, timeoutMs, withClient, type SigningFlags } from './common';

interface FreezeOptions extends SigningFlags {
  all?: boolean;
  env?: string;
  reason?: string;
  until?: string;
  as: string;
  timeout: string;
  json?: boolean;
}

function scopeOf(service: string | undefined, opts: FreezeOptions, kind: FreezeKind): FreezeScope {
  if (opts.all && service) throw new UsageError(`Give a service or --all, not both (\`gantry ${kind} ${service}\` or \`gantry ${kind} --all\`).`);
  if (!opts.all && !service) throw new UsageError(`Say what to ${kind}: a service (\`gantry ${kind} hello\`) or every service (\`gantry ${kind} --all\`).`);
  return { service: opts.all ? '*' : service!, ...(opts.env ? { environment: opts.env } : {}) };
}

function freezeLikeCommand(kind: FreezeKind): Command {
  const cmd = new Command(kind)
    .summary(kind === 'freeze' ? 'stop releases of a service (or all) from reaching an environment' : 'lift the freezes of a service (or all)')
    .description(kind === 'freeze'
      ? 'Freeze a service, or every service with --all, in one environment (--env) or all of them, until --until or until it is lifted. ' +
        'Releases wait at their gate while it lasts. Signed with your SSH key; the worker\'s config says who may freeze (freezers, else the service\'s operators; --all: the top-level freezers).'
      : 'Lift the freezes of a service (all its environments, or --env), or of every service with --all. Signed like freeze.')
    .argument('[service]', 'service name from the worker\'s config')
    .option('--all', `${kind} every service`)
    .option('--env <environment>', 'only this environment (default: every environment)')
    .requiredOption('--as <name>', 'your name as listed in the worker\'s allowedSigners');
  if (kind === 'freeze') {
    cmd.requiredOption('--reason <text>', 'why (shown to everyone whose release waits)')
      .option('--until <time>', 'when it ends by itself: an ISO time (2026-12-24T00:00:00Z) or a duration from now (2h, 3d); default: when it is lifted');
  } else {
    cmd.option('--reason <text>', 'why (kept in the registry\'s log)');
  }
  cmd.option('--timeout <seconds>', 'how long to wait for a worker to take it', '30').option('--json', 'print the registry\'s answer as JSON');
  addSigningOptions(cmd, kind).action(async (service: string | undefined, opts: FreezeOptions, c: Command) => {
    const scope = scopeOf(service, opts, kind);
    const until = opts.until ? parseUntil(opts.until) : undefined;
    const message = await freezeMessage(kind, scope, { as: opts.as, ...(opts.reason ? { reason: opts.reason } : {}), ...(until ? { until } : {}) }, signingOptions(opts));
    if (opts.print) {
      out.print(JSON.stringify(message));
      return;
    }
    const waitMs = timeoutMs(opts.timeout);
    await withClient(c, async (gc) => {
      const answer = await sendFreeze(gc.client, kind, message, { timeoutMs: waitMs });
      if (opts.json) {
        out.json(answer);
        return;
      }
      out.print(`${out.style.ok('✓')} ${answer.message}`);
      out.print(`  ${answer.active.length} freeze(s) in force. \`gantry freezes\` lists them.`);
    });
  });
  return cmd;
}

export const freezeCommand = (): Command => freezeLikeCommand('freeze');
export const unfreezeCommand = (): Command => freezeLikeCommand('unfreeze');

export function freezesCommand(): Command {
  return new Command('freezes')
    .summary('the freezes in force, and the deny windows open now')
    .description('Lists the freezes in force (from the freeze registry). With --config (a local copy of the worker\'s config) also the deny windows open now, for every service and environment.')
    .option('--config <file>', 'a local copy of the worker\'s config, for its deny windows')
    .option('--json', 'print them as JSON')
    .action(async (opts: { config?: string; json?: boolean }, c: Command) => {
      const windows = opts.config ? windowsNow(loadConfig(opts.config).config) : undefined;
      await withClient(c, async (gc) => {
        const view = await readFreezes(gc.client);
        const active = view?.active ?? [];
        if (opts.json) {
          out.json({ freezes: active, ...(windows ? { windows } : {}), log: view?.log ?? [] });
          return;
        }
        const now = Date.now();
        if (active.length === 0) out.print('No freeze is in force.');
        for (const f of active) out.print(freezeLine(f, now));
        if (windows) {
          if (windows.length === 0) out.print('No deny window is open now.');
          for (const w of windows) out.print(windowLine(w, now));
        } else {
          out.print('Deny windows: pass --config <the worker\'s config> to see those open now.');
        }
      });
    });
}
