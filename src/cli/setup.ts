/** `gantry setup`: register gantry's search attributes on an existing cluster (idempotent). */
import { Command } from 'commander';
import { ensureSearchAttributes } from '../client/search-attributes';
import { out, withClient } from './common';

export function setupCommand(): Command {
  return new Command('setup')
    .summary('register gantry\'s search attributes in the namespace (idempotent)')
    .description(
      'Register GantryService, GantryVersion, GantryStage, GantryOutcome and GantryEnvironment (Keyword) in the namespace through the ' +
        'OperatorService, so releases can be started and found. Attributes already registered are left alone. ' +
        '`gantry dev` does this for its own server.',
    )
    .action(async (_opts: unknown, c: Command) => {
      const r = await withClient(c, (gc) => ensureSearchAttributes(gc.connection, gc.namespace, gc.settings.address));
      for (const name of r.added) out.print(`${out.style.ok('+')} registered ${name} (Keyword) in namespace ${r.namespace}`);
      for (const name of r.alreadyThere) out.print(`  ${name} already registered in namespace ${r.namespace}`);
      out.print(r.added.length > 0 ? 'Done: releases can now be started and listed.' : 'Nothing to do: the namespace is ready for gantry.');
    });
}
