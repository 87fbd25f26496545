/**
 * One database for the whole run: the contributor's own MONGODB_URI (a real mongod) when set,
 * otherwise the in-process wire server. Never skips: a missing database fails the run.
 */
import type { TestProject } from 'vitest/node';
import { type MongoServer, startMongoServer } from './mongo-server.js';

let server: MongoServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (!process.env.MONGODB_URI) {
    server = await startMongoServer();
    process.env.MONGODB_URI = server.uri;
  }
  project.provide('mongodbUri', process.env.MONGODB_URI);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    mongodbUri: string;
  }
}
