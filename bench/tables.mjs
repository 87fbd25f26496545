// Markdown tables of one `npm run bench` run, for docs/benchmarks.md: `node bench/tables.mjs [results.json]`.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? new URL('./results.json', import.meta.url);
const r = JSON.parse(readFileSync(file, 'utf8'));
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const added = (s) => `${s.median >= 0 ? '+' : ''}${fmt(s.median)} [${fmt(s.p25)}–${fmt(s.p75)}]`;
const say = (t = '') => process.stdout.write(`${t}\n`);
const depths = [...new Set(r.approved.map((x) => x.depth))];
const ops = [...new Set(r.approved.map((x) => x.op))];

say(
  `${r.machine.cpus} × ${r.machine.cpu}, Node ${r.machine.node}, Mongoose ${r.machine.mongoose}; load average ` +
    `${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')}; ${fmt(r.durationSeconds, 0)} s` +
    `${r.method.full ? ' (--full)' : ''}; floor: ${r.floor.frames} frames, ${r.floor.reader}`,
);
say();
for (const mode of ['noIo', 'io']) {
  const title = `Approved write, ${mode === 'noIo' ? 'no I/O' : 'with I/O'}: µs of client CPU added`;
  say(`| ${title} | ${depths.map((d) => `depth ${d}`).join(' | ')} |`);
  say(`| --- | ${depths.map(() => '---').join(' | ')} |`);
  for (const op of ops) {
    const cells = depths.map((d) => {
      const x = r.approved.find((a) => a.op === op && a.depth === d)[mode];
      // A ratio of two added costs says something only when both resolved (each one's [p25–p75] above zero).
      const resolved = x.floorAddedUs.p25 > 0 && x.pluginAddedUs.p25 > 0;
      const ratio = resolved ? `**${fmt(x.pluginOverFloor, 2)}×**` : 'n/r';
      return `floor ${added(x.floorAddedUs)}, plugin ${added(x.pluginAddedUs)}: ${ratio} (bare ${fmt(x.bareCpuUs, 0)})`;
    });
    say(`| \`${op}\` | ${cells.join(' | ')} |`);
  }
  say();
}
const readsOf = (op) => [...new Set(r.approved.filter((a) => a.op === op).map((a) => a.stackReads))].join('/');
say(`Stack reads per approved write: ${ops.map((op) => `${op} ${readsOf(op)}`).join(', ')}`);
const control = r.controlAll;
say(`Pooled plain-vs-plain control: ${fmt(control.median, 3)}× [${fmt(control.p25, 2)}–${fmt(control.p75, 2)}] over ${control.n} rounds`);
say();
say(`| Rogue \`updateOne\` held back, extra µs over approved | ${depths.map((d) => `depth ${d}`).join(' | ')} |`);
say(`| --- | ${depths.map(() => '---').join(' | ')} |`);
for (const mode of [...new Set(r.rogue.map((x) => x.mode))]) {
  const cells = depths.map((d) => {
    const x = r.rogue.find((a) => a.mode === mode && a.depth === d);
    return `${added(x.extraUs)} = **${fmt(x.extraInFullReads, 2)}** full-depth reads (${fmt(x.fullReadUs)} µs each)`;
  });
  say(`| ${mode} | ${cells.join(' | ')} |`);
}
say();
const names = Object.keys(r.capture[0]?.us ?? {});
say(`| Stack read alone, µs per call | ${r.capture.map((x) => `depth ${x.depth}`).join(' | ')} |`);
say(`| --- | ${r.capture.map(() => '---').join(' | ')} |`);
for (const n of names) say(`| ${n} | ${r.capture.map((x) => fmt(x.us[n].median, 2)).join(' | ')} |`);
say();
const p = r.process;
if (p.pluginAwait) {
  say(
    `Whole process: await ${fmt(p.bareAwaitNs.median, 0)} ns bare, ${fmt(p.pluginAwait.median, 3)}× with the plugin, ` +
      `${fmt(p.ddtraceAwait.median, 2)}× with dd-trace; a plain model's updateOne @30 with the plugin in the process ` +
      `${fmt(p.pluginPlainWrite.median, 3)}×, with dd-trace ${fmt(p.ddtraceWrite.median, 3)}×`,
  );
}
for (const [v, x] of Object.entries(r.asyncContext ?? {}))
  say(`AsyncLocalStorage, Node ${v}: ${fmt(x.plainNs.median, 0)} → ${fmt(x.alsNs.median, 0)} ns per await`);
const s = r.storm;
if (s.plugin) {
  say(
    `Storm (${s.plugin.writes} writes, medians of ${s.rounds.plain.length} rounds): p99 plain ${fmt(s.plain.p99Ms)} ms, floor ` +
      `${fmt(s.floor.p99Ms)} ms, plugin ${fmt(s.plugin.p99Ms)} ms; added p99 floor ${added(s.floorAddedP99Ms)} ms, plugin ` +
      `${added(s.pluginAddedP99Ms)} ms = ${fmt(s.addedOverFloor, 2)}× the floor's; RSS ${fmt(s.plugin.rssGrowthMb)} MB (plain ` +
      `${fmt(s.plain.rssGrowthMb)}); events ${s.events}, bypasses ${s.bypassesCounted}/${s.expectedBypasses}, ` +
      `suppressed ${s.suppressedCounted}`,
  );
}
for (const x of r.minimalObserver ?? []) {
  say(
    `Wrappers of the statics, approved \`${x.op}\` @30, no I/O: floor ${added(x.floorAddedUs)} µs; the floor's read in a wrapper ` +
      `${added(x.inWrapperAddedUs)} µs (${fmt(x.inWrapperOverFloor, 2)}×); the least observer counting completions ` +
      `${added(x.minimalAddedUs)} µs (${fmt(x.minimalOverFloor, 2)}×); ` +
      `the plugin ${added(x.pluginAddedUs)} µs (${fmt(x.pluginOverFloor, 2)}×)`,
  );
}
for (const x of r.bundled ?? []) {
  say(
    `Bundled app (esbuild, source maps on), approved \`${x.op}\` @30, no I/O: adds ${added(x.bundledAddedUs)} µs from the bundle, ` +
      `${added(x.unbundledAddedUs)} µs from the same modules unbundled`,
  );
}
say();
const unresolved = r.targets.filter((t) => t.pass === 'unresolved');
const failed = r.targets.filter((t) => t.pass === false);
say(`Targets: ${r.targets.filter((t) => t.pass === true).length} PASS, ${failed.length} FAIL, ${unresolved.length} not resolved`);
for (const t of failed) say(`- FAIL ${t.name}: ${fmt(t.value, 2)} (≤ ${t.limit})`);
for (const t of unresolved) say(`- not resolved ${t.name}: ${fmt(t.value, 2)} (≤ ${t.limit})`);
