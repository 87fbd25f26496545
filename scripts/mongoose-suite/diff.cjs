'use strict';
// Compares two mocha JSON reports of Mongoose's suite, plain and with the plugin.
//   node diff.cjs PLAIN.json PLUGIN.json [COUNTS.json]   exit 1 when a test that passed plain failed or
//                                                        never ran with the plugin
//   node diff.cjs --aborted RUN.json                     exit 1 when mocha aborted the run
const fs = require('node:fs');

const load = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
// Tests are matched by file (relative to Mongoose's tree) and full title: titles repeat across files.
const fileOf = (t) => (t.file || '').replace(/^.*\/node_modules\/mongoose\//, '');
const key = (t) => `${fileOf(t)} :: ${t.fullTitle}`;
const firstLine = (t) =>
  String(t.err?.message || '')
    .split('\n')[0]
    .slice(0, 200);
const isHook = (t) => /"(before|after) (all|each)" hook/.test(t.fullTitle);

if (process.argv[2] === '--aborted') {
  // A late rejection (an unsupported server command answered after its test passed) makes mocha
  // report that test again as failed and stop the run: a test both passed and failed marks it.
  const run = load(process.argv[3]);
  const passed = new Set(run.passes.map(key));
  process.exit(run.failures.some((t) => passed.has(key(t))) ? 1 : 0);
}

const [plain, plugin] = process.argv.slice(2, 4).map(load);
const counts = process.argv[4] && fs.existsSync(process.argv[4]) ? load(process.argv[4]) : undefined;

const passedPlain = plain.passes.map(key);
const failedPlain = new Set(plain.failures.map(key));
const failedWithPlugin = new Map(plugin.failures.map((t) => [key(t), t]));
const passedWithPlugin = new Set(plugin.passes.map(key));
const ranWithPlugin = new Set([...passedWithPlugin, ...failedWithPlugin.keys(), ...(plugin.pending || []).map(key)]);

const broken = passedPlain.filter((k) => failedWithPlugin.has(k)).sort();
// A failed hook skips the rest of its suite and an aborted file stops: those tests never ran.
const neverRan = passedPlain.filter((k) => !ranWithPlugin.has(k));
const unchanged = passedPlain.filter((k) => passedWithPlugin.has(k)).length;
const fixed = [...failedPlain].filter((k) => passedWithPlugin.has(k)).length;

const line = (label, { stats: s }) =>
  `${label} ${s.passes} passed, ${s.failures} failed, ${s.pending} pending (${Math.round(s.duration / 1000)} s)`;
console.log(line('plain: ', plain));
console.log(line('plugin:', plugin));
if (counts) {
  console.log(`plugin: ${counts.bypasses} rogue writes reported to onBypass`);
  for (const f of counts.faults) console.log(`plugin fault: ${f}`);
}

for (const k of broken) console.log(`PASS -> FAIL  ${k}\n    ${firstLine(failedWithPlugin.get(k))}`);
const neverRanByFile = new Map();
for (const k of neverRan) {
  const file = k.split(' :: ')[0];
  neverRanByFile.set(file, (neverRanByFile.get(file) || 0) + 1);
}
for (const [file, n] of neverRanByFile) console.log(`PASS -> NOT RUN  ${file}: ${n} tests passed plain and never ran with the plugin`);
for (const t of plugin.failures.filter((t) => isHook(t) && !failedPlain.has(key(t)))) {
  console.log(`HOOK FAILED with the plugin only  ${key(t)}\n    ${firstLine(t)}`);
}
// A hook failing in both runs is the server's limit (serverStatus, explain, ...): the tests behind it
// are skipped in both and not compared. One failing plain only is a timeout under load.
const failedHooks = plugin.failures.filter(isHook);
const bothHooks = plain.failures.filter((t) => isHook(t) && failedWithPlugin.has(key(t)));
const plainOnlyHooks = plain.failures.filter((t) => isHook(t) && !failedWithPlugin.has(key(t)));
if (bothHooks.length) console.log(`(${bothHooks.length} hooks failed in both runs: the server's limits; their tests are not compared)`);
for (const t of plainOnlyHooks) console.log(`(hook failed plain only  ${key(t)}: ${firstLine(t)})`);
if (fixed) console.log(`(${fixed} tests failed plain and passed with the plugin: flaky in this setup)`);

// Under load a test or hook can time out in one run only: those files deserve a run on their own.
const timedOut = (t) => /^Timeout of \d+ms exceeded/.test(firstLine(t));
const suspects = new Set([
  ...neverRanByFile.keys(),
  ...broken.filter((k) => timedOut(failedWithPlugin.get(k))).map((k) => k.split(' :: ')[0]),
  ...failedHooks.filter((t) => !failedPlain.has(key(t))).map(fileOf),
  ...plainOnlyHooks.map(fileOf),
]);
if (suspects.size) console.log(`timeouts or skipped tests: rerun these files alone before counting: ${[...suspects].join(' ')}`);
console.log(
  `mongoose-suite: ${passedPlain.length} passed plain: ${unchanged} unchanged with the plugin, ` +
    `${broken.length} broken, ${neverRan.length} never ran`,
);
process.exit(broken.length + neverRan.length ? 1 : 0);
