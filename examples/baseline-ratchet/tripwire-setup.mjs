// Test-suite setup: every rogue write to AccessToken fails the test that made it, except the known
// ones listed in tripwire-baseline.json. Loaded before any model is compiled:
//   node --import ./tripwire-setup.mjs --test
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { tripwire } from 'mongoose-tripwire';

mongoose.plugin(tripwire, {
  models: ['AccessToken'],
  // app/models.mjs drops each test database when done: that drops the tokens collection too.
  approved: ['app/auth/**', 'app/models.mjs'],
  root: fileURLToPath(new URL('.', import.meta.url)),
  baseline: 'tripwire-baseline.json', // relative to root; a missing or malformed file fails at boot
  // TRIPWIRE_MODE=report lets every rogue write through (to record them all in one run).
  mode: process.env.TRIPWIRE_MODE === 'report' ? 'report' : 'throw',
  statsd: false,
  rateLimit: false,
});
