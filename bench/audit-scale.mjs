// `node bench/audit-scale.mjs [files]` (after `npm run build`): how long `mongoose-tripwire audit`
// takes on a generated TypeScript project of 2,000 files (or `files`), against the target of a minute.
// The project: the watched model and another one, a few hundred modules writing each of them in
// every shape the audit knows (statics, documents, Model.collection, connection.collection, $out),
// through a pass-through repository, and the rest ordinary code that imports them. It resolves
// `mongoose` (its types: the expensive part) through a symlink to this repository's node_modules.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const FILES = Number(process.argv[2] ?? 2000);
const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const MODULES = fileURLToPath(new URL('../node_modules', import.meta.url));
const TARGET_MS = 60_000;

const dir = mkdtempSync(join(tmpdir(), 'tripwire-audit-scale-'));
const write = (path, text) => {
  mkdirSync(join(dir, path, '..'), { recursive: true });
  writeFileSync(join(dir, path), text);
};
symlinkSync(MODULES, join(dir, 'node_modules'), 'dir');
write('package.json', JSON.stringify({ name: 'audit-scale', private: true, type: 'module' }));
write(
  'src/models/token.ts',
  `import mongoose from 'mongoose';
export interface Token { token: string; user?: string; scopes: string[] }
const schema = new mongoose.Schema<Token>({ token: String, user: String, scopes: [String] });
export const AccessToken = mongoose.model<Token>('AccessToken', schema);
`,
);
write(
  'src/models/session.ts',
  `import mongoose from 'mongoose';
export interface Session { token: string; user?: string }
export const Session = mongoose.model<Session>('Session', new mongoose.Schema<Session>({ token: String, user: String }));
`,
);
write(
  'src/repositories/tokens.ts',
  `import { AccessToken } from '../models/token.js';
export async function renameToken(id: string, user: string): Promise<void> { await AccessToken.updateOne({ _id: id }, { $set: { user } }); }
`,
);

const shapes = [
  (i) => `export async function issue${i}(user: string) { return AccessToken.create({ token: 't${i}', user, scopes: [] }); }`,
  (i) => `export async function fix${i}(id: string) { const t = await AccessToken.findById(id); if (t) { t.user = 'x'; await t.save(); } }`,
  (i) => `export async function purge${i}() { await AccessToken.collection.deleteMany({ user: 'u${i}' }); }`,
  (i) => `export async function raw${i}() { await mongoose.connection.collection('accesstokens').insertOne({ token: 'r${i}' }); }`,
  (i) => `export async function move${i}(id: string) { await renameToken(id, 'u${i}'); }`,
  (i) => `export async function roll${i}() { await Session.aggregate([{ $match: {} }, { $out: 'accesstokens' }]); }`,
];
// One site per writing module: the repository's write is listed as its callers (the `move` modules).
let expected = 0;
for (let i = 0; i < FILES - 3; i++) {
  const area = i % 10 === 0 ? 'auth' : i % 10 < 4 ? 'legacy' : 'features';
  const lines = [
    `import mongoose from 'mongoose';`,
    `import { AccessToken } from '../../models/token.js';`,
    `import { Session } from '../../models/session.js';`,
    `import { renameToken } from '../../repositories/tokens.js';`,
    `void mongoose; void AccessToken; void Session; void renameToken;`,
  ];
  if (area !== 'features') {
    const shape = shapes[i % shapes.length];
    lines.push(shape(i));
    expected++;
  }
  // Ordinary code: another model's writes, and code that writes nothing.
  lines.push(
    `export async function session${i}(user: string) {`,
    `  const s = await Session.create({ token: 's${i}', user }); s.user = 'y'; await s.save();`,
    '}',
    `export function format${i}(values: number[]): string { return values.map((v) => (v * ${i}).toFixed(2)).join(', '); }`,
    `export class Service${i} { constructor(private readonly name: string) {} greet(): string { return format${i}([1, 2]) + this.name; } }`,
  );
  write(`src/${area}/m${Math.floor(i / 100)}/file${i}.ts`, `${lines.join('\n')}\n`);
}

const started = Date.now();
const { stdout } = await promisify(execFile)(
  process.execPath,
  [BIN, 'audit', '--model', 'AccessToken', '--approved', 'src/auth/**', '--pass-through', 'src/repositories/**', '--json'],
  { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
);
const elapsed = Date.now() - started;
const { sites } = JSON.parse(stdout);
const statuses = {};
for (const site of sites) (statuses[site.status] ??= []).push(site);
if (process.env.KEEP) console.log(dir);
else rmSync(dir, { recursive: true, force: true });
const counts = Object.entries(statuses)
  .map(([status, list]) => `${list.length} ${status}`)
  .join(', ');
console.log(`audit of ${FILES} TypeScript files: ${(elapsed / 1000).toFixed(1)} s wall (${sites.length} sites: ${counts})`);
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model}, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}, Node ${process.version}`,
);
console.log(elapsed < TARGET_MS ? 'PASS: under a minute' : `FAIL: ${elapsed} ms is over the ${TARGET_MS} ms target`);
const wrong = sites.filter((s) => s.function.startsWith('session') || s.function.startsWith('Service'));
if (sites.length !== expected || wrong.length > 0)
  console.log(`FAIL: expected ${expected} sites and none of Session, found ${sites.length}`);
process.exitCode = elapsed < TARGET_MS && sites.length === expected && wrong.length === 0 ? 0 : 1;
