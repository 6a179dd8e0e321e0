/**
 * A gantry worker in a process of its own, for test/activities/deliveries.test.ts: the real resolve step and
 * the real announce activities (audit log, GitHub, webhook) over the worker's config file, the steps before the
 * announcement as doubles. With `crashAfter` set to a channel, the process SIGKILLs itself as soon as that
 * channel's delivery has done its work and before its activity completes: the worst moment, when the effect
 * landed and Temporal does not know. Every delivery attempt it starts is appended to `logFile` as a JSON line.
 * Prints "ready" once polling.
 *
 *   node --import tsx test/activities/delivery-worker.ts <address> <taskQueue> <bundleFile> <configFile> <logFile> [crashAfter]
 */
import { appendFileSync } from 'node:fs';
import { NativeConnection } from '@temporalio/worker';
import { createReleaseWorker } from '../../src/worker';
import { createActivities } from '../../src/activities';
import { fileConfigSource } from '../../src/activities/resolve';
import type { AnnounceChannelRequest, GovernanceActivities, ReleaseActivities } from '../../src/activities/types';
import { activityContext } from '../../src/activities/heartbeat';
import { fakeActivities } from '../helpers/fake-activities';
import { quietRuntime } from '../workflows/harness';

export interface DeliveryAttempt {
  pid: number;
  channel: string;
  attempt: number;
  at: number;
}

async function main(): Promise<void> {
  const [address, taskQueue, bundleFile, configFile, logFile, crashAfter] = process.argv.slice(2);
  if (!address || !taskQueue || !bundleFile || !configFile || !logFile) {
    throw new Error('usage: delivery-worker.ts <address> <taskQueue> <bundleFile> <configFile> <logFile> [crashAfter]');
  }
  quietRuntime();
  const real = createActivities({ config: fileConfigSource(configFile), env: process.env });
  const fake = fakeActivities();
  const activities: ReleaseActivities & GovernanceActivities = {
    ...real,
    // The steps before the announcement, and the gate's lane and freeze checks: doubles.
    preflight: fake.preflight, tag: fake.tag, build: fake.build, deploy: fake.deploy, smoke: fake.smoke, health: fake.health, rollback: fake.rollback,
    laneEnqueue: (req) => fake.laneEnqueue(req), checkFreeze: (req) => fake.checkFreeze(req), notify: (req) => fake.notify(req),
    announceChannel: async (req: AnnounceChannelRequest) => {
      const entry: DeliveryAttempt = { pid: process.pid, channel: req.channel, attempt: activityContext()?.info.attempt ?? 0, at: Date.now() };
      appendFileSync(logFile, `${JSON.stringify(entry)}\n`);
      const delivered = await real.announceChannel(req);
      if (req.channel === crashAfter) {
        // Dead before Temporal hears of the delivery: no completion, no more heartbeats.
        process.kill(process.pid, 'SIGKILL');
        await new Promise(() => undefined);
      }
      return delivered;
    },
  };
  const connection = await NativeConnection.connect({ address });
  const worker = await createReleaseWorker({ connection, namespace: 'default', taskQueue, workflowBundlePath: bundleFile, activities, note: () => undefined });
  process.once('SIGTERM', () => worker.shutdown());
  const running = worker.run();
  process.stdout.write('ready\n');
  await running;
  await connection.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`delivery worker: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
