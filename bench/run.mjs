// `npm run bench`: what the plugin costs, as ratios measured within one run (absolute times on a
// shared machine are noise). Real Mongoose against the embedded wire server (in a child process,
// so its CPU is not the client's), tinybench for sampling, results in bench/results.json.
//
// Method (see ../shared notes): the instrumented model is compared with plain models compiled
// before AND after it, in rotated order, and each figure is the median of paired per-round
// ratios of client CPU per write (process.cpuUsage), next to the wall-clock median and p99.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { Bench } from 'tinybench';
import { close, flush, tripwire } from '../dist/index.js';
import { captureCallSite } from '../dist/capture.js';
import { compileApproval } from '../dist/approval.js';
import { startListener } from '../dist/listen.js';
import { startEmbeddedMongo } from '../test/support/spawn-mongo.mjs';
import { atDepth } from './app/stack.mjs';
import { ops as approvedOps } from './app/auth/tokens.mjs';
import { fromAuth } from './app/auth/classify.mjs';
import { ops as legacyOps } from './app/legacy/tokens.mjs';
import { sites as stormSites } from './app/legacy/storm-sites.mjs';

const ROOT = fileURLToPath(new URL('./app/', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TASK_MS = Number(process.env.BENCH_TASK_MS ?? 150);
const STORM_WRITES = Number(process.env.BENCH_STORM ?? 100_000);
const WARM_STORM = Math.min(STORM_WRITES, 20_000);
const started = Date.now();
const say = (text = '') => process.stdout.write(`${text}\n`);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

const mongo = await startEmbeddedMongo();
const listener = await startListener({ port: 0 });
const connection = await mongoose.createConnection(mongo.uri, { dbName: `bench_${process.pid}`, maxPoolSize: 20 }).asPromise();

const schema = () => new mongoose.Schema({ token: { type: String, required: true, unique: true }, user: String, scopes: [String] });
const statsd = { host: '127.0.0.1', port: listener.port };
function instrumented(name, options) {
  const s = schema();
  s.plugin(tripwire, { approved: ['auth/**'], root: ROOT, statsd, onError: () => {}, ...options });
  return connection.model(name, s);
}
// Plain models compiled before and after the instrumented ones: later-compiled models measured slower on their own.
const PlainBefore = connection.model('PlainBefore', schema());
const Tripwired = instrumented('Tripwired', {});
const RogueLimited = instrumented('RogueLimited', {});
const RogueUnlimited = instrumented('RogueUnlimited', { rateLimit: false });
const PlainAfter = connection.model('PlainAfter', schema());
const models = [PlainBefore, Tripwired, RogueLimited, RogueUnlimited, PlainAfter];
await Promise.all(models.map((M) => M.init()));

// Seeded through the raw collection: the bench's own setup must not count as a rogue write.
async function context(M) {
  const { insertedId } = await connection.db.collection(M.collection.collectionName).insertOne({ token: `seed_${M.modelName}_${Math.random()}`, user: 'seed', scopes: [] });
  return { id: insertedId, doc: await M.findById(insertedId) };
}
const contexts = new Map();
for (const M of models) contexts.set(M, await context(M));

/** Runs one tinybench task and returns client CPU µs per write, and wall latency median/p99 in µs. */
async function measure(name, fn) {
  let cpuStart;
  let cpuEnd;
  const bench = new Bench({ time: TASK_MS, warmupTime: 30, iterations: 20 });
  // An async function, so tinybench awaits every write (a plain function returning a promise is timed as sync).
  bench.add(name, async () => { await fn(); }, {
    beforeAll() { cpuStart = process.cpuUsage(); },
    afterAll() { cpuEnd = process.cpuUsage(cpuStart); },
  });
  const [task] = await bench.run();
  const result = task.result;
  if (result.state !== 'completed') throw new Error(`${name}: ${result.state} ${result.error ?? ''}`);
  return {
    cpuUs: (cpuEnd.user + cpuEnd.system) / Math.max(1, result.latency.samplesCount),
    p50Us: result.latency.p50 * 1000,
    p99Us: result.latency.p99 * 1000,
  };
}

const results = { machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, mongoose: mongoose.version }, approved: [], classification: {}, rogue: {}, storm: {}, targets: [] };
const target = (name, value, limit, unit, pass) => results.targets.push({ name, value, limit, unit, pass: pass ?? value <= limit });

// Warm-up: every model and every path once for a while, so the first section measured is not the JIT's.
for (const M of models) for (const run of Object.values(approvedOps)) for (let i = 0; i < 150; i++) await atDepth(30, () => run(M, contexts.get(M)));

// ---- 1. Approved write overhead ----
say('1. Approved writes (plugin vs plain model, same server, rotated order)');
for (const depth of [10, 30, 60]) {
  for (const [op, run] of Object.entries(approvedOps).filter(([name]) => name !== 'findOne')) {
    const rounds = [];
    const variants = [PlainBefore, Tripwired, PlainAfter];
    for (let round = 0; round < ROUNDS; round++) {
      const order = variants.map((_, i) => variants[(i + round) % variants.length]);
      const byModel = new Map();
      for (const M of order) byModel.set(M, await measure(`${op}@${depth} ${M.modelName}`, () => atDepth(depth, () => run(M, contexts.get(M)))));
      const bare = (byModel.get(PlainBefore).cpuUs + byModel.get(PlainAfter).cpuUs) / 2;
      const bareWall = (byModel.get(PlainBefore).p50Us + byModel.get(PlainAfter).p50Us) / 2;
      rounds.push({ ratio: byModel.get(Tripwired).cpuUs / bare, addedUs: byModel.get(Tripwired).cpuUs - bare, bareUs: bare, wallRatio: byModel.get(Tripwired).p50Us / bareWall, p99Us: byModel.get(Tripwired).p99Us, bareP99Us: (byModel.get(PlainBefore).p99Us + byModel.get(PlainAfter).p99Us) / 2 });
    }
    const row = {
      op, depth,
      bareCpuUs: median(rounds.map((r) => r.bareUs)),
      addedCpuUs: median(rounds.map((r) => r.addedUs)),
      cpuRatio: median(rounds.map((r) => r.ratio)),
      wallRatio: median(rounds.map((r) => r.wallRatio)),
      p99Us: median(rounds.map((r) => r.p99Us)),
      bareP99Us: median(rounds.map((r) => r.bareP99Us)),
    };
    results.approved.push(row);
    say(`   ${op.padEnd(17)} depth ${String(depth).padStart(2)}: bare ${fmt(row.bareCpuUs)} µs CPU, +${fmt(row.addedCpuUs)} µs (${fmt((row.cpuRatio - 1) * 100)} % CPU, ${fmt((row.wallRatio - 1) * 100)} % wall p50), p99 ${fmt(row.p99Us)} vs ${fmt(row.bareP99Us)} µs`);
  }
}
const headline = results.approved.find((r) => r.op === 'updateOne' && r.depth === 30);
target('approved updateOne @30: CPU over bare write', (headline.cpuRatio - 1) * 100, 10, '%');
target('approved updateOne @30: added CPU per write', headline.addedCpuUs, 15, 'µs');

// ---- 2. Classification alone ----
say('\n2. Classification alone, depth 30 (capture + classify vs a bare Error.captureStackTrace)');
{
  const approval = compileApproval(['auth/**'], ROOT);
  const holder = {};
  function bareCapture() { Error.captureStackTrace(holder, bareCapture); return holder; }
  function classify() { return captureCallSite(classify, approval, 50); }
  const bench = new Bench({ time: 400, warmupTime: 100 });
  bench.add('Error.captureStackTrace', () => atDepth(30, bareCapture));
  bench.add('capture + classify, approved (the auth module is the caller)', () => atDepth(30, () => fromAuth(classify)));
  bench.add('capture + classify, rogue (full depth, frames built)', () => atDepth(30, classify));
  const tasks = await bench.run();
  const [bare, approved, rogue] = tasks.map((t) => t.result.latency.p50 * 1000);
  results.classification = { depth: 30, bareCaptureUs: bare, approvedUs: approved, rogueUs: rogue, approvedRatio: approved / bare, rogueRatio: rogue / bare };
  say(`   Error.captureStackTrace ${fmt(bare, 2)} µs; approved capture+classify ${fmt(approved, 2)} µs (${fmt(approved / bare, 2)}×); rogue (full depth, frames built) ${fmt(rogue, 2)} µs (${fmt(rogue / bare, 2)}×)`);
  target('classification (approved) vs bare captureStackTrace', approved / bare, 1.5, '×');
}

// ---- 3. Rogue write cost ----
say('\n3. Rogue updateOne at depth 30: suppressed by the rate limit vs event sent over UDP');
{
  const rounds = [];
  const c = (M) => contexts.get(M);
  const variants = [PlainBefore, Tripwired, RogueLimited, RogueUnlimited, PlainAfter];
  await legacyOps.updateOne(RogueLimited, c(RogueLimited)); // spends the call site's one event
  for (let round = 0; round < ROUNDS; round++) {
    const m = new Map();
    for (const M of variants.map((_, i) => variants[(i + round) % variants.length])) {
      const ops = M === Tripwired || M === PlainBefore || M === PlainAfter ? approvedOps : legacyOps;
      m.set(M, await measure(`rogue ${M.modelName}`, () => atDepth(30, () => ops.updateOne(M, c(M)))));
    }
    const bare = (m.get(PlainBefore).cpuUs + m.get(PlainAfter).cpuUs) / 2;
    rounds.push({ approved: m.get(Tripwired).cpuUs - bare, suppressed: m.get(RogueLimited).cpuUs - bare, sent: m.get(RogueUnlimited).cpuUs - bare, bare });
  }
  const r = { bareCpuUs: median(rounds.map((x) => x.bare)), approvedAddedUs: median(rounds.map((x) => x.approved)), suppressedAddedUs: median(rounds.map((x) => x.suppressed)), sentAddedUs: median(rounds.map((x) => x.sent)) };
  results.rogue = r;
  say(`   added CPU per write: approved +${fmt(r.approvedAddedUs)} µs, rogue suppressed +${fmt(r.suppressedAddedUs)} µs, rogue with event sent +${fmt(r.sentAddedUs)} µs (bare write ${fmt(r.bareCpuUs)} µs)`);
  target('suppressed rogue write vs approved overhead', r.suppressedAddedUs / Math.max(0.1, r.approvedAddedUs), 2, '×');
}

// ---- 4. Storm ----
// The global cap is 30 events per hour here (the default window is a minute): over a storm of a few
// dozen seconds the bucket refills by less than one event, so exactly 30 events must go out.
say(`\n4. Storm: ${STORM_WRITES.toLocaleString('en')} rogue writes from ${stormSites.length} call sites, as fast as the app can issue them (500 in flight)`);
{
  await close();
  listener.datagrams.length = 0;
  const Storm = instrumented('Storm', { rateLimit: { perCallSite: { events: 1, intervalMs: 600_000 }, global: { events: 30, intervalMs: 3_600_000 } } });
  await Storm.init();
  const { id } = await context(Storm);
  // The no-plugin baseline on a fresh collection too, like the instrumented one.
  const StormPlain = connection.model('StormPlain', schema());
  await StormPlain.init();
  const plainCtx = await context(StormPlain);
  const storm = async (M, target, writes = STORM_WRITES) => {
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const t0 = Date.now();
    const BATCH = 500;
    for (let done = 0; done < writes; done += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, writes - done) }, (_, i) => stormSites[(done + i) % stormSites.length](M, target)));
    }
    delay.disable();
    return { seconds: (Date.now() - t0) / 1000, p99Ms: delay.percentile(99) / 1e6 };
  };
  const baseline = await storm(StormPlain, plainCtx.id); // the same burst without the plugin
  // A first storm on another instrumented model grows the heap to its working size; the measured
  // storm must then not grow it further (memory bounded, however many rogue writes).
  const Warm = instrumented('StormWarmUp', {});
  await Warm.init();
  await storm(Warm, (await context(Warm)).id, WARM_STORM);
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  const run = await storm(Storm, id);
  await new Promise((resolve) => setTimeout(resolve, 50));
  flush();
  await close();
  const sum = (name) => [...listener.counters()].filter(([key]) => key.startsWith(`tripwire.${name}|`) && key.split(/[|,]/).includes('model:Storm')).reduce((n, [, v]) => n + v, 0);
  await listener.waitFor(() => sum('bypasses') >= STORM_WRITES, 5_000).catch(() => undefined);
  global.gc?.();
  const rssAfter = process.memoryUsage().rss;
  const heapAfter = process.memoryUsage().heapUsed;
  const events = listener.datagrams.filter((d) => d.type === 'event' && d.tags.includes('model:Storm')).length;
  results.storm = {
    writes: STORM_WRITES, seconds: run.seconds, writesPerSecond: STORM_WRITES / run.seconds, baselineSeconds: baseline.seconds,
    events, expectedEvents: 30, bypassesCounted: sum('bypasses'), suppressedCounted: sum('events_suppressed'),
    rssGrowthMb: (rssAfter - rssBefore) / 1e6, heapGrowthMb: (heapAfter - heapBefore) / 1e6, eventLoopDelayP99Ms: run.p99Ms, baselineEventLoopDelayP99Ms: baseline.p99Ms, malformed: listener.malformed.length,
  };
  const s = results.storm;
  say(`   ${fmt(s.seconds)} s (${fmt(s.writesPerSecond, 0)} writes/s; the same burst without the plugin: ${fmt(s.baselineSeconds)} s); events sent ${s.events} (cap ${s.expectedEvents}); bypasses counted ${s.bypassesCounted}; suppressed ${s.suppressedCounted}`);
  say(`   RSS ${s.rssGrowthMb >= 0 ? '+' : ''}${fmt(s.rssGrowthMb)} MB (heap after GC ${s.heapGrowthMb >= 0 ? '+' : ''}${fmt(s.heapGrowthMb)} MB); event-loop delay p99 ${fmt(s.eventLoopDelayP99Ms)} ms (without the plugin: ${fmt(s.baselineEventLoopDelayP99Ms)} ms); malformed datagrams ${s.malformed}`);
  target('storm: events == rate-limit cap', s.events, s.expectedEvents, 'events', s.events === s.expectedEvents);
  target('storm: counters exact', s.bypassesCounted, STORM_WRITES, 'writes', s.bypassesCounted === STORM_WRITES && s.suppressedCounted === STORM_WRITES - s.events);
  target('storm: RSS growth', s.rssGrowthMb, 10, 'MB');
  target('storm: event-loop delay p99', s.eventLoopDelayP99Ms, 20, 'ms');
}

