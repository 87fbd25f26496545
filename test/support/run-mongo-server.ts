/** `npm run mongo`: a wire server for local use and external checks; runs until interrupted. */
import { startMongoServer } from './mongo-server.js';

const port = Number(process.env.PORT ?? 0);
const server = await startMongoServer(Number.isInteger(port) ? port : 0);
process.stdout.write(`MONGODB_URI=${server.uri}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void server.stop().then(() => process.exit(0)));
}
