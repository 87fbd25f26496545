// Test-suite setup: every rogue write to AccessToken fails the test that made it.
//
// Load it before any model is compiled, in the process that runs the tests:
//   vitest:  test: { setupFiles: ['./test/tripwire-setup.mjs'] }   (a copy of this file)
//   mocha:   --require ./test/tripwire-setup.mjs
//   node:    node --import ./test/tripwire-setup.mjs --test
//
// A rogue write is refused before it reaches MongoDB: it rejects with a RogueWriteError whose
// `report` names the call site, and the database is left unchanged. Approved writes pass as usual.
// TRIPWIRE_ROOT and TRIPWIRE_APPROVED (comma-separated) override the defaults below.
import mongoose from 'mongoose';
import { tripwire } from 'mongoose-tripwire';

// Test runners may evaluate a setup file once per test file in one process, where Mongoose (from
// node_modules) is shared: register once per Mongoose instance.
const REGISTERED = Symbol.for('mongoose-tripwire.throw-mode-setup');

if (!mongoose[REGISTERED]) {
  mongoose[REGISTERED] = true;
  // mongoose.plugin applies to every schema compiled after this line; `models` limits it to AccessToken.
  mongoose.plugin(tripwire, {
    models: ['AccessToken'],
    approved: (process.env.TRIPWIRE_APPROVED ?? 'src/auth/**').split(',').map((pattern) => pattern.trim()),
    root: process.env.TRIPWIRE_ROOT ?? process.cwd(),
    mode: 'throw',
    statsd: false, // tests fail on the error itself; nothing to send to Datadog
    rateLimit: false,
  });
}
