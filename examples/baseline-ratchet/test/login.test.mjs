import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase } from '../app/models.mjs';
import { issueToken } from '../app/auth/tokens.mjs';
import { legacyLogin } from '../app/legacy/login.mjs';

let db;
before(async () => { db = await openDatabase('login'); });
after(async () => { await db.close(); });

test('the auth module issues tokens', async () => {
  const token = await issueToken(db.AccessToken, 'u1');
  assert.equal(token.userId, 'u1');
});

test('the legacy login still works (a known rogue write, in the baseline)', async () => {
  const token = await legacyLogin(db.AccessToken, 'u2');
  assert.equal(await db.AccessToken.countDocuments({ _id: token._id }), 1);
});
