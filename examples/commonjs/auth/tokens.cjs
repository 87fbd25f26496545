// The approved module: the only code meant to create access tokens.
const { randomBytes } = require('node:crypto');

async function issueToken(AccessToken, userId) {
  return AccessToken.create({ token: `at_${randomBytes(16).toString('hex')}`, userId }); // @site approved-create
}

module.exports = { issueToken };
