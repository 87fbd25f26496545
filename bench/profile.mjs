// One write path in a loop, for a CPU profile of what the plugin adds (not a benchmark: `npm run bench`
// measures). 5,000 writes at stack depth 30 after 500 to warm up, client CPU per write printed.
//   node --cpu-prof --cpu-prof-interval 50 bench/profile.mjs            # a plain model
//   PLUGIN=1 node --cpu-prof --cpu-prof-interval 50 bench/profile.mjs   # the watched model
//   PLUGIN=beside node ... bench/profile.mjs         # a plain model, in a process where another model is watched
//                                                    # (every entry point of it run first): Mongoose's own cost there
//   PLUGIN=beside-plain node ... bench/profile.mjs   # the same with that other model not watched: what to compare with
// OP=save|create|insertMany(10)|findOneAndUpdate|deleteOne picks another write (default updateOne).
// NOIO=1: the driver collection answers at once (bench/no-io.mjs), so the profile is the client's alone.
// N=5000 writes (more for a steadier profile).

import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { tripwire } from '../dist/index.js';
import { startEmbeddedMongo } from '../test/support/spawn-mongo.mjs';
import { seedToken } from './app/auth/seed.mjs';
import { ops } from './app/auth/tokens.mjs';
import { atDepth } from './app/stack.mjs';
import { answerAtOnce } from './no-io.mjs';

const ROOT = fileURLToPath(new URL('./app/', import.meta.url));
const mongo = await startEmbeddedMongo();
const connection = await mongoose.createConnection(mongo.uri, { dbName: `prof_${process.pid}` }).asPromise();
const schema = () => new mongoose.Schema({ token: { type: String, required: true, unique: true }, user: String, scopes: [String] });
const s = schema();
const options = { approved: ['auth/**'], passThrough: ['ops.mjs'], root: ROOT, statsd: false, onError: () => {} };
const beside = process.env.PLUGIN?.startsWith('beside');
if (process.env.PLUGIN && !beside) s.plugin(tripwire, options);
if (beside) {
  const watched = schema();
  if (process.env.PLUGIN === 'beside') watched.plugin(tripwire, options);
  const W = connection.model('Watched', watched);
  await W.init();
  const { everyEntryPoint } = await import('./app/auth/entry-points.mjs');
  await everyEntryPoint(W, 'approved');
}
const M = connection.model('P', s);
await M.init();
if (process.env.NOIO) answerAtOnce(M);
const N = Number(process.env.N ?? 5000);
const id = await seedToken(connection, M);
const c = { id, doc: await M.findById(id) };
const op = process.env.OP ?? 'updateOne';
for (let i = 0; i < 500; i++) await atDepth(30, () => ops[op](M, c));
const t0 = process.cpuUsage();
for (let i = 0; i < N; i++) await atDepth(30, () => ops[op](M, c));
const d = process.cpuUsage(t0);
console.log(
  op,
  beside ? 'plain beside a watched model' : process.env.PLUGIN ? 'plugin' : 'plain',
  ((d.user + d.system) / N).toFixed(1),
  'us/write',
);
await connection.close();
mongo.stop();
process.exit(0);
