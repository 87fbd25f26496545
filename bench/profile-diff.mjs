// Where the time of two CPU profiles of bench/profile.mjs differs, per write, by whose code ran (self
// time): `node bench/profile-diff.mjs <plain.cpuprofile> <plugin.cpuprofile> <writes>`. Groups: Mongoose,
// the driver, bson, the plugin's JavaScript, its stack read (the private realm's reader, V8's `stack`
// getter, Node's prepareStackTrace callback), Node, GC. E.g.:
//   NOIO=1 N=40000 node --cpu-prof --cpu-prof-dir=/tmp/p/plain --cpu-prof-interval 50 bench/profile.mjs
//   NOIO=1 N=40000 PLUGIN=1 node --cpu-prof --cpu-prof-dir=/tmp/p/plugin --cpu-prof-interval 50 bench/profile.mjs
import { readFileSync } from 'node:fs';

const [plainFile, pluginFile, writes] = process.argv.slice(2);
const N = Number(writes);
if (!plainFile || !pluginFile || !(N > 0)) throw new Error('usage: profile-diff.mjs <plain.cpuprofile> <plugin.cpuprofile> <writes>');

const READ = new Set(['callSitesAbove', 'get stack', 'prepareStackTraceCallback']);
function groupOf({ url, functionName }) {
  if (READ.has(functionName) || url.includes('call-sites')) return 'stack read';
  if (url.includes('/node_modules/mongoose/')) return 'mongoose';
  if (url.includes('/node_modules/mongodb/')) return 'mongodb driver';
  if (url.includes('/node_modules/bson/')) return 'bson';
  if (url.includes('/node_modules/kareem/') || url.includes('/node_modules/mpath/') || url.includes('/node_modules/sift/'))
    return 'mongoose (its packages)';
  if (url.includes('/dist/')) return 'plugin JavaScript';
  if (url.includes('/bench/')) return 'bench';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)' || functionName === '(program)') return functionName;
  return url.startsWith('node:') ? 'node' : 'other';
}

function groups(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++)
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + profile.timeDeltas[i]);
  const byGroup = new Map();
  for (const node of profile.nodes) {
    const g = groupOf(node.callFrame);
    byGroup.set(g, (byGroup.get(g) ?? 0) + (self.get(node.id) ?? 0));
  }
  return byGroup;
}

const a = groups(plainFile);
const b = groups(pluginFile);
const names = [...new Set([...a.keys(), ...b.keys()])].filter((g) => g !== '(idle)');
const us = (t) => (t ?? 0) / N;
process.stdout.write('group                      plain µs/write   plugin µs/write   difference\n');
const pad = (n, width) => n.toFixed(2).padStart(width);
for (const g of names.sort((x, y) => us(b.get(y)) - us(a.get(y)) - (us(b.get(x)) - us(a.get(x))))) {
  const [p, q] = [us(a.get(g)), us(b.get(g))];
  process.stdout.write(`${g.padEnd(26)} ${pad(p, 14)} ${pad(q, 17)} ${pad(q - p, 12)}\n`);
}
