// TypeScript registration, with the options type-checked against the published types.
// Build and run (source maps on, so reports point at the .ts lines):
//   npx tsc -p examples/typescript
//   MONGODB_URI=mongodb://127.0.0.1:27017 node --enable-source-maps examples/typescript/dist/app.js
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { close, tripwire, type BypassReport, type TripwireOptions } from 'mongoose-tripwire';
import { issueToken, type AccessTokenFields } from './auth/tokens.js';
import { dropExampleDatabase } from './cleanup.js';

async function main(): Promise<void> {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('set MONGODB_URI (e.g. `npm run mongo` prints one)');

  const options: TripwireOptions = {
    // Run with source maps on, the compiled dist/auth/*.js files are approved through their
    // sources (src/auth/*.ts), and reports show src/*.ts paths and lines. Without source maps,
    // approve the compiled files too: ['src/auth/**', 'dist/auth/**'].
    // The example's cleanup too: dropping the database drops the tokens collection.
    approved: ['src/auth/**', 'src/cleanup.ts'],
    root: fileURLToPath(new URL('..', import.meta.url)), // examples/typescript/, from src/ or dist/
    statsd: false, // no Datadog here: onBypass only
    onBypass: (report: BypassReport) => {
      const { model, operation, kind, callSite, location } = report;
      console.log(JSON.stringify({ model, operation, kind, callSite, location }));
    },
  };
  const accessTokenSchema = new mongoose.Schema<AccessTokenFields>({ token: { type: String, required: true }, userId: String });
  accessTokenSchema.plugin(tripwire, options);

  // Register first, then compile the model.
  const connection = await mongoose.createConnection(uri, { dbName: `tripwire_typescript_${process.pid}` }).asPromise();
  const AccessToken = connection.model<AccessTokenFields>('AccessToken', accessTokenSchema);

  await issueToken(AccessToken, 'user-1'); // approved: the call stack passes through src/auth/tokens.ts
  await AccessToken.deleteMany({ userId: 'user-1' }); // @site rogue-delete

  await dropExampleDatabase(connection);
  await connection.close();
  await close(); // flushes and closes what the plugin opened
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
