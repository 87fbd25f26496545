// `npm run bench`: what the plugin costs, as ratios measured within one run (absolute times on a
// shared machine are noise). Real Mongoose against the embedded wire server (in a child process,
// so its CPU is not the client's); results in bench/results.json (bench/results-node<major>.json
// under another Node major).
//
// Method: every figure is a median over paired rounds. A round runs a short block of writes on
// each variant (two plain models, compiled before and after the instrumented ones, and the others)
// in an order rotated from round to round, and yields one ratio of client CPU per write
// (`process.cpuUsage`) against the mean of the two plain blocks of that round. Slow drift and other
// processes' load hit every variant of a round alike; what is left shows in the spread, printed
// as [p25–p75] of the per-round figures next to every median. The control (second plain model vs
// first) is the resolution of the run: differences inside it are noise.
//
// Process-wide costs (an AsyncLocalStorage, an APM's hooks) and the storm run in child processes
// (bench/proc.mjs), rotated and repeated, on the same server.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as util from 'node:util';
import { promisify } from 'node:util';
import vm from 'node:vm';
import { build } from 'esbuild';
import mongoose from 'mongoose';
import { compileApproval } from '../dist/attribution/approval.js';
import { calledByMongoose, callSiteJudge, stackReadCount } from '../dist/attribution/call-site.js';
import { startListener } from '../dist/cli/listen.js';
import { close, flush, tripwire } from '../dist/index.js';
import { startEmbeddedMongo } from '../test/support/spawn-mongo.mjs';
import { fromAuth } from './app/auth/classify.mjs';
import { seedToken } from './app/auth/seed.mjs';
import { ops as approvedOps } from './app/auth/tokens.mjs';
import { ops as legacyOps } from './app/legacy/tokens.mjs';
import { atDepth } from './app/stack.mjs';
import { FLOOR_FRAMES, floorRead, floorReader, floorReaders } from './floor.mjs';
import { observeMinimally, readInWrapper } from './minimal-observer.mjs';
import { answerAtOnce } from './no-io.mjs';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('./app/', import.meta.url));
const PROC = fileURLToPath(new URL('./proc.mjs', import.meta.url));
// `npm run bench` is the short run (a few minutes on an idle 2-core machine); `npm run bench -- --full`
// the long one the published figures come from. BENCH_* variables override either.
const FULL = process.argv.includes('--full');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (FULL ? 15 : 7));
const BLOCK = Number(process.env.BENCH_BLOCK ?? 30);
// Without I/O a write costs tens of µs: more rounds and longer blocks for the same time.
const NOIO_ROUNDS = Number(process.env.BENCH_NOIO_ROUNDS ?? (FULL ? 21 : 11));
const NOIO_BLOCK = Number(process.env.BENCH_NOIO_BLOCK ?? (FULL ? 200 : 100));
const PROC_ROUNDS = Number(process.env.BENCH_PROC_ROUNDS ?? (FULL ? 3 : 1));
const STORM_WRITES = Number(process.env.BENCH_STORM ?? (FULL ? 100_000 : 10_000));
const STORM_ROUNDS = Number(process.env.BENCH_STORM_ROUNDS ?? (FULL ? 5 : 3));
const DEPTHS = [10, 30, 60];
// BENCH_SECTIONS=1,3 runs only those sections (results.json then holds only them).
const SECTIONS = process.env.BENCH_SECTIONS?.split(',').map(Number);
const section = (n) => !SECTIONS || SECTIONS.includes(n);
const OPS = ['updateOne', 'create', 'save', 'findOneAndUpdate', 'deleteOne', 'insertMany(10)'];
const started = Date.now();
const loadBefore = loadavg();
const say = (text = '') => process.stdout.write(`${text}\n`);
let lapStarted = Date.now();
/** Seconds a section took, printed after it and kept in results.json. */
const lap = (n) => {
  const seconds = (Date.now() - lapStarted) / 1000;
  lapStarted = Date.now();
  if (section(n)) {
    results.sectionSeconds[n] = seconds;
    say(`   (section ${n}: ${fmt(seconds, 0)} s)`);
  }
};

// ---- statistics ----
const quantile = (values, q) => {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (pos - lo);
};
const stat = (values) => ({ median: quantile(values, 0.5), p25: quantile(values, 0.25), p75: quantile(values, 0.75), n: values.length });
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const showRatio = (s) => `${fmt(s.median, 3)}× [${fmt(s.p25, 2)}–${fmt(s.p75, 2)}]`;
const showMs = (s) => `${s.median >= 0 ? '+' : ''}${fmt(s.median, 2)} ms [${fmt(s.p25, 2)}–${fmt(s.p75, 2)}]`;
const showUs = (s) => `${s.median >= 0 ? '+' : ''}${fmt(s.median)} µs [${fmt(s.p25)}–${fmt(s.p75)}]`;

