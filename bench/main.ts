/**
 * `npm run bench [-- <part>] [options]`: gantry's benchmarks (docs/performance.md). Not tests: nothing here
 * asserts a time; each part prints its figures next to its target.
 *
 *   npm run bench                          the quick parts: overhead, floor, latency, scale (--n 200), script (--pairs 3), swap (--runs 3)
 *   npm run bench -- overhead [--runs 30] [--warmup 5] [--target 1.15] [--strict] [--verbose]
 *   npm run bench -- floor [--runs 10]     the server's own cost per activity, per server and worker setting
 *   npm run bench -- latency [--runs 7]    what the user waits for: approval, status, CLI start-up, worker cold start
 *   npm run bench -- scale [--n 200] [--max-cached-workflows <default>] [--concurrency 50] [--approve <n>] [--worker-options <json>] [--node-flags "<flags>"]
 *   npm run bench -- script [--pairs 3] [--target 1.25]   the lab release: gantry against bench/release-script.sh
 *   npm run bench -- swap [--runs 3]       on the lab: the gap in service during a swap, and the restore time (target ≤ 10 s)
 */
import { Command, InvalidArgumentError } from 'commander';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEFAULT_MAX_CACHED_WORKFLOWS, WORKER_NODE_FLAGS } from '../src/worker';
import { floorBench } from './floor';
import { latencyBench } from './latency';
import { overheadBench } from './release-overhead';
import { scaleBench } from './scale';
import { scriptBench } from './script';
import { swapBench } from './swap-restore';

const write = (line: string): void => void process.stdout.write(`${line}\n`);

function int(min: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`a whole number ≥ ${min}, e.g. ${Math.max(min, 10)}`);
    return n;
  };
}

function json(raw: string): string {
  try {
    if (typeof JSON.parse(raw) === 'object') return raw;
  } catch { /* fall through */ }
  throw new InvalidArgumentError('a JSON object of Worker options, e.g. \'{"maxConcurrentWorkflowTaskPolls":4}\'');
}

function ratio(raw: string): number {
  const n = Number(raw);
  if (!(n > 0)) throw new InvalidArgumentError('a positive ratio such as 1.25');
  return n;
}

function quietRuntime(): void {
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
}

type Part = () => Promise<{ code: number }>;

async function run(parts: [string, Part][]): Promise<void> {
  quietRuntime();
  let code = 0;
  for (const [name, part] of parts) {
    write(`\n=== ${name} ===`);
    code = Math.max(code, (await part()).code);
  }
  process.exitCode = code;
}

const program = new Command('bench').description('gantry\'s benchmarks (docs/performance.md)');

program.command('overhead', { isDefault: false })
  .description('the release workflow against a bare workflow with as many no-op activities (target ratio ≤ 1.15)')
  .option('--runs <n>', 'measured runs of each', int(1), 30)
  .option('--warmup <n>', 'warm-up runs of each', int(0), 5)
  .option('--target <ratio>', 'target ratio', ratio, 1.15)
  .option('--strict', 'exit 1 when the target is missed', false)
  .option('--verbose', 'print every sample', false)
  .action((o: { runs: number; warmup: number; target: number; strict: boolean; verbose: boolean }) => run([['overhead', () => overheadBench(o)]]));

program.command('floor')
  .description('the Temporal server\'s own cost per no-op activity, per server and worker setting')
  .option('--runs <n>', 'bare workflows per variant', int(1), 10)
  .option('--activities <n>', 'activities per workflow', int(2), 9)
  .action((o: { runs: number; activities: number }) => run([['floor', async () => ({ code: 0, figures: await floorBench({ ...o, warmup: 3, write }) })]]));

program.command('latency')
  .description('what the user waits for, next to its reference: approval → production deploy, status, CLI start-up, worker cold start')
  .option('--runs <n>', 'samples of each', int(1), 7)
  .action((o: { runs: number }) => run([['latency', () => latencyBench({ ...o, write })]]));

program.command('scale')
  .description('N releases parked at the gate on one worker: its RSS, then all approved by update (targets: 10,000 at ≤ 400 MB, ≥ 100/s)')
  .option('--n <n>', 'releases to park', int(1), 200)
  .option('--max-cached-workflows <n>', 'the worker\'s cache size', int(2), DEFAULT_MAX_CACHED_WORKFLOWS)
  .option('--concurrency <n>', 'releases between start and gate (at most half the cache), and approvals in flight', int(1), 50)
  .option('--approve <n>', 'approve only the first n (default: all of them)', int(1))
  .option('--worker-options <json>', 'further Worker options for the worker, e.g. \'{"workflowThreadPoolSize":2}\' (the SDK 1.24 ignores maxConcurrentWorkflowTaskPolls: give workflowTaskPollerBehavior)', json)
  .option('--node-flags <flags>', 'node\'s flags for the worker process (default: the Dockerfile\'s, WORKER_NODE_FLAGS; "" for none)')
  .action((o: { n: number; maxCachedWorkflows: number; concurrency: number; approve?: number; workerOptions?: string; nodeFlags?: string }) =>
    run([['scale', () => scaleBench({ ...o, nodeFlags: o.nodeFlags === undefined ? WORKER_NODE_FLAGS : o.nodeFlags.split(/\s+/).filter(Boolean), write })]]));

program.command('script')
  .description('a real lab release: gantry start --approve-as alice --wait against bench/release-script.sh (target ratio ≤ 1.25)')
  .option('--pairs <n>', 'pairs of runs', int(1), 3)
  .option('--target <ratio>', 'target ratio', ratio, 1.25)
  .option('--lab-dir <dir>', 'where the fresh labs live (default .gantry/bench-lab)')
  .action((o: { pairs: number; target: number; labDir?: string }) => run([['script', () => scriptBench({ ...o, write })]]));

program.command('swap')
  .description('on the lab: the gap in service while production is swapped to a new version, and the restore time from its first failing check (target ≤ 10 s)')
  .option('--runs <n>', 'swaps and restores', int(1), 3)
  .action((o: { runs: number }) => run([['swap', () => swapBench({ ...o, write })]]));

program.command('all', { isDefault: true })
  .description('the quick parts, one after the other')
  .action(() => run([
    ['overhead', () => overheadBench({ runs: 10, warmup: 3, target: 1.15, strict: false, verbose: false })],
    ['floor', async () => ({ code: 0, figures: await floorBench({ runs: 5, warmup: 2, activities: 9, write }) })],
    ['latency', () => latencyBench({ runs: 5, write })],
    ['scale', () => scaleBench({ n: 200, maxCachedWorkflows: DEFAULT_MAX_CACHED_WORKFLOWS, concurrency: 50, nodeFlags: WORKER_NODE_FLAGS, write })],
    ['script', () => scriptBench({ pairs: 3, target: 1.25, write })],
    ['swap', () => swapBench({ runs: 3, write })],
  ]));

program.parseAsync().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
