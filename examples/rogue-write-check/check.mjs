// The verification checklist's step "trigger one known rogue write from a one-off script", as a
// runnable script. Copy it next to your models, import your own AccessToken model instead of the
// schema below, and run it once per environment, on a token you own:
//   DD_AGENT_HOST=<agent> MONGODB_URI=<uri> node check.mjs
// Then check in Datadog that the event "Rogue write: AccessToken.updateOne from check.mjs:<line>"
// arrived (and reached Slack through the event monitor), and that tripwire.bypasses counted it.
import mongoose from 'mongoose';
import { close, tripwire, verify } from 'mongoose-tripwire';

const uri = process.env.MONGODB_URI;
if (!uri) {
  console.error('set MONGODB_URI (e.g. `npm run mongo` prints one)');
  process.exit(2);
}

// In your app: `import { AccessToken } from '../src/models/access-token.js'`, whose schema registers
// the plugin exactly as at boot. This stand-in does the same, so the script runs on its own.
const schema = new mongoose.Schema({ token: String, scopes: [String] });
schema.plugin(tripwire, { approved: ['src/auth/**'], notify: process.env.TRIPWIRE_NOTIFY });
await mongoose.connect(uri, { dbName: process.env.TRIPWIRE_CHECK_DB ?? 'tripwire_rogue_write_check' });
const AccessToken = mongoose.model('AccessToken', schema);
const check = verify();
if (!check.ok) console.error('verify() problems:', check.problems);

// The deliberate rogue write: this file is not approved code. It matches no document, so it changes nothing.
await AccessToken.updateOne({ token: 'tripwire-rogue-write-check' }, { $set: { scopes: [] } }); // @site deliberate-rogue-write

// Without this the event would still be sent when the script ends naturally, but not if the
// script called process.exit() with a DNS name as agent host: awaiting close() is the dependable way.
await close();
await mongoose.disconnect();
console.log(`sent: one rogue-write event and its counters to ${check.registrations[0]?.statsd ?? 'DogStatsD'}`);
