// `npm run demo`: the token service of a product mid-migration, with an approved auth module and
// the rogue paths a real migration finds. No agent and no database to install: it starts the
// embedded MongoDB wire server (or uses MONGODB_URI) and a local DogStatsD listener (or sends to a
// real agent when DD_AGENT_HOST is set), runs a scripted day of traffic, shows what Slack and the
// dashboard would show, and exits.
import mongoose from 'mongoose';
import { close } from 'mongoose-tripwire';
import { renderForTerminal, startListener } from 'mongoose-tripwire/listen';
import { defineModels } from './app/models.mjs';
import { deleteSession, postLogin, postRefresh } from './app/routes/sessions.mjs';
import { legacyLogin } from './app/legacy/login-handler.mjs';
import { revokeAllOnPasswordReset } from './app/legacy/password-reset.mjs';
import { nativeRefresh } from './app/native/refresh.mjs';
import { scheduleNightlyCleanup } from './app/jobs/cleanup.mjs';
import { grantScope } from './app/admin/update-scopes.mjs';
import { expireAllTokens, insertRawToken } from './app/ops/db-console.mjs';
import { startEmbeddedMongo } from '../../test/support/spawn-mongo.mjs';

const say = (text) => process.stdout.write(`${text}\n`);

const realAgent = Boolean(process.env.DD_AGENT_HOST);
const mongo = await startEmbeddedMongo();
const listener = realAgent ? undefined : await startListener({ port: 0 });
const reports = [];

const connection = await mongoose.createConnection(mongo.uri, { dbName: `token_service_demo_${process.pid}` }).asPromise();
const models = defineModels(connection, {
  statsd: listener ? { host: '127.0.0.1', port: listener.port } : undefined,
  onBypass: (report) => reports.push(report),
});
await models.AccessToken.init();
const target = realAgent ? `agent at ${process.env.DD_AGENT_HOST}` : `local listener udp://127.0.0.1:${listener.port}`;
say(`token-service demo: MongoDB ${process.env.MONGODB_URI ? 'from MONGODB_URI' : 'embedded wire server'}, DogStatsD ${target}\n`);

// A day of traffic: most token writes go through the auth module, a few do not.
const users = await models.User.insertMany(Array.from({ length: 20 }, (_, i) => ({ email: `user${i}@example.com`, name: `User ${i}` })));
const sessions = [];
for (const user of users) sessions.push(await postLogin(models, String(user._id)));
for (const session of sessions.slice(0, 5)) await postRefresh(models, session.tokenId);
for (const user of users.slice(0, 6)) await legacyLogin(models, String(user._id)); // one Slack message, five suppressed
// An operator's script writes straight to the database with the driver: seen too.
const nativeToken = await insertRawToken(connection, { token: 'seeded-native', userId: String(users[0]._id), client: 'ios', scopes: [] });
await new Promise((resolve, reject) => nativeRefresh(models, nativeToken.insertedId, (error) => (error ? reject(error) : resolve())));
await grantScope(models, 'web', 'billing:read');
await revokeAllOnPasswordReset(models, String(users[1]._id));
await expireAllTokens(connection); // time passes
await scheduleNightlyCleanup(models, 10);
for (const session of sessions.slice(5, 8)) await deleteSession(models, session.tokenId).catch(() => undefined);

await new Promise((resolve) => setImmediate(resolve));
await close(); // flushes the counters and closes the plugin's DogStatsD client

if (listener) {
  await listener.waitFor((all) => all.some((d) => d.type === 'metric' && d.name === 'tripwire.writes'), 3_000).catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 100));
  say('What the engineers see in Slack (Datadog events, rate-limited per call site):\n');
  for (const datagram of listener.datagrams.filter((d) => d.type === 'event')) say(renderForTerminal(datagram));

  const sums = (name, byTag) => {
    const totals = new Map();
    for (const d of listener.datagrams) {
      if (d.type !== 'metric' || d.name !== name) continue;
      const key = d.tags.find((tag) => tag.startsWith(`${byTag}:`)) ?? `${byTag}:?`;
      totals.set(key, (totals.get(key) ?? 0) + d.value);
    }
    return totals;
  };
  say('What the dashboard plots (counters, exact):\n');
  for (const [site, count] of sums('tripwire.bypasses', 'callsite')) say(`   tripwire.bypasses   ${String(count).padStart(4)}  ${site}`);
  const writes = sums('tripwire.writes', 'approved');
  const approved = writes.get('approved:true') ?? 0;
  const rogue = writes.get('approved:false') ?? 0;
  say(`   tripwire.writes     ${String(approved).padStart(4)}  approved:true`);
  say(`   tripwire.writes     ${String(rogue).padStart(4)}  approved:false`);
  say(`   => ${((100 * approved) / Math.max(1, approved + rogue)).toFixed(1)} % of token writes go through the auth module`);
  for (const [, count] of sums('tripwire.events_suppressed', 'model')) {
    say(`   tripwire.events_suppressed ${count} (held back by the rate limit, still counted)`);
  }
  if (listener.malformed.length > 0) say(`\n!! ${listener.malformed.length} malformed datagrams: ${JSON.stringify(listener.malformed)}`);
  await listener.close();
}

const sites = new Set(reports.map((r) => r.location));
const operations = [...new Set(reports.map((r) => r.operation))].join(', ');
say(`\nSummary: ${reports.length} rogue writes from ${sites.size} call sites (${operations}); the migration is not done.`);
await connection.close();
mongo.stop();
