/**
 * The release lab from a shell:
 *
 *   npx tsx scripts/lab/lab.ts start   [--dir D]          start it in the foreground; Ctrl-C stops it
 *   npx tsx scripts/lab/lab.ts status  [--dir D] [--json]  what runs, where, which containers exist
 *   npx tsx scripts/lab/lab.ts cleanup [--dir D] [--purge] remove its containers and leftover processes
 *                                                          (--purge: also its data: registry, repo, keys)
 *   npx tsx scripts/lab/lab.ts use-revision good|broken [--dir D]
 *                                                          point the repo's main at a revision and print it as
 *                                                          JSON; `broken` also switches the worker's gantry.yaml to
 *                                                          the rollback demo (staging checks /version only), `good` back
 *
 * Provision the machine first with `bash scripts/lab/provision.sh` (root).
 */
import { Command } from 'commander';
import path from 'node:path';
import { cleanupLab, labStatus, startLab } from '../../src/lab';
import { ensureSampleRepo, moveBranch, restoreStandardConfig, writeRollbackDemoConfig } from '../../src/lab/sample-repo';

const program = new Command('lab').description('The local release lab (podman API, registry, git repo, sshd, webhook receiver)');
const dirOption = ['--dir <dir>', 'the lab directory', '.gantry/lab'] as const;

program
  .command('start')
  .description('start the lab and keep it running until Ctrl-C')
  .option(...dirOption)
  .action(async (opts: { dir: string }) => {
    const lab = await startLab({ dir: opts.dir, log: (l) => process.stderr.write(`lab: ${l}\n`) });
    process.stdout.write(`\nThe lab is up. Release config: ${lab.configFile}\n` +
      `The worker needs: export ${Object.entries(lab.env).map(([k, v]) => `${k}='${v}'`).join(' ')}\n` +
      `staging ${lab.staging.url}   production ${lab.production.url} (over ssh -p ${lab.ssh.port} ${lab.ssh.user}@127.0.0.1 -i ${lab.ssh.privateKeyFile})\n` +
      'Ctrl-C stops it (data stays in the lab directory).\n');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await lab.stop();
  });

program
  .command('status')
  .description('show what runs')
  .option(...dirOption)
  .option('--json', 'machine-readable output')
  .action(async (opts: { dir: string; json?: boolean }) => {
    const s = await labStatus(opts.dir);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      return;
    }
    if (!s.id) {
      process.stdout.write(`No lab in ${s.dir}. Start one: npx tsx scripts/lab/lab.ts start --dir ${s.dir}\n`);
      return;
    }
    process.stdout.write(`Lab ${s.id} in ${s.dir}: ${s.running ? `running (process ${s.ownerPid})` : 'stopped'}\n`);
    for (const d of s.daemons) process.stdout.write(`  ${d.name.padEnd(9)} pid ${d.pid} ${d.alive ? 'alive' : 'gone'}\n`);
    if (s.registry) process.stdout.write(`  registry  ${s.registry}\n`);
    if (s.ssh) process.stdout.write(`  ssh       ${s.ssh}\n`);
    if (s.config) process.stdout.write(`  config    ${s.config}\n`);
    for (const c of s.containers) process.stdout.write(`  container ${c.name} ${c.state} ${c.image}\n`);
    if (!s.running && (s.containers.length > 0 || s.daemons.some((d) => d.alive))) {
      process.stdout.write(`Leftovers: npx tsx scripts/lab/lab.ts cleanup --dir ${s.dir}\n`);
    }
  });

program
  .command('cleanup')
  .description('remove the lab\'s containers and leftover processes')
  .option(...dirOption)
  .option('--purge', 'also delete the lab directory (registry, repository, keys, logs)')
  .action(async (opts: { dir: string; purge?: boolean }) => {
    const r = await cleanupLab(opts.dir, { purge: opts.purge ?? false, quiet: true });
    process.stdout.write(`Removed containers: ${r.removedContainers.join(', ') || 'none'}; stopped: ${r.stoppedDaemons.join(', ') || 'nothing'}` +
      `${opts.purge ? '; deleted the lab directory' : ''}.\n`);
  });

program
  .command('use-revision')
  .description('point the lab repository\'s main branch at a revision: good (1.0.0) or broken (1.1.0, /health answers 404)')
  .argument('<revision>', 'good or broken')
  .option(...dirOption)
  .action((revision: string, opts: { dir: string }) => {
    if (revision !== 'good' && revision !== 'broken') throw new Error(`unknown revision "${revision}"; use good or broken`);
    const repo = ensureSampleRepo(path.join(path.resolve(opts.dir), 'git'));
    const rev = repo[revision];
    moveBranch(repo, repo.branch, rev.commit);
    // The worker owns the config and reads it again for the next release: switch it in place.
    const file = path.join(path.resolve(opts.dir), 'gantry.yaml');
    const config = revision === 'broken' ? writeRollbackDemoConfig(file) : restoreStandardConfig(file);
    process.stdout.write(`${JSON.stringify({ revision, version: rev.version, commit: rev.commit, config })}\n`);
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`lab: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