// ---- setup ----
const mongo = await startEmbeddedMongo();
const listener = await startListener({ port: 0 });
const connection = await mongoose.createConnection(mongo.uri, { dbName: `bench_${process.pid}`, maxPoolSize: 20 }).asPromise();
const schema = () => new mongoose.Schema({ token: { type: String, required: true, unique: true }, user: String, scopes: [String] });
const statsd = { host: '127.0.0.1', port: listener.port };
function instrumented(name, options) {
  const s = schema();
  s.plugin(tripwire, { approved: ['auth/**'], passThrough: ['ops.mjs'], root: ROOT, statsd, onError: () => {}, ...options });
  return connection.model(name, s);
}
// Plain models compiled before and after the instrumented ones: later-compiled models measured slower on their own.
// Two sets: one on the server (with I/O), one whose driver collections answer at once (no I/O).
function modelSet(prefix) {
  const set = {
    plainBefore: connection.model(`${prefix}PlainBefore`, schema()),
    tripwired: instrumented(`${prefix}Tripwired`, {}),
    rogue: instrumented(`${prefix}RogueLimited`, {}),
    plainAfter: connection.model(`${prefix}PlainAfter`, schema()),
  };
  return set;
}
const io = modelSet('');
const noIo = modelSet('NoIo');
const RogueLimited = io.rogue;
const models = [...Object.values(io), ...Object.values(noIo)];
await Promise.all(models.map((M) => M.init()));
for (const M of Object.values(noIo)) answerAtOnce(M);
// What the collection caller check costs (a variant without the collection wrappers no longer
// measures it: Mongoose's own writes would then be judged at the driver) is section 3's figure.

// Seeded through the approved module with the raw driver: the bench's own setup is no rogue write.
async function seed(M) {
  const insertedId = await seedToken(connection, M);
  return { id: insertedId, doc: await M.findById(insertedId) };
}
const contexts = new Map();
for (const M of models) contexts.set(M, await seed(M));

// The floor (bench/floor.mjs): the cheapest read that knows the deciding caller of these writes
// (FLOOR_FRAMES frames, the app's Error untouched), done by the caller before a plain model's write.
const returnSites = (_e, sites) => sites;
function oneCapture() {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  Error.prepareStackTrace = returnSites;
  Error.stackTraceLimit = 8;
  const holder = {};
  Error.captureStackTrace(holder, oneCapture);
  const sites = holder.stack;
  Error.prepareStackTrace = prepare;
  Error.stackTraceLimit = limit;
  return sites;
}
const floorCaller = (write) => {
  floorRead();
  return write();
};

/** Client CPU µs per write over a block of `n` sequential writes. */
async function block(n, fn) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / n;
}

/**
 * Paired, rotated rounds. `variants`: { name: () => Promise }; must include `plainBefore` and
 * `plainAfter`. Returns per variant the per-round ratio to the mean plain and added µs, plus the control.
 */
async function paired(variants, { rounds = ROUNDS, n = BLOCK } = {}) {
  const names = Object.keys(variants);
  for (const name of names) await block(Math.max(10, n >> 1), variants[name]); // warm-up
  const perRound = [];
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    if (round % 2) order.reverse();
    const cpu = {};
    for (const name of order) cpu[name] = await block(n, variants[name]);
    perRound.push(cpu);
  }
  const result = {
    control: stat(perRound.map((r) => r.plainAfter / r.plainBefore)),
    bareUs: stat(perRound.map((r) => (r.plainBefore + r.plainAfter) / 2)),
  };
  for (const name of names) {
    result[name] = {
      ratio: stat(perRound.map((r) => r[name] / ((r.plainBefore + r.plainAfter) / 2))),
      addedUs: stat(perRound.map((r) => r[name] - (r.plainBefore + r.plainAfter) / 2)),
    };
  }
  result.rounds = perRound;
  return result;
}

const results = {
  machine: {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memoryGb: Math.round(totalmem() / 1e9),
    node: process.version,
    mongoose: mongoose.version,
    loadAverageAtStart: loadBefore.map((x) => Number(x.toFixed(2))),
  },
  method: {
    rounds: ROUNDS,
    writesPerBlock: BLOCK,
    noIoRounds: NOIO_ROUNDS,
    noIoWritesPerBlock: NOIO_BLOCK,
    processRounds: PROC_ROUNDS,
    full: FULL,
  },
  floor: { frames: FLOOR_FRAMES, reader: floorReader, usPerRead: floorReaders },
  control: [],
  approved: [],
  rogue: [],
  capture: [],
  process: {},
  asyncContext: {},
  storm: {},
  targets: [],
  sectionSeconds: {},
};
// `pass`: true, false, or 'unresolved' when the measurement cannot say (its spread includes no cost at all).
const target = (name, value, limit, unit, pass) => results.targets.push({ name, value, limit, unit, pass: pass ?? value <= limit });
const verdictOf = (pass) => (pass === 'unresolved' ? 'n/r ' : pass ? 'PASS' : 'FAIL');

