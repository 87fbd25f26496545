// The nightly job: deletes expired tokens directly instead of asking the auth module.
export function scheduleNightlyCleanup(models, delayMs) {
  return new Promise((resolve, reject) => {
    setTimeout(() => {
      models.AccessToken.deleteMany({ expiresAt: { $lt: new Date() } }).then(resolve, reject);
    }, delayMs);
  });
}
