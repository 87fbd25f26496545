// The approved module: the only code meant to create access tokens.
import { randomBytes } from 'node:crypto';
import type { Model } from 'mongoose';

export interface AccessTokenFields {
  token: string;
  userId?: string;
}

export async function issueToken(AccessToken: Model<AccessTokenFields>, userId: string) {
  return AccessToken.create({ token: `at_${randomBytes(16).toString('hex')}`, userId }); // @site approved-create
}
