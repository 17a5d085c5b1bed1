import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal workers load native modules and webpack bundles; they are only safe in forks.
    pool: 'forks',
    globalSetup: ['./test/global-setup.ts'],
    include: ['**/*.test.ts'],
    // test/cluster needs the Temporal server built from source: `npm run test:cluster`.
    exclude: ['node_modules/**', '.data/**', '.tools/**', 'test/cluster/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: more forks than that only adds contention against the Temporal server.
    maxWorkers: 2,
  },
});