// Warm-up: every model and every path for a while, so the first section measured is not the JIT's.
for (const M of models) for (const op of OPS) for (let i = 0; i < 60; i++) await atDepth(30, () => approvedOps[op](M, contexts.get(M)));
for (const M of [RogueLimited, noIo.rogue]) for (let i = 0; i < 60; i++) await atDepth(30, () => legacyOps.updateOne(M, contexts.get(M)));
results.warmUpSeconds = (Date.now() - started) / 1000;
lapStarted = Date.now();

say(
  `Machine: ${results.machine.cpus} × ${results.machine.cpu}, Node ${process.version}, Mongoose ${mongoose.version}, load average ` +
    `${loadBefore.map((x) => x.toFixed(1)).join(' ')} at start`,
);
say(
  `Method: paired rounds, rotated (with I/O ${ROUNDS} × ${BLOCK} writes per variant, without I/O ${NOIO_ROUNDS} × ${NOIO_BLOCK}); ` +
    `median [p25–p75] of per-round figures; CPU = client process CPU per write${FULL ? ' (--full)' : ''}`,
);
say(
  `Floor: ${FLOOR_FRAMES} frames read by the caller, the app's Error untouched, with the cheaper reader here: ` +
    `${Object.entries(floorReaders)
      .map(([name, us]) => `${name} ${fmt(us, 2)} µs`)
      .join(', ')} → ${floorReader}\n`,
);

// ---- 1. Approved writes: what the plugin adds vs what the floor adds, without and with I/O ----
const c = (M) => contexts.get(M);
const showAdded = (s) => `${s.median >= 0 ? '+' : ''}${fmt(s.median)} [${fmt(s.p25)}–${fmt(s.p75)}]`;
async function approvedCell(set, op, depth, options) {
  const write = approvedOps[op];
  const r = await paired(
    {
      plainBefore: () => atDepth(depth, () => write(set.plainBefore, c(set.plainBefore))),
      floor: () => atDepth(depth, () => floorCaller(() => write(set.plainAfter, c(set.plainAfter)))),
      tripwired: () => atDepth(depth, () => write(set.tripwired, c(set.tripwired))),
      plainAfter: () => atDepth(depth, () => write(set.plainAfter, c(set.plainAfter))),
    },
    options,
  );
  results.control.push(...r.rounds.map((x) => x.plainAfter / x.plainBefore));
  return {
    bareCpuUs: r.bareUs.median,
    control: r.control,
    floorAddedUs: r.floor.addedUs,
    pluginAddedUs: r.tripwired.addedUs,
    plugin: r.tripwired.ratio,
    pluginOverFloor: r.tripwired.addedUs.median / r.floor.addedUs.median,
  };
}
if (section(1)) {
  say('1. Approved writes (the auth module calls Mongoose through a pass-through helper): client CPU µs a write adds over a plain model');
  say('   per mode: bare write | floor added | plugin added | plugin added / floor added (target ≤ 1.25); then the stack reads per write');
  for (const depth of DEPTHS) {
    for (const op of OPS) {
      const none = await approvedCell(noIo, op, depth, { rounds: NOIO_ROUNDS, n: NOIO_BLOCK });
      const withIo = await approvedCell(io, op, depth);
      // How many times the plugin read the stack per write (the write's own call, Mongoose's calls back).
      const readsBefore = stackReadCount();
      for (let i = 0; i < 10; i++) await atDepth(depth, () => approvedOps[op](noIo.tripwired, c(noIo.tripwired)));
      const stackReads = (stackReadCount() - readsBefore) / 10;
      results.approved.push({ op, depth, noIo: none, io: withIo, stackReads });
      const cell = (x) =>
        `${fmt(x.bareCpuUs, 0)} | ${showAdded(x.floorAddedUs)} | ${showAdded(x.pluginAddedUs)} | ${fmt(x.pluginOverFloor, 2)}×`;
      say(`   ${op.padEnd(16)} @${String(depth).padStart(2)}  no I/O: ${cell(none)}  ‖ I/O: ${cell(withIo)}  ‖ reads ${stackReads}`);
      // A ratio of two added costs means something only when both resolved: each one's [p25–p75] above zero.
      const vsFloor = (x) => (x.floorAddedUs.p25 > 0 && x.pluginAddedUs.p25 > 0 ? x.pluginOverFloor <= 1.25 : 'unresolved');
      target(`approved ${op} @${depth}, no I/O: plugin added / floor added`, none.pluginOverFloor, 1.25, '×', vsFloor(none));
      target(`approved ${op} @${depth}, I/O: plugin added / floor added`, withIo.pluginOverFloor, 1.25, '×', vsFloor(withIo));
      // insertMany: Mongoose calls the collection after validating, with documents it built then: one frame is read there.
      target(`approved ${op} @${depth}: stack reads per write`, stackReads, op.startsWith('insertMany') ? 2 : 1, 'reads');
    }
  }
  const control = stat(results.control);
  results.controlAll = control;
  say(`   plain-vs-plain control over all ${control.n} rounds: ${showRatio(control)}`);
  target('plain-vs-plain control within ±3 %', Math.abs(control.median - 1) * 100, 3, '%');
}

