/**
 * The plugin keeps no connection alive: an app that opens and destroys connections (one per tenant,
 * per test file) gets them collected as without the plugin. Real Mongoose, a child process with a
 * garbage collector it can call.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { explainRun, runScript } from './support/child-script.js';

const dir = mkdtempSync(join(tmpdir(), 'tripwire-connections-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONNECTIONS = 20;
const script = (withPlugin: boolean) => `
  import v8 from 'node:v8';
  import { runInNewContext } from 'node:vm';
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  const schema = new mongoose.Schema({ token: String });
  if (${withPlugin}) schema.plugin(tw.tripwire, { approved: ['auth/**'], statsd: false, onError: () => {} });
  for (let i = 0; i < ${CONNECTIONS}; i++) {
    const connection = await mongoose.createConnection(process.env.MONGODB_URI, { dbName: 'connections_' + i }).asPromise();
    const Token = connection.model('AccessToken', schema);
    await Token.collection.insertOne({ token: 't' + i }).catch(() => {});
    registry.register(connection, i);
    await connection.destroy();
  }
  for (let i = 0; i < 10 && collected < ${CONNECTIONS - 1}; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
  }
  console.log(JSON.stringify({ collected }));
  await tw.close();
`;

it('destroyed connections are collected with the plugin as without it', { timeout: 60_000 }, async () => {
  const without = await runScript(join(dir, 'without.mjs'), script(false));
  const withPlugin = await runScript(join(dir, 'with.mjs'), script(true));
  expect(without.code, explainRun(without)).toBe(0);
  expect(withPlugin.code, explainRun(withPlugin)).toBe(0);
  const baseline = (JSON.parse(without.stdout) as { collected: number }).collected;
  expect(baseline).toBeGreaterThanOrEqual(CONNECTIONS - 2);
  expect((JSON.parse(withPlugin.stdout) as { collected: number }).collected).toBeGreaterThanOrEqual(baseline - 1);
});
