// CommonJS registration: `require('mongoose-tripwire')` loads the package's ESM build through
// Node's require(esm) (Node >= 20.19, no flag).
// Run: MONGODB_URI=mongodb://127.0.0.1:27017 node examples/commonjs/app.cjs
// Prints one JSON line per rogue write and exits 0.
const mongoose = require('mongoose');
const { tripwire, close } = require('mongoose-tripwire');
const { issueToken } = require('./auth/tokens.cjs');
const { dropExampleDatabase } = require('./cleanup.cjs');

async function main() {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('set MONGODB_URI (e.g. `npm run mongo` prints one)');

  const accessTokenSchema = new mongoose.Schema({ token: { type: String, required: true }, userId: String });
  accessTokenSchema.plugin(tripwire, {
    // Relative to root: this example's auth/ folder, and its cleanup (dropping the database drops the tokens).
    approved: ['auth/**', 'cleanup.cjs'],
    root: __dirname,
    statsd: false, // no Datadog here: onBypass only
    onBypass: (report) => {
      const { model, operation, kind, callSite, location } = report;
      console.log(JSON.stringify({ model, operation, kind, callSite, location }));
    },
  });

  // Register first, then compile the model.
  const connection = await mongoose.createConnection(uri, { dbName: `tripwire_commonjs_${process.pid}` }).asPromise();
  const AccessToken = connection.model('AccessToken', accessTokenSchema);

  await issueToken(AccessToken, 'user-1'); // approved: the call stack passes through auth/tokens.cjs
  await AccessToken.updateOne({ userId: 'user-1' }, { $set: { userId: 'user-3' } }); // @site rogue-update

  await dropExampleDatabase(connection);
  await connection.close();
  await close(); // flushes and closes what the plugin opened
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
