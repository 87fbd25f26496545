'use strict';
// Loaded by mocha (--require) in the staged Mongoose tree: registers the plugin globally on the
// Mongoose instance the suite's tests use, so every schema the suite compiles gets it.
// Environment (set by run.sh): TRIPWIRE_PROJECT (project root), TRIPWIRE_COUNTS (file written at exit);
// optional TRIPWIRE_READS=1, TRIPWIRE_OPTIONS='{...}' (JSON merged into the options).
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

// mocha runs in Mongoose's tree; test/common.js loads the package root, which must be this instance.
const mongoose = require(path.resolve('index.js'));
if (mongoose !== require(path.resolve('lib'))) {
  throw new Error('register.cjs: index.js and lib/ are two Mongoose instances; the tests would not see the plugin');
}

// Only the package's public entry (exports ".", built to dist/index.js), resolved as an app would,
// so a move of the plugin's internal files cannot break the check. require(esm): Node >= 20.19.
const projectRequire = createRequire(path.join(process.env.TRIPWIRE_PROJECT, 'package.json'));
const { tripwire } = projectRequire('mongoose-tripwire');

// Every write is rogue (no code is approved), so the whole judging and reporting path runs on each
// one; nothing leaves the process (no DogStatsD client). onError gets each distinct fault once.
const counts = { bypasses: 0, faults: [] };
const options = {
  approved: [() => false],
  statsd: false,
  onBypass: () => {
    counts.bypasses += 1;
  },
  onError: (error) => {
    if (counts.faults.length < 50)
      counts.faults.push(
        String(error?.message || error)
          .split('\n')[0]
          .slice(0, 300),
      );
  },
  ...(process.env.TRIPWIRE_READS === '1' ? { operations: ['create', 'update', 'delete', 'read'] } : {}),
  ...JSON.parse(process.env.TRIPWIRE_OPTIONS || '{}'),
};
mongoose.plugin(tripwire, options);

// Proof the plugin was in play: run.sh prints how many writes it saw and any fault it raised.
if (process.env.TRIPWIRE_COUNTS) {
  process.on('exit', () => fs.writeFileSync(process.env.TRIPWIRE_COUNTS, JSON.stringify(counts)));
}
