/**
 * What the README's "Not a security boundary" says, shown: attribution reads file names from the
 * stack, and code can choose its own. This finds legacy code, not code that hides on purpose.
 */
import { join } from 'node:path';
import { runInThisContext } from 'node:vm';
import type mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { settle, waitFor } from './support/wait.js';

describe('not a security boundary', () => {
  it('a vm script given a file name under auth/ passes as approved code', async () => {
    const connection = await connect('boundary');
    try {
      const reports: BypassReport[] = [];
      const schema = tokenSchema() as mongoose.Schema;
      schema.plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        onBypass: (report) => void reports.push(report),
      });
      const T = connection.model('BoundaryToken', schema);
      await T.init();
      const source = '(function (T) { return T.create({ token: "tok_hidden_" + Math.random() }); })';
      const disguised = runInThisContext(source, { filename: join(fixtureDir as string, 'auth', 'not-really.js') }) as (
        t: unknown,
      ) => Promise<unknown>;
      const plain = runInThisContext(source, { filename: join(fixtureDir as string, 'legacy', 'honest.js') }) as (
        t: unknown,
      ) => Promise<unknown>;
      await disguised(T);
      await plain(T);
      await waitFor(() => reports.length > 0, 'the report');
      await settle();
      expect(reports.map((r) => r.location)).toEqual([expect.stringMatching(/^legacy\/honest\.js:1:\d+$/)]);
    } finally {
      await connection.close();
    }
  });
});