lap(1);
// ---- 2. Rogue writes held back by the rate limit ----
if (section(2)) {
  say('\n2. Rogue updateOne held back by the rate limit vs the same write approved (extra CPU per write)');
  for (const [mode, set, options] of [
    ['no I/O', noIo, { rounds: NOIO_ROUNDS, n: NOIO_BLOCK }],
    ['I/O', io, {}],
  ]) {
    await legacyOps.updateOne(set.rogue, c(set.rogue)); // its call site's one event is long spent
    for (const depth of DEPTHS) {
      const r = await paired(
        {
          plainBefore: () => atDepth(depth, () => approvedOps.updateOne(set.plainBefore, c(set.plainBefore))),
          approved: () => atDepth(depth, () => approvedOps.updateOne(set.tripwired, c(set.tripwired))),
          rogue: () => atDepth(depth, () => legacyOps.updateOne(set.rogue, c(set.rogue))),
          plainAfter: () => atDepth(depth, () => approvedOps.updateOne(set.plainAfter, c(set.plainAfter))),
        },
        options,
      );
      const extra = stat(r.rounds.map((x) => x.rogue - x.approved));
      results.rogue.push({ mode, depth, approved: r.approved.ratio, rogue: r.rogue.ratio, extraUs: extra, control: r.control });
      say(
        `   ${mode.padEnd(6)} @${String(depth).padStart(2)}: approved ${showRatio(r.approved.ratio)}, rogue ${showRatio(r.rogue.ratio)}; ` +
          `rogue − approved ${showUs(extra)} (control ${showRatio(r.control)})`,
      );
    }
  }
}

lap(2);
// Sanity: the approved variants were judged approved and the rogue one rogue (under the rule of
// who decides, a write call made outside the auth module is rogue): else the figures above measure another path.
if (section(1) || section(2)) {
  await flush();
  const bypassesOf = (model) =>
    [...listener.counters()]
      .filter(([key]) => key.startsWith('tripwire.bypasses|') && key.split(/[|,]/).includes(`model:${model}`))
      .reduce((n, [, v]) => n + v, 0);
  await listener.waitFor(() => bypassesOf('RogueLimited') > 0, 3_000).catch(() => undefined);
  const v = {
    Tripwired: bypassesOf('Tripwired') + bypassesOf('NoIoTripwired'),
    RogueLimited: bypassesOf('RogueLimited') + bypassesOf('NoIoRogueLimited'),
  };
  results.verdicts = v;
  say(`   verdicts: rogue writes counted on the approved model ${v.Tripwired}, on the rogue model ${v.RogueLimited}`);
  target('approved variant: no write judged rogue', v.Tripwired, 0, 'writes', v.Tripwired === 0);
  target('rogue variant: its writes judged rogue (count > 0)', v.RogueLimited, Infinity, 'rogue writes', v.RogueLimited > 0);
}

// ---- 3. The stack read itself (no I/O), per depth ----
if (section(3))
  say(
    "\n3. The stack read alone (µs per call, no I/O): one capture, the plugin's approved and rogue verdicts (rogue: with its trace read, " +
      'or held back when called), a full-depth read',
  );
