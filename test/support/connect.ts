import mongoose, { type Connection } from 'mongoose';

let counter = 0;

/** A fresh connection on its own database, on the server the global setup started (or MONGODB_URI). */
export async function connect(label: string): Promise<Connection> {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is not set: the vitest global setup starts a server and sets it');
  counter += 1;
  const dbName = `${label}_${process.pid}_${counter}`.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 60);
  return mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 5_000 }).asPromise();
}
