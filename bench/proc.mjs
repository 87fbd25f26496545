// One measuring child process of `npm run bench` (bench/run.mjs starts it; not meant to be run by
// hand). Process-wide costs can only be compared between processes: an AsyncLocalStorage or an
// APM's hooks, once on, stay on. Prints one JSON line on stdout.
//
//   node bench/proc.mjs await <plain|als>                       `await` cost (and with an active AsyncLocalStorage)
//   node bench/proc.mjs process <bare|plugin|ddtrace> <uri>     `await` and a plain model's write, after setup
//   node bench/proc.mjs storm <plain|floor|plugin> <uri> <writes> <statsdPort>
import { AsyncLocalStorage, executionAsyncId } from 'node:async_hooks';
import { channel } from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const [mode, variant, uri, ...rest] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const ROOT = fileURLToPath(new URL('./app/', import.meta.url));
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const out = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

/** ns per `await` of an already-resolved value, in an async function: the cost every app pays. */
async function awaitNs() {
  const N = 400_000;
  const run = async () => {
    for (let i = 0; i < N; i++) await i;
  };
  await run(); // warm-up
  const samples = [];
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - t0) / N);
  }
  return median(samples);
}

if (mode === 'await') {
  if (variant === 'als') {
    const als = new AsyncLocalStorage();
    als.enterWith(true); // as any store set once: from then on the context follows every promise
    await Promise.resolve();
  }
  out({ node: process.version, variant, awaitNs: await awaitNs(), asyncId: executionAsyncId() });
  process.exit(0);
}

// dd-trace must be loaded before Mongoose and the driver, as its docs say; its mongoose and
// mongodb-core integrations are on by default. No agent listens: traces are dropped after encoding.
let tracer;
let driverSpans = 0;
if (variant === 'ddtrace') {
  tracer = require('dd-trace').init({
    service: 'tripwire-bench',
    telemetry: { enabled: false },
    remoteConfig: { enabled: false },
    runtimeMetrics: false,
    startupLogs: false,
    logInjection: false,
    url: 'http://127.0.0.1:9',
  });
  channel('apm:mongodb:query:start').subscribe(() => {
    driverSpans++;
  });
}
const mongoose = require('mongoose');
const { tripwire, close, verify } = await import('../dist/index.js');
const { atDepth } = await import('./app/stack.mjs');
const { ops: approvedOps } = await import('./app/auth/tokens.mjs');
const { ops: legacyOps } = await import('./app/legacy/tokens.mjs');
const { everyEntryPoint } = await import('./app/auth/entry-points.mjs');
const { seedToken } = await import('./app/auth/seed.mjs');

const schema = () => new mongoose.Schema({ token: { type: String, required: true, unique: true }, user: String, scopes: [String] });
// monitorCommands on in every variant: it is the app's setting (what the plugin adds is its listeners).
const connection = await mongoose
  .createConnection(uri, { dbName: `bench_${process.pid}`, maxPoolSize: 20, monitorCommands: true })
  .asPromise();

// Seeded through the approved module: the bench's own setup is no rogue write.
async function seed(M) {
  const insertedId = await seedToken(connection, M);
  return { id: insertedId, doc: await M.findById(insertedId) };
}
async function cpuPerWrite(n, fn) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / n;
}

if (mode === 'process') {
  const Plain = connection.model('Plain', schema());
  let watched;
  if (variant === 'plugin') {
    const s = schema();
    s.plugin(tripwire, {
      approved: ['auth/**'],
      passThrough: ['ops.mjs'],
      root: ROOT,
      operations: ['create', 'update', 'delete', 'read'],
      statsd: { host: '127.0.0.1', port: 9 },
      onError: () => {},
    });
    const Watched = connection.model('Watched', s);
    await Watched.init();
    await everyEntryPoint(Watched, 'approved');
    const ctx = await seed(Watched);
    for (let i = 0; i < 3; i++) await legacyOps.updateOne(Watched, ctx); // a rogue write too
    await legacyOps.create(Watched, ctx);
    const check = verify();
    const counted = check.registrations.flatMap((r) => Object.values(r.unattributedWrites ?? {}));
    watched = { ok: check.ok, unattributedWrites: counted };
  }
  await Plain.init();
  if (variant !== 'plugin') await everyEntryPoint(Plain, 'plain'); // the same workload ran before measuring
  const ctx = await seed(Plain);
  const write = () => atDepth(30, () => approvedOps.updateOne(Plain, ctx));
  await cpuPerWrite(300, write); // warm-up
  const writes = [];
  const awaits = [];
  for (let r = 0; r < 6; r++) {
    writes.push(await cpuPerWrite(150, write));
    awaits.push(await awaitNs());
  }
  out({
    node: process.version,
    variant,
    awaitNs: median(awaits),
    plainWriteCpuUs: median(writes),
    watched,
    driverSpans: tracer ? driverSpans : undefined,
  });
  await close();
  await connection.close();
  process.exit(0);
}

if (mode === 'storm') {
  const [writesArg, statsdPort] = rest;
  const WRITES = Number(writesArg);
  const { sites } = await import('./app/legacy/storm-sites.mjs');
  let M;
  const cap = 30;
  if (variant === 'plugin') {
    const s = schema();
    // 30 events per hour: over a storm of seconds the bucket refills by less than one event.
    s.plugin(tripwire, {
      approved: ['auth/**'],
      passThrough: ['ops.mjs'],
      root: ROOT,
      statsd: { host: '127.0.0.1', port: Number(statsdPort) },
      onError: () => {},
      rateLimit: { perCallSite: { events: 1, intervalMs: 600_000 }, global: { events: cap, intervalMs: 3_600_000 } },
    });
    M = connection.model('Storm', s);
  } else {
    M = connection.model('Storm', schema());
  }
  await M.init();
  const { id } = await seed(M);
  // 'floor': no plugin, but each write preceded by the floor's read (bench/floor.mjs): the fewest
  // frames that know the caller, read without touching the app's Error: what the plugin cannot go below.
  const { floorRead } = await import('./floor.mjs');
  const write =
    variant === 'floor'
      ? (site, ...args) => {
          floorRead();
          return site(...args);
        }
      : (site, ...args) => site(...args);
  const storm = async (writes) => {
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const t0 = Date.now();
    const BATCH = 500;
    for (let done = 0; done < writes; done += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, writes - done) }, (_, i) => write(sites[(done + i) % sites.length], M, id)));
    }
    delay.disable();
    return { seconds: (Date.now() - t0) / 1000, p99Ms: delay.percentile(99) / 1e6, p50Ms: delay.percentile(50) / 1e6 };
  };
  // A first storm grows the heap to its working size; the measured one must not grow it further.
  await storm(Math.min(20_000, WRITES));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  const run = await storm(WRITES);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await close();
  global.gc?.();
  out({
    node: process.version,
    variant,
    writes: WRITES,
    ...run,
    rssGrowthMb: (process.memoryUsage().rss - rssBefore) / 1e6,
    heapGrowthMb: (process.memoryUsage().heapUsed - heapBefore) / 1e6,
    cap,
  });
  await connection.close();
  process.exit(0);
}
throw new Error(`unknown mode ${mode}`);
