// A refresh flow only the native apps use: rare enough that nobody remembered it.
import { randomBytes } from 'node:crypto';

export function nativeRefresh(models, tokenId, callback) {
  process.nextTick(() => {
    models.AccessToken.findOneAndUpdate(
      { _id: tokenId, client: { $in: ['ios', 'android'] } },
      { $set: { token: randomBytes(16).toString('hex') } },
    ).then(() => callback(null), callback);
  });
}
