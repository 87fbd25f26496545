// What an approved write pays for report.trace with dd-trace loaded: approved updateOne writes, one
// dd-trace span each (as requests), and how often the plugin asked dd-trace for the active span
// (tracer.scope()), then one rogue write. CPU per write is printed too, but on a shared machine its
// spread hides a difference of a few µs; the count is exact.
// Usage: node bench/approved-under-dd-trace.cjs <dist/index.js> <mongodb uri> [label]
// (DD_TRACE_AGENT_URL=http://127.0.0.1:9 and DD_INSTRUMENTATION_TELEMETRY_ENABLED=false keep it offline.)
'use strict';
const tracer = require('dd-trace').init({ flushInterval: 600_000, startupLogs: false });
const mongoose = require('mongoose');
const { join, resolve } = require('node:path');

let scopeCalls = 0;
const scope = tracer.scope;
tracer.scope = function countedScope(...args) {
  scopeCalls++;
  return scope.apply(this, args);
};

const [dist, uri, label = dist] = process.argv.slice(2);
const fixture = join(__dirname, '..', 'test', 'fixtures', 'trace');

(async () => {
  const { tripwire } = await import(resolve(dist));
  const { ownerWrite } = await import(join(fixture, 'approved', 'owner.mjs'));
  const schema = new mongoose.Schema({ token: String });
  schema.plugin(tripwire, { approved: ['approved/**'], root: fixture, statsd: false });
  const connection = await mongoose.createConnection(uri, { dbName: 'bench_trace' }).asPromise();
  const Token = connection.model('Token', schema);
  const run = async (n) => {
    for (let i = 0; i < n; i++) await tracer.trace('request', () => ownerWrite(Token, 'x'));
  };
  await run(500); // warm-up
  const samples = [];
  for (let round = 0; round < 9; round++) {
    const start = process.cpuUsage();
    await run(500);
    const used = process.cpuUsage(start);
    samples.push((used.user + used.system) / 500);
  }
  samples.sort((a, b) => a - b);
  const approvedCalls = scopeCalls;
  await tracer.trace('rogue', () => Token.updateOne({ token: 'y' }, { $set: { token: 'z' } }));
  const cpu = `${samples[4].toFixed(0)} [${samples[0].toFixed(0)}–${samples[8].toFixed(0)}]`;
  console.log(
    `${label}: tracer.scope() calls during 5,000 approved writes: ${approvedCalls}; ` +
      `for one rogue write: ${scopeCalls - approvedCalls}; CPU per approved write (µs, median of 9 rounds of 500): ${cpu}`,
  );
  await connection.close();
  process.exit(0);
})();
