// Every write entry point (and the reads) once, from the approved module: the bench's "after every
// entry point has run" processes call this before measuring anything else.
export async function everyEntryPoint(M, tag) {
  const t = (n) => `${tag}_${n}_${Math.random()}`;
  const doc = await M.create({ token: t('create'), user: 'e' });
  await M.create([{ token: t('create2') }, { token: t('create3') }], { ordered: true });
  await M.insertOne({ token: t('insertOne') });
  await M.insertMany([{ token: t('im1') }, { token: t('im2') }]);
  await M.bulkWrite([
    { insertOne: { document: { token: t('bw') } } },
    { updateOne: { filter: { _id: doc._id }, update: { $set: { user: 'bw' } } } },
  ]);
  doc.user = 'saved';
  await doc.save();
  await M.bulkSave([doc]);
  await M.updateOne({ _id: doc._id }, { $set: { user: 'u1' } });
  await M.updateMany({ _id: doc._id }, { $set: { user: 'u2' } });
  await M.replaceOne({ _id: doc._id }, { token: doc.token, user: 'r' });
  await M.findOneAndUpdate({ _id: doc._id }, { $set: { user: 'f' } });
  await M.findOneAndReplace({ _id: doc._id }, { token: doc.token, user: 'fr' });
  await doc.updateOne({ $set: { user: 'd' } });
  await M.find({ _id: doc._id });
  await M.findOne({ _id: doc._id });
  await M.countDocuments({ _id: doc._id });
  await M.distinct('user');
  await M.aggregate([{ $match: { _id: doc._id } }]);
  await M.collection.insertOne({ token: t('raw') });
  await M.collection.updateOne({ _id: doc._id }, { $set: { user: 'raw' } });
  await M.collection.findOne({ _id: doc._id });
  await M.findOneAndDelete({ token: t('missing') });
  await M.deleteOne({ token: t('missing') });
  await M.deleteMany({ token: t('missing') });
  await M.updateOne({ _id: doc._id }, { $set: { user: 'then' } }).then(() => undefined);
  await M.updateOne({ _id: doc._id }, { $set: { user: 'exec' } }).exec();
}
