// An old password-reset handler that revokes a user's tokens with a raw driver call: no Mongoose
// middleware runs for it, so only the plugin's Model.collection wrapper can see it.
export async function revokeAllOnPasswordReset(models, userId) {
  const result = await models.AccessToken.collection.deleteMany({ userId });
  return result.deletedCount;
}
