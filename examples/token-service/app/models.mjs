// Boot: the shared models package registers the tripwire on AccessToken before compiling it.
import mongoose from 'mongoose';
import { tripwire } from 'mongoose-tripwire';
import { fileURLToPath } from 'node:url';

export function defineModels(connection, { statsd, onBypass } = {}) {
  const accessTokenSchema = new mongoose.Schema({
    token: { type: String, required: true, unique: true },
    userId: { type: String, required: true },
    client: { type: String, enum: ['web', 'ios', 'android', 'admin'], default: 'web' },
    scopes: [String],
    expiresAt: Date,
  });
  accessTokenSchema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fileURLToPath(new URL('.', import.meta.url)),
    notify: '@slack-auth-migration',
    tags: { service: 'token-service', env: 'demo' },
    ...(statsd === undefined ? {} : { statsd }),
    onBypass,
  });
  return {
    AccessToken: connection.model('AccessToken', accessTokenSchema),
    User: connection.model('User', new mongoose.Schema({ email: String, name: String })),
  };
}
