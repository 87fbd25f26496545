// An operator's console script: it writes straight to the database with the driver, as fixtures,
// backfills and one-off fixes do. No Mongoose model, no middleware: still a token write.
export function insertRawToken(connection, token) {
  return connection.db.collection('accesstokens').insertOne(token);
}

export function expireAllTokens(connection) {
  return connection.db.collection('accesstokens').updateMany({}, { $set: { expiresAt: new Date(0) } });
}
