// An admin script someone runs by hand to grant a scope to every token of a client.
export async function grantScope(models, client, scope) {
  const result = await models.AccessToken.updateMany({ client }, { $addToSet: { scopes: scope } });
  return result.modifiedCount;
}