// ---- 5. Reads with read detection on ----
say('\n5. findOne at depth 30 with read detection on (approved caller) vs a plain model');
{
  const Reads = instrumented('ReadsOn', { operations: ['create', 'update', 'delete', 'read'] });
  await Reads.init();
  const readCtx = await context(Reads);
  const rounds = [];
  for (let round = 0; round < ROUNDS; round++) {
    const variants = [PlainBefore, Reads, PlainAfter];
    const m = new Map();
    for (const M of variants.map((_, i) => variants[(i + round) % variants.length])) {
      const c = M === Reads ? readCtx : contexts.get(M);
      m.set(M, await measure(`read ${M.modelName}`, () => atDepth(30, () => approvedOps.findOne(M, c))));
    }
    const bare = (m.get(PlainBefore).cpuUs + m.get(PlainAfter).cpuUs) / 2;
    rounds.push({ bare, added: m.get(Reads).cpuUs - bare, ratio: m.get(Reads).cpuUs / bare });
  }
  results.reads = { bareCpuUs: median(rounds.map((r) => r.bare)), addedCpuUs: median(rounds.map((r) => r.added)), cpuRatio: median(rounds.map((r) => r.ratio)) };
  say(`   bare findOne ${fmt(results.reads.bareCpuUs)} µs CPU, +${fmt(results.reads.addedCpuUs)} µs (${fmt((results.reads.cpuRatio - 1) * 100)} %) with read detection on`);
}

say('\nTargets:');
for (const t of results.targets) say(`   ${t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${fmt(t.value, 2)} ${t.unit} (target ≤ ${t.limit}${t.unit === 'events' || t.unit === 'writes' ? ', exact' : ''})`);
results.durationSeconds = (Date.now() - started) / 1000;
say(`\n${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}, Mongoose ${results.machine.mongoose}; ${fmt(results.durationSeconds, 0)} s`);
writeFileSync(new URL('./results.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);

await connection.close();
await listener.close();
mongo.stop();
