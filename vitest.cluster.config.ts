import { defineConfig } from 'vitest/config';
import base from './vitest.config';

/**
 * `npm run test:cluster`: the service on a real Temporal server on PostgreSQL (scripts/temporal-cluster.ts)
 * rather than the dev server. Not part of `npm test`: the server is built from source first.
 */
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/cluster/**/*.test.ts'],
    exclude: ['node_modules/**', '.data/**', '.tools/**'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    maxWorkers: 1,
  },
});