if (section(3)) {
  const approval = compileApproval({ approved: ['auth/**'], passThrough: ['ops.mjs'], root: ROOT });
  function fullRead() {
    // what a rogue write reads once more: the whole stack (up to 200 frames)
    const prepare = Error.prepareStackTrace;
    const limit = Error.stackTraceLimit;
    Error.prepareStackTrace = returnSites;
    Error.stackTraceLimit = 200;
    const holder = {};
    Error.captureStackTrace(holder, fullRead);
    const sites = holder.stack;
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
    return sites;
  }
  // As a wrapper judges its call: the read right above it, then the verdict.
  const rethrow = (error) => {
    throw error;
  };
  const judge = callSiteJudge(approval, 50, false, undefined, rethrow);
  // A rogue write whose call site's events are spent when it is called: no full read for its trace.
  const judgeSpent = callSiteJudge(approval, 50, false, () => true, rethrow);
  function approved() {
    return judge(approved);
  }
  function rogue() {
    return judge(rogue).callSite;
  }
  function rogueHeldBack() {
    return judgeSpent(rogueHeldBack).callSite;
  }
  // Mongoose's own write through a watched collection: the caller check, called from a function whose
  // file is Mongoose's lib/ (as Mongoose's query calls the collection method).
  function mongooseCheck() {
    return calledByMongoose(mongooseCheck);
  }
  const fromMongoose = vm.runInThisContext('(function mongooseCalls(fn) { return fn(); })', {
    filename: fileURLToPath(new URL('../node_modules/mongoose/lib/query.js', import.meta.url)),
  });
  if (fromMongoose(mongooseCheck) !== true) throw new Error('the Mongoose-caller check did not recognise Mongoose');
  const getCallSites = typeof util.getCallSites === 'function' ? util.getCallSites : undefined;
  const variants = {
    [`the floor (${FLOOR_FRAMES} frames, ${floorReader})`]: (d) => atDepth(d, floorRead),
    'one capture (8 CallSites, main realm)': (d) => atDepth(d, oneCapture),
    'plugin, approved': (d) => atDepth(d, () => fromAuth(approved)),
    'plugin, rogue (call site built)': (d) => atDepth(d, rogue),
    'plugin, rogue held back when called': (d) => atDepth(d, rogueHeldBack),
    'full-depth read': (d) => atDepth(d, fullRead),
    'caller check on a Mongoose-internal collection call': (d) => atDepth(d, () => fromMongoose(mongooseCheck)),
    ...(getCallSites ? { 'util.getCallSites(3)': (d) => atDepth(d, () => getCallSites(3)) } : {}),
  };
  const names = Object.keys(variants);
  for (const depth of DEPTHS) {
    const N = 2000;
    const samples = Object.fromEntries(names.map((n) => [n, []]));
    for (const n of names) for (let i = 0; i < N; i++) variants[n](depth);
    for (let round = 0; round < 9; round++) {
      for (const n of names.map((_, i) => names[(i + round) % names.length])) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) variants[n](depth);
        samples[n].push(Number(process.hrtime.bigint() - t0) / N / 1000);
      }
    }
    // The depth-only baseline: the recursion without any capture.
    const row = { depth, us: Object.fromEntries(names.map((n) => [n, stat(samples[n])])) };
    results.capture.push(row);
    say(`   @${String(depth).padStart(2)}: ${names.map((n) => `${n} ${fmt(row.us[n].median, 2)}`).join('; ')}`);
  }
  for (const rogue of results.rogue) {
    const full = results.capture.find((row) => row.depth === rogue.depth).us['full-depth read'].median;
    rogue.fullReadUs = full;
    rogue.extraInFullReads = rogue.extraUs.median / full;
    say(
      `   rogue held back, ${rogue.mode} @${rogue.depth}: ${fmt(rogue.extraUs.median)} µs more than approved = ` +
        `${fmt(rogue.extraInFullReads, 2)} full-depth reads (${fmt(full, 1)} µs each)`,
    );
    target(`rogue held back, ${rogue.mode} @${rogue.depth}: extra vs approved, in full-depth reads`, rogue.extraInFullReads, 1, 'reads');
  }
}

