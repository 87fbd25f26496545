// The bench's own setup writes through the approved module: the driver route to a watched
// collection is watched, so a seed written from anywhere else would be a rogue write of its own.
export async function seedToken(connection, M) {
  const { insertedId } = await connection.db
    .collection(M.collection.collectionName)
    .insertOne({ token: `seed_${M.modelName}_${Math.random()}`, user: 'seed', scopes: [] });
  return insertedId;
}
