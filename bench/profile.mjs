// One write path in a loop, for a CPU profile of what the plugin adds (not a benchmark: `npm run bench`
// measures). 5,000 writes at stack depth 30 after 500 to warm up, client CPU per write printed.
//   node --cpu-prof --cpu-prof-interval 50 bench/profile.mjs            # a plain model
//   PLUGIN=1 node --cpu-prof --cpu-prof-interval 50 bench/profile.mjs   # the watched model
// OP=save|create|insertMany(10)|findOneAndUpdate picks another write (default updateOne).

import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { tripwire } from '../dist/index.js';
import { startEmbeddedMongo } from '../test/support/spawn-mongo.mjs';
import { seedToken } from './app/auth/seed.mjs';
import { ops } from './app/auth/tokens.mjs';
import { atDepth } from './app/stack.mjs';

const ROOT = fileURLToPath(new URL('./app/', import.meta.url));
const mongo = await startEmbeddedMongo();
const connection = await mongoose.createConnection(mongo.uri, { dbName: `prof_${process.pid}` }).asPromise();
const schema = () => new mongoose.Schema({ token: { type: String, required: true, unique: true }, user: String, scopes: [String] });
const s = schema();
if (process.env.PLUGIN)
  s.plugin(tripwire, { approved: ['auth/**'], passThrough: ['ops.mjs'], root: ROOT, statsd: false, onError: () => {} });
const M = connection.model('P', s);
await M.init();
const id = await seedToken(connection, M);
const c = { id, doc: await M.findById(id) };
const op = process.env.OP ?? 'updateOne';
for (let i = 0; i < 500; i++) await atDepth(30, () => ops[op](M, c));
const t0 = process.cpuUsage();
for (let i = 0; i < 5000; i++) await atDepth(30, () => ops[op](M, c));
const d = process.cpuUsage(t0);
console.log(op, process.env.PLUGIN ? 'plugin' : 'plain', ((d.user + d.system) / 5000).toFixed(1), 'us/write');
await connection.close();
mongo.stop();
process.exit(0);
