import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['./test/support/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    // The fixtures are apps with test suites of their own (test/fixtures/jest is run by jest).
    exclude: ['test/fixtures/**', '**/node_modules/**'],
    // Generous bounds for bounded work (a loaded machine is slower, not stuck); waits inside tests
    // are condition-based (test/support/wait.ts), so a passing test never sits out its timeout.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One wire server for the run; files in parallel forks keep module state (patches, limiters) apart.
    pool: 'forks',
    // The fixture app runs as plain Node modules, untransformed: call-site lines must be the real ones.
    server: { deps: { external: [/test\/fixtures\//] } },
  },
});
