/** File helpers the channels share: atomic writes, and the lock file that serialises appends to the audit log. */
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { retryable } from '../../shared/errors';
import { pause } from '../heartbeat';

export async function writeAtomic(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  await writeFile(tmp, content);
  await rename(tmp, file);
}

/**
 * A lock file created exclusively; a lock older than `staleMs` was left by a crashed attempt and is taken over.
 * Used so that two attempts running at once (a timed-out attempt still alive beside its retry), or two
 * releases appending to one audit log, cannot both decide that a line is missing and chain to the same line.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, staleMs = 60_000, waitMs = 15_000): Promise<T> {
  await mkdir(path.dirname(lockFile), { recursive: true });
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      const fh = await open(lockFile, 'wx');
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lockFile).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > staleMs) {
        await rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > until) {
        throw retryable(`Another announcement appending to the same audit log holds ${lockFile}; retrying. If none is running, delete that file.`);
      }
      await pause(200);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}
