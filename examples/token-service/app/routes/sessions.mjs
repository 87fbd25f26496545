// Migrated routes: they call the auth module.
import { issueToken, refreshToken, revokeToken } from '../auth/tokens.mjs';

export async function postLogin(models, userId) {
  const token = await issueToken(models.AccessToken, userId);
  return { status: 201, tokenId: token._id };
}

export async function postRefresh(models, tokenId) {
  await refreshToken(models.AccessToken, tokenId);
  return { status: 200 };
}

export async function deleteSession(models, tokenId) {
  await revokeToken(models.AccessToken, tokenId);
  return { status: 204 };
}
