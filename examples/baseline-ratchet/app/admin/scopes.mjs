// Not migrated yet: an admin tool updating scopes itself, from two call sites of one function.
export async function grantScope(AccessToken, userId, scope) {
  if (scope === 'admin') {
    return AccessToken.updateMany({ userId }, { $set: { scopes: ['admin'] } }); // @site grant-admin
  }
  return AccessToken.updateMany({ userId }, { $addToSet: { scopes: scope } }); // @site grant-scope
}
