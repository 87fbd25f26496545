// The old login handler of one app, never migrated: it still writes tokens itself.
import { randomBytes } from 'node:crypto';

export async function legacyLogin(models, userId) {
  const user = await models.User.findById(userId);
  const token = new models.AccessToken({ token: randomBytes(16).toString('hex'), userId: String(user._id), client: 'web' });
  await token.save();
  return { status: 200, token: token.token };
}