lap(3);
// ---- 4. Process-wide: after every entry point has run (reads on, monitorCommands on); dd-trace ----
const child = async (args, env = {}) => {
  const { stdout } = await run(process.execPath, ['--expose-gc', PROC, ...args], {
    env: { ...process.env, ...env },
    maxBuffer: 1 << 24,
    timeout: 600_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop());
};
if (section(4)) {
  say(
    `\n4. Whole process, after every entry point has run on a watched model (reads on, monitorCommands on), ${PROC_ROUNDS} rotated ` +
      `rounds of one process each`,
  );
  {
    const variants = ['bare', 'plugin', 'ddtrace'];
    const runs = Object.fromEntries(variants.map((v) => [v, []]));
    for (let round = 0; round < PROC_ROUNDS; round++) {
      for (const v of variants.map((_, i) => variants[(i + round) % variants.length])) runs[v].push(await child(['process', v, mongo.uri]));
    }
    const ratio = (v, key) => stat(runs[v].map((x, i) => x[key] / runs.bare[i][key]));
    const p = {
      bareAwaitNs: stat(runs.bare.map((x) => x.awaitNs)),
      bareWriteCpuUs: stat(runs.bare.map((x) => x.plainWriteCpuUs)),
      pluginAwait: ratio('plugin', 'awaitNs'),
      pluginPlainWrite: ratio('plugin', 'plainWriteCpuUs'),
      ddtraceAwait: ratio('ddtrace', 'awaitNs'),
      ddtraceWrite: ratio('ddtrace', 'plainWriteCpuUs'),
      pluginAwaitNs: stat(runs.plugin.map((x) => x.awaitNs)),
      ddtraceAwaitNs: stat(runs.ddtrace.map((x) => x.awaitNs)),
      commandCounting: runs.plugin[0]?.watched,
      ddtraceDriverSpans: runs.ddtrace.map((x) => x.driverSpans),
      runs,
    };
    results.process = p;
    say(
      `   await: ${fmt(p.bareAwaitNs.median, 0)} ns bare; with the plugin ${fmt(p.pluginAwaitNs.median, 0)} ns ` +
        `(${showRatio(p.pluginAwait)}); with dd-trace ${fmt(p.ddtraceAwaitNs.median, 0)} ns (${showRatio(p.ddtraceAwait)})`,
    );
    say(
      `   a plain model's updateOne @30 (${fmt(p.bareWriteCpuUs.median, 0)} µs bare): with the plugin in the process ` +
        `${showRatio(p.pluginPlainWrite)}; with dd-trace (its mongoose/mongodb spans on that write) ${showRatio(p.ddtraceWrite)}`,
    );
    say(
      `   (unattributed-write counting: ${JSON.stringify(p.commandCounting?.unattributedWrites)}; dd-trace driver spans seen per ` +
        `process: ${p.ddtraceDriverSpans.join(', ')})`,
    );
    target('await after every entry point (monitorCommands on)', p.pluginAwait.median, 1.3, '×');
    target('plain model write with the plugin in the process', p.pluginPlainWrite.median, 1.05, '×');
  }
}

lap(4);
// ---- 5. What an active AsyncLocalStorage costs every `await`, per Node version ----
if (section(5)) {
  say('\n5. An active AsyncLocalStorage: ns per `await` in the whole process');
  const nodes = [process.execPath, ...(process.env.BENCH_OTHER_NODES ?? '').split(':').filter(Boolean)];
  for (const node of nodes) {
    const one = async (variant) => JSON.parse((await run(node, [PROC, 'await', variant])).stdout.trim().split('\n').pop());
    const plain = [];
    const als = [];
    for (let i = 0; i < 3; i++) {
      plain.push(await one('plain'));
      als.push(await one('als'));
    }
    const version = plain[0].node;
    const row = { plainNs: stat(plain.map((x) => x.awaitNs)), alsNs: stat(als.map((x) => x.awaitNs)) };
    results.asyncContext[version] = row;
    say(
      `   Node ${version}: ${fmt(row.plainNs.median, 0)} ns plain, ${fmt(row.alsNs.median, 0)} ns with an AsyncLocalStorage entered once ` +
        `(${fmt(row.alsNs.median / row.plainNs.median, 2)}×)`,
    );
  }
}

lap(5);
// ---- 6. Storm ----
if (section(6)) {
  say(
    `\n6. Storm: ${STORM_WRITES.toLocaleString('en')} rogue writes from 50 call sites, 500 in flight, each in its own process (after a ` +
      `warm-up storm), ${STORM_ROUNDS} rotated rounds`,
  );
  {
    await close();
    listener.datagrams.length = 0;
    // Rotated rounds of one process per variant; the figures are medians over rounds (p99 per process).
    const storms = { plain: [], floor: [], plugin: [] };
    const kinds = Object.keys(storms);
    for (let round = 0; round < STORM_ROUNDS; round++) {
      for (const v of kinds.map((_, i) => kinds[(i + round) % kinds.length]))
        storms[v].push(await child(['storm', v, mongo.uri, String(STORM_WRITES), String(listener.port)]));
    }
    const middle = (runs) => [...runs].sort((a, b) => a.p99Ms - b.p99Ms)[(runs.length - 1) >> 1];
    const plain = middle(storms.plain);
    const floor = middle(storms.floor);
    const plugin = middle(storms.plugin);
    const addedP99 = (v) => stat(storms[v].map((x, i) => x.p99Ms - storms.plain[i].p99Ms));
    const warm = Math.min(20_000, STORM_WRITES) * STORM_ROUNDS;
    const sum = (name) =>
      [...listener.counters()]
        .filter(([key]) => key.startsWith(`tripwire.${name}|`) && key.split(/[|,]/).includes('model:Storm'))
        .reduce((n, [, v]) => n + v, 0);
    await listener.waitFor(() => sum('bypasses') >= STORM_WRITES * STORM_ROUNDS + warm, 5_000).catch(() => undefined);
    const events = listener.datagrams.filter((d) => d.type === 'event' && d.tags.includes('model:Storm')).length;
    const s = {
      plain,
      floor,
      floorP99Ratio: floor.p99Ms / plain.p99Ms,
      plugin,
      events,
      cap: plugin.cap,
      bypassesCounted: sum('bypasses'),
      suppressedCounted: sum('events_suppressed'),
      expectedBypasses: STORM_WRITES * STORM_ROUNDS + warm,
      floorAddedP99Ms: addedP99('floor'),
      pluginAddedP99Ms: addedP99('plugin'),
      rounds: storms,
      p99Ratio: plugin.p99Ms / plain.p99Ms,
      malformed: listener.malformed.length,
    };
    results.storm = s;
    say(`   without the plugin: ${fmt(plain.seconds)} s, event-loop p99 ${fmt(plain.p99Ms)} ms, RSS ${fmt(plain.rssGrowthMb)} MB`);
    say(
      `   the floor (no plugin, one ${FLOOR_FRAMES}-frame read per write): ${fmt(floor.seconds)} s, event-loop p99 ` +
        `${fmt(floor.p99Ms)} ms ` +
        `(${fmt(s.floorP99Ratio, 2)}×)`,
    );
    say(
      `   with the plugin:    ${fmt(plugin.seconds)} s, event-loop p99 ${fmt(plugin.p99Ms)} ms (${fmt(s.p99Ratio, 2)}×), RSS ` +
        `${fmt(plugin.rssGrowthMb)} MB (heap after GC ${fmt(plugin.heapGrowthMb)} MB)`,
    );
    say(
      `   events sent ${events} (cap ${s.cap} per process); bypasses counted ${s.bypassesCounted} of ${s.expectedBypasses}; suppressed ` +
        `${s.suppressedCounted}; malformed datagrams ${s.malformed}`,
    );
    s.addedOverFloor = s.pluginAddedP99Ms.median / s.floorAddedP99Ms.median;
    say(
      `   added event-loop p99 over the plain storm (median [p25–p75] of ${STORM_ROUNDS} rounds): floor ${showMs(s.floorAddedP99Ms)}, ` +
        `plugin ${showMs(s.pluginAddedP99Ms)}: ${fmt(s.addedOverFloor, 2)}× the floor's`,
    );
    // As in section 1: a ratio of two added costs is judged only when both resolved (p25 above zero).
    const stormResolved = s.floorAddedP99Ms.p25 > 0 && s.pluginAddedP99Ms.p25 > 0;
    target(
      "storm: plugin's added event-loop p99 / the floor's",
      s.addedOverFloor,
      1.5,
      '×',
      stormResolved ? s.addedOverFloor <= 1.5 : 'unresolved',
    );
    target('storm: event-loop p99 vs no plugin', s.p99Ratio, 1.25, '×');
    target('storm: RSS growth', plugin.rssGrowthMb, 10, 'MB');
    // The plain storm grows RSS too (Mongoose, the driver, the allocator keeping pages): what is the plugin's is the difference.
    target("storm: RSS growth over the plain storm's", plugin.rssGrowthMb - plain.rssGrowthMb, 10, 'MB');
    // Each plugin process has its own rate limiter: cap events each.
    target('storm: events == rate-limit cap per process', events, s.cap * STORM_ROUNDS, 'events', events === s.cap * STORM_ROUNDS);
    target(
      'storm: counters exact',
      s.bypassesCounted,
      s.expectedBypasses,
      'writes',
      s.bypassesCounted === s.expectedBypasses && s.suppressedCounted === s.expectedBypasses - events,
    );
  }
}

lap(6);
// ---- 8. What any wrapper-based observer pays before the plugin's own work (bench/minimal-observer.mjs) ----
// Before 7, which turns Node's source maps on for the rest of the process.
if (section(8)) {
  say(
    "\n8. What a wrapper of Mongoose's statics pays (bench/minimal-observer.mjs): the floor's read made in a wrapper, and the least " +
      'observer that counts completed writes; approved, no I/O, @30',
  );
  const inWrapper = connection.model('NoIoReadInWrapper', schema());
  const minimal = connection.model('NoIoMinimalObserver', schema());
  for (const M of [inWrapper, minimal]) {
    await M.init();
    answerAtOnce(M);
    contexts.set(M, await seed(M));
  }
  readInWrapper(inWrapper);
  const counts = observeMinimally(minimal, pathToFileURL(join(ROOT, 'auth/')).href);
  results.minimalObserver = [];
  for (const op of ['updateOne', 'deleteOne']) {
    const write = approvedOps[op];
    for (const M of [inWrapper, minimal]) for (let i = 0; i < 500; i++) await atDepth(30, () => write(M, c(M)));
    const r = await paired(
      {
        plainBefore: () => atDepth(30, () => write(noIo.plainBefore, c(noIo.plainBefore))),
        floor: () => atDepth(30, () => floorCaller(() => write(noIo.plainAfter, c(noIo.plainAfter)))),
        inWrapper: () => atDepth(30, () => write(inWrapper, c(inWrapper))),
        minimal: () => atDepth(30, () => write(minimal, c(minimal))),
        tripwired: () => atDepth(30, () => write(noIo.tripwired, c(noIo.tripwired))),
        plainAfter: () => atDepth(30, () => write(noIo.plainAfter, c(noIo.plainAfter))),
      },
      { rounds: 12 * NOIO_ROUNDS, n: NOIO_BLOCK },
    );
    const overFloor = (variant) => r[variant].addedUs.median / r.floor.addedUs.median;
    const row = {
      op,
      floorAddedUs: r.floor.addedUs,
      inWrapperAddedUs: r.inWrapper.addedUs,
      minimalAddedUs: r.minimal.addedUs,
      pluginAddedUs: r.tripwired.addedUs,
      inWrapperOverFloor: overFloor('inWrapper'),
      minimalOverFloor: overFloor('minimal'),
      pluginOverFloor: overFloor('tripwired'),
      control: r.control,
    };
    results.minimalObserver.push(row);
    say(
      `   ${op.padEnd(10)} floor ${showAdded(row.floorAddedUs)} | read in a wrapper ${showAdded(row.inWrapperAddedUs)}: ` +
        `${fmt(row.inWrapperOverFloor, 2)}× | least observer ${showAdded(row.minimalAddedUs)}: ${fmt(row.minimalOverFloor, 2)}× | ` +
        `plugin ${showAdded(row.pluginAddedUs)}: ${fmt(row.pluginOverFloor, 2)}×  (control ${showRatio(r.control)})`,
    );
  }
  if (counts.rogue !== 0 || counts.approved === 0)
    throw new Error(`the least observer misjudged the bench's writes: ${JSON.stringify(counts)}`);
}

lap(8);
// ---- 7. A bundled app's approved write ----
// Last: it turns Node's source maps on for the rest of this process. The same auth module and helper,
// bundled with esbuild (source map beside it) and judged position by position, against the same
// modules unbundled, on the same watched model, without I/O.
if (section(7)) {
  say('\n7. A bundled app (esbuild, source maps on): an approved write from the bundle vs from the same modules unbundled, no I/O');
  process.setSourceMapsEnabled(true);
  const dir = mkdtempSync(join(tmpdir(), 'tripwire-bench-bundle-'));
  const bundle = join(dir, 'auth.mjs');
  await build({
    stdin: { contents: "export { ops } from './auth/tokens.mjs';", resolveDir: ROOT, sourcefile: 'bundle-entry.mjs' },
    outfile: bundle,
    bundle: true,
    format: 'esm',
    platform: 'node',
    sourcemap: true,
    logLevel: 'silent',
  });
  const { ops: bundledOps } = await import(pathToFileURL(bundle).href);
  results.bundled = [];
  for (const op of ['updateOne', 'create']) {
    const set = noIo;
    // The bundle's code is new to the JIT: warm it as the other variants were warmed.
    for (let i = 0; i < 2_000; i++) await atDepth(30, () => bundledOps[op](set.tripwired, c(set.tripwired)));
    const r = await paired(
      {
        plainBefore: () => atDepth(30, () => approvedOps[op](set.plainBefore, c(set.plainBefore))),
        unbundled: () => atDepth(30, () => approvedOps[op](set.tripwired, c(set.tripwired))),
        bundled: () => atDepth(30, () => bundledOps[op](set.tripwired, c(set.tripwired))),
        plainAfter: () => atDepth(30, () => approvedOps[op](set.plainAfter, c(set.plainAfter))),
      },
      { rounds: 2 * NOIO_ROUNDS, n: NOIO_BLOCK },
    );
    const row = { op, unbundledAddedUs: r.unbundled.addedUs, bundledAddedUs: r.bundled.addedUs, control: r.control };
    results.bundled.push(row);
    say(
      `   ${op.padEnd(10)} @30: unbundled adds ${showAdded(row.unbundledAddedUs)} µs, bundled adds ${showAdded(row.bundledAddedUs)} µs ` +
        `(control ${showRatio(r.control)})`,
    );
  }
  const rogue = stackReadCount();
  await bundledOps.updateOne(noIo.tripwired, c(noIo.tripwired));
  say(`   verdict from the bundle: approved, ${stackReadCount() - rogue} stack read`);
  rmSync(dir, { recursive: true, force: true });
}

lap(7);
say('\nTargets:');
for (const t of results.targets)
  say(
    `   ${verdictOf(t.pass)}  ${t.name}: ${fmt(t.value, 3)} ${t.unit} (target ≤ ` +
      `${t.limit}${t.unit === 'events' || t.unit === 'writes' ? ', exact' : ''})`,
  );
results.durationSeconds = (Date.now() - started) / 1000;
results.machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
say(
  `\n${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}, Mongoose ${results.machine.mongoose}; load average ` +
    `${loadBefore.map((x) => x.toFixed(1)).join(' ')} → ${results.machine.loadAverageAtEnd.join(' ')}; ` +
    `${fmt(results.durationSeconds, 0)} s`,
);
const major = Number(process.versions.node.split('.')[0]);
const file = process.env.BENCH_OUT ?? (major === 20 ? './results.json' : `./results-node${major}.json`);
for (const row of [results.process]) delete row.runs?.bare?.rounds;
writeFileSync(new URL(file, import.meta.url), `${JSON.stringify(results, null, 2)}\n`);

await connection.close();
await listener.close();
mongo.stop();
