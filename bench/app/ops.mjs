// The measured writes; the same bodies are called from the approved module and from legacy code.
let counter = 0;
const token = () => `tok_${process.pid}_${++counter}`;

export function makeOps(caller) {
  return {
    updateOne: (M, c) => caller(() => M.updateOne({ _id: c.id }, { $set: { user: `u${counter++ % 7}` } })),
    save: (M, c) =>
      caller(() => {
        c.doc.scopes = [`s${counter++ % 5}`];
        return c.doc.save();
      }),
    create: (M) => caller(() => M.create({ token: token(), user: 'bench' })),
    'insertMany(10)': (M) => caller(() => M.insertMany(Array.from({ length: 10 }, () => ({ token: token() })))),
    findOneAndUpdate: (M, c) => caller(() => M.findOneAndUpdate({ _id: c.id }, { $set: { user: `f${counter++ % 7}` } })),
    // A token that is not there: the seeded document every other write uses stays.
    deleteOne: (M) => caller(() => M.deleteOne({ token: `missing_${counter++}` })),
  };
}

/** Reads, measured separately (read detection is opt-in). */
export function makeReads(caller) {
  return {
    findOne: (M, c) => caller(() => M.findOne({ _id: c.id })),
  };
}
