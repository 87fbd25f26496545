import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase } from '../app/models.mjs';
import { issueToken, revokeTokens } from '../app/auth/tokens.mjs';
import { grantScope } from '../app/admin/scopes.mjs';

let db;
before(async () => { db = await openDatabase('admin'); });
after(async () => { await db.close(); });

test('admins grant scopes (two known rogue call sites, in the baseline)', async () => {
  await issueToken(db.AccessToken, 'u3');
  await grantScope(db.AccessToken, 'u3', 'read');
  assert.deepEqual((await db.AccessToken.findOne({ userId: 'u3' })).scopes, ['read']);
  await grantScope(db.AccessToken, 'u3', 'admin');
  assert.deepEqual((await db.AccessToken.findOne({ userId: 'u3' })).scopes, ['admin']);
});

test('the auth module revokes tokens', async () => {
  await revokeTokens(db.AccessToken, 'u3');
  assert.equal(await db.AccessToken.countDocuments({ userId: 'u3' }), 0);
});
