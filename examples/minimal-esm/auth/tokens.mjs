// The approved module: the only code meant to create access tokens.
import { randomBytes } from 'node:crypto';

export async function issueToken(AccessToken, userId) {
  return AccessToken.create({ token: `at_${randomBytes(16).toString('hex')}`, userId }); // @site approved-create
}
