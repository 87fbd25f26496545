// The approved module: the code meant to own every write to AccessToken.
import { randomBytes } from 'node:crypto';

export async function issueToken(AccessToken, userId) {
  return AccessToken.create({ token: `at_${randomBytes(8).toString('hex')}`, userId, scopes: [] });
}

export async function revokeTokens(AccessToken, userId) {
  return AccessToken.deleteMany({ userId });
}
