// The auth module: the only code that should create, refresh or revoke access tokens.
import { randomBytes } from 'node:crypto';

const newToken = () => `at_${randomBytes(24).toString('base64url')}`;
const inDays = (days) => new Date(Date.now() + days * 86_400_000);

export async function issueToken(AccessToken, userId, client = 'web') {
  return AccessToken.create({ token: newToken(), userId, client, scopes: ['read'], expiresAt: inDays(30) });
}

export async function refreshToken(AccessToken, id) {
  return AccessToken.findByIdAndUpdate(id, { $set: { token: newToken(), expiresAt: inDays(30) } }, { returnDocument: 'after' });
}

export async function revokeToken(AccessToken, id) {
  return AccessToken.deleteOne({ _id: id });
}
