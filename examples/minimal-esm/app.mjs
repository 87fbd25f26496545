// Minimal ESM registration: one schema, the plugin, one approved write and one rogue write.
// Run: MONGODB_URI=mongodb://127.0.0.1:27017 node examples/minimal-esm/app.mjs
// Prints one JSON line per rogue write and exits 0.
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { close, tripwire } from 'mongoose-tripwire';
import { issueToken } from './auth/tokens.mjs';
import { dropExampleDatabase } from './cleanup.mjs';

const uri = process.env.MONGODB_URI;
if (!uri) {
  console.error('set MONGODB_URI (e.g. `npm run mongo` prints one)');
  process.exit(2);
}

const accessTokenSchema = new mongoose.Schema({ token: { type: String, required: true }, userId: String });
accessTokenSchema.plugin(tripwire, {
  // Relative to root: this example's auth/ folder, and its cleanup (dropping the database drops the tokens).
  approved: ['auth/**', 'cleanup.mjs'],
  root: fileURLToPath(new URL('.', import.meta.url)),
  statsd: false, // no Datadog here: onBypass only
  onBypass: (report) => {
    const { model, operation, kind, callSite, location } = report;
      console.log(JSON.stringify({ model, operation, kind, callSite, location }));
  },
});

// Register first, then compile the model.
const connection = await mongoose.createConnection(uri, { dbName: `tripwire_minimal_esm_${process.pid}` }).asPromise();
const AccessToken = connection.model('AccessToken', accessTokenSchema);

await issueToken(AccessToken, 'user-1'); // approved: the call stack passes through auth/tokens.mjs
await AccessToken.create({ token: 'written-outside-auth', userId: 'user-2' }); // @site rogue-create

await dropExampleDatabase(connection);
await connection.close();
await close(); // flushes and closes what the plugin opened
