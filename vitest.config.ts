import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['./test/support/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // One wire server for the run; files in parallel forks keep module state (patches, limiters) apart.
    pool: 'forks',
    // The fixture app runs as plain Node modules, untransformed: call-site lines must be the real ones.
    server: { deps: { external: [/test\/fixtures\//] } },
  },
});
