import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 240_000,
    // Each file starts its own Temporal server; two cores run two files at a time at most.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
