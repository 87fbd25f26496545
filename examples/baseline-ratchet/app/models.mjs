// The app's model and its database connection (each test file opens its own database).
import mongoose from 'mongoose';

export async function openDatabase(label) {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('set MONGODB_URI (in this repository, `npm run mongo` prints one)');
  const connection = await mongoose.createConnection(uri, { dbName: `ratchet_${label}_${process.pid}` }).asPromise();
  let AccessToken;
  try {
    const schema = new mongoose.Schema({ token: { type: String, required: true }, userId: String, scopes: [String] });
    AccessToken = connection.model('AccessToken', schema); // the plugin registered in tripwire-setup.mjs applies here
    await AccessToken.init();
  } catch (error) {
    await connection.close(); // an open connection would keep the test process alive
    throw error;
  }
  return {
    AccessToken,
    async close() {
      await connection.dropDatabase();
      await connection.close();
    },
  };
}
