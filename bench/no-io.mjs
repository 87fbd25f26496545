// Without I/O: a model's driver collection answers Mongoose's calls at once, with results shaped as
// the driver's (mongodb 6 and 7), so what the client adds per write resolves to microseconds. Set as
// own properties of that one driver Collection object: every Mongoose layer above it runs as usual
// (NativeCollection, and the plugin's wrappers of Mongoose's collection object).
let n = 0;
const resolved = (value) => Promise.resolve(value);

export function answerAtOnce(M) {
  const driver = M.collection.collection;
  if (!driver) throw new Error(`${M.modelName}: no driver collection yet (connect first)`);
  const define = (name, fn) => Object.defineProperty(driver, name, { value: fn, configurable: true, writable: true });
  define('updateOne', () => resolved({ acknowledged: true, matchedCount: 1, modifiedCount: 1, upsertedCount: 0, upsertedId: null }));
  define('deleteOne', () => resolved({ acknowledged: true, deletedCount: 0 }));
  define('insertOne', (doc) => resolved({ acknowledged: true, insertedId: doc._id }));
  define('insertMany', (docs) =>
    resolved({ acknowledged: true, insertedCount: docs.length, insertedIds: Object.fromEntries(docs.map((d, i) => [i, d._id])) }),
  );
  define('findOneAndUpdate', (filter) => resolved({ _id: filter._id, token: `stub_${++n}`, user: 'stub', scopes: [] }));
  return M;
}
