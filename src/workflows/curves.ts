/**
 * The signature curves, once per workflow thread rather than once per release. The worker's bundle preloads this
 * module (`preloadModules`, src/worker.ts WORKFLOW_PRELOAD_MODULES), so the reusable V8 context evaluates it, and
 * @noble/curves with it, once when the worker starts and shares them with every workflow; what a workflow does not
 * preload is evaluated again for each release it creates or replays. The tables for the base points are computed
 * here, up front: without this, every new or replayed signed release computed them again on its first signature
 * check (~40–100 ms of its first workflow task).
 *
 * Pure computation only: no workflow API and no state of any release. The SDK freezes preloaded modules.
 */
import { ed25519 } from '@noble/curves/ed25519';
import { p256 } from '@noble/curves/p256';
import '@noble/hashes/sha2';

ed25519.utils.precompute(8);
p256.utils.precompute(8);
