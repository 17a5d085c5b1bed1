import { defineConfig } from 'vitest/config';

/**
 * `npm run test:cluster`: the service on a real Temporal server on PostgreSQL (scripts/temporal-cluster.ts)
 * rather than the dev server. Not part of `npm test`: the server is built from source first.
 */
export default defineConfig({
  test: {
    // Temporal workers load native modules and webpack bundles; they are only safe in forks.
    pool: 'forks',
    globalSetup: ['./test/global-setup.ts'],
    include: ['test/cluster/**/*.test.ts'],
    exclude: ['node_modules/**', '.data/**', '.tools/**'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // One file at a time: each runs a cluster, an API and two workers on two cores.
    maxWorkers: 1,
  },
});
