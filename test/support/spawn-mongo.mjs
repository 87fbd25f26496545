// Starts the embedded wire server in a child process (so the caller runs in plain Node) and
// resolves with its URI; used by the demo and the benchmark. Honors MONGODB_URI when set.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

export async function startEmbeddedMongo() {
  if (process.env.MONGODB_URI) return { uri: process.env.MONGODB_URI, embedded: false, stop() {} };
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/run-mongo-server.ts'], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  for await (const line of createInterface({ input: child.stdout })) {
    if (line.startsWith('MONGODB_URI=')) {
      return { uri: line.slice('MONGODB_URI='.length), embedded: true, stop: () => child.kill('SIGTERM') };
    }
  }
  throw new Error('the embedded MongoDB server did not start');
}
