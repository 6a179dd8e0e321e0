/**
 * readStatus (src/client/follow.ts): a follower's status read is asked again when a workflow task completes while
 * the question waits, since the server may hold a query that arrived during a workflow task long after it. Here the
 * questions and the history watch are stand-ins the test controls, so each case is decided by the order of events.
 */
import { describe, expect, it } from 'vitest';
import { readStatus, taskCounter } from '../../src/client/follow';
import type { ReleaseStatus } from '../../src/shared/release';

/** The follower's own counter (as its history watch drives it), with the completed tasks announced by the test. */
function watch() {
  const c = taskCounter();
  return { ...c.watch, complete: c.complete, stop: c.stop };
}

/** Questions the test answers or fails one by one. */
function questions() {
  const pending: { resolve(s: ReleaseStatus): void; reject(e: Error): void }[] = [];
  const ask = (): Promise<ReleaseStatus> => new Promise((resolve, reject) => pending.push({ resolve, reject }));
  return { ask, pending };
}

const status = (stage: string): ReleaseStatus => ({ stage } as unknown as ReleaseStatus);
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('readStatus', () => {
  it('asks again when a workflow task completes while the first question is held, and takes the first answer', async () => {
    const tasks = watch();
    const q = questions();
    const read = readStatus(q.ask, tasks);
    await tick();
    expect(q.pending).toHaveLength(1);
    tasks.complete(); // the gate opened while the first question waits on the server
    await tick();
    expect(q.pending).toHaveLength(2);
    q.pending[1]!.resolve(status('awaiting-approval'));
    await expect(read).resolves.toMatchObject({ stage: 'awaiting-approval' });
    q.pending[0]!.resolve(status('smoke')); // the held one answers later: ignored
  });

  it('asks once when no task completes, and never more than three times again', async () => {
    const tasks = watch();
    const q = questions();
    const quiet = readStatus(q.ask, tasks);
    await tick();
    q.pending[0]!.resolve(status('build'));
    await expect(quiet).resolves.toMatchObject({ stage: 'build' });
    expect(q.pending).toHaveLength(1);

    const busy = readStatus(q.ask, tasks);
    for (let i = 0; i < 6; i++) {
      await tick();
      tasks.complete();
    }
    await tick();
    expect(q.pending).toHaveLength(1 + 4);
    q.pending[2]!.resolve(status('deploy-staging'));
    await expect(busy).resolves.toMatchObject({ stage: 'deploy-staging' });
  });

  it('fails only when every question failed, with the last error; an earlier failure waits for the later question', async () => {
    const tasks = watch();
    const q = questions();
    const read = readStatus(q.ask, tasks);
    await tick();
    tasks.complete();
    await tick();
    q.pending[0]!.reject(new Error('first failed'));
    await tick();
    let settled = false;
    void read.then(() => { settled = true; }, () => { settled = true; });
    await tick();
    expect(settled).toBe(false);
    q.pending[1]!.reject(new Error('second failed'));
    await expect(read).rejects.toThrow('second failed');
  });

  it('does not ask again once the history watch has stopped', async () => {
    const tasks = watch();
    const q = questions();
    tasks.stop();
    const read = readStatus(q.ask, tasks);
    await tick();
    tasks.complete();
    await tick();
    expect(q.pending).toHaveLength(1);
    q.pending[0]!.resolve(status('health'));
    await expect(read).resolves.toMatchObject({ stage: 'health' });
  });
});
