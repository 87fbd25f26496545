// Drops this example's database when it is done. Dropping the database drops the tokens collection
// with it, a write like any other: this file is approved code too (see app.ts).
import type { Connection } from 'mongoose';

export async function dropExampleDatabase(connection: Connection): Promise<void> {
  await connection.dropDatabase();
}
