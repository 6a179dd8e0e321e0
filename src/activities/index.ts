/**
 * The real step implementations, assembled over the worker's dependencies. Each step lives in its own module
 * as a factory; this is the only place that knows all of them.
 */
import type { ReleaseActivities } from './types';

export interface ActivityDeps {
  /** Process environment used to resolve secret references (`{ env: NAME }`). */
  env: NodeJS.ProcessEnv;
}

export function createActivities(deps: ActivityDeps = { env: process.env }): ReleaseActivities {
  void deps;
  throw new Error('gantry: the real release steps are not assembled yet (see issue 4)');
}
