/**
 * `mongoose-tripwire audit`: is the migration done? Every write site of the watched model the code
 * holds (write-sites.ts), joined with what runtime has shown (record files) and what is accepted
 * (the baseline). Runtime alone only knows the paths that ran; the code alone does not know which
 * of them run: the `unseen` sites, rogue code no record has shown running, are the dangerous ones.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import picomatch from 'picomatch';
import { BaselineError } from '../errors.js';
import { readBaseline } from '../ratchet/baseline.js';
import { type ParsedRecord, RECORD_ENV, readRecords } from '../ratchet/recorder.js';
import { isBaselinable, keyOf, sourceHash } from '../ratchet/site-key.js';
import type { BaselineEntry } from '../types.js';
import {
  findWriteSites,
  ProjectConfigError,
  projectCompilerOptions,
  type StaticSite,
  sourceFilesUnder,
  type Typescript,
} from './write-sites.js';

export const AUDIT_USAGE = `Usage: mongoose-tripwire audit --model <Name> --approved <glob> [--approved <glob>...]
         [--pass-through <glob>...] [--records <file>...] [--baseline <file>] [--root <dir>] [--tsconfig <file>]
         [--json] [--check] [paths...]

Lists every place in the code (paths; default: the current directory, node_modules and dist left out)
that can write to the model, found with the TypeScript compiler in .ts, .tsx, .mts, .cts, .js, .jsx,
.mjs and .cjs files, and says of each what runtime has shown about it:

  approved      in approved code (--approved)
  seen          rogue, and a record (${RECORD_ENV}) shows it ran
  unseen        rogue, and no record shows it ran: the dangerous ones
  pass-through  in --pass-through code whose callers could not be followed (followed callers are
                listed instead, each with its own status)

Records no site accounts for (dynamic code) are listed apart, as runtime-only.

  --model <Name>         the model, as given to mongoose.model()
  --approved <glob>      approved code, relative to --root, as the plugin's approved option (repeat the flag)
  --pass-through <glob>  pass-through code, as the plugin's passThrough option (repeat the flag)
  --records <file>       a ${RECORD_ENV} file, from any environment (repeat the flag)
  --baseline <file>      the baseline (mongoose-tripwire baseline) that --check accepts
  --root <dir>           the plugin's root: record and baseline paths are relative to it (default: .)
  --tsconfig <file>      the project's compiler settings, for its import aliases (paths, baseUrl) and module
                         resolution (default: tsconfig.json, else jsconfig.json, in the current directory)
  --json                 { sites: [{ file, line, column, operation, function, status }], runtimeOnly: [...] }
  --check                exit 1, naming them, while a site that is not approved is not in the baseline

The migration is done when \`audit --check\` passes with an empty baseline. Needs the typescript
package (npm install -D typescript). Exit codes: 0 done, 1 --check failed, 2 bad arguments or files.`;

const AUDIT_OPTIONS = {
  model: { type: 'string' },
  approved: { type: 'string', multiple: true },
  'pass-through': { type: 'string', multiple: true },
  records: { type: 'string', multiple: true },
  baseline: { type: 'string' },
  root: { type: 'string' },
  tsconfig: { type: 'string' },
  json: { type: 'boolean', default: false },
  check: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export type SiteStatus = 'approved' | 'seen' | 'unseen' | 'pass-through';
const STATUS_ORDER: readonly SiteStatus[] = ['unseen', 'seen', 'pass-through', 'approved'];
const STATUS_MEANING: Record<SiteStatus, string> = {
  unseen: 'rogue code no record has shown running',
  seen: 'rogue writes recorded at runtime',
  'pass-through': 'in pass-through code, callers not followed',
  approved: 'in approved code',
};

export interface AuditSite {
  file: string;
  line: number;
  column: number;
  operation: string;
  function: string;
  status: SiteStatus;
  /** For a caller of pass-through code: the write it reaches, `path:line:column`. */
  via?: string;
}

export interface RuntimeOnlySite {
  file: string;
  line: number;
  column: number;
  operation: string;
  function: string;
  /** Recorded writes at this location. */
  writes: number;
}

const notFound = (error: unknown) => ['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND'].includes((error as NodeJS.ErrnoException)?.code ?? '');

/** The project's compiler settings file: `--tsconfig`, else tsconfig.json or jsconfig.json in `dir`, if any. */
function projectConfig(given: string | undefined, dir: string): string | undefined {
  if (given !== undefined) {
    const file = resolve(dir, given);
    if (!existsSync(file)) throw new AuditError(`--tsconfig ${given} does not exist`);
    return file;
  }
  return ['tsconfig.json', 'jsconfig.json'].map((name) => join(dir, name)).find((file) => existsSync(file));
}

/** Where the TypeScript compiler is: beside this package (a peer dependency), else in the project audited. */
async function loadTypescript(projectDir: string): Promise<Typescript | undefined> {
  try {
    const module = (await import('typescript')) as Typescript & { default?: Typescript };
    return module.default ?? module;
  } catch (error) {
    if (!notFound(error)) throw error;
  }
  try {
    return createRequire(join(projectDir, 'package.json'))('typescript') as Typescript;
  } catch (error) {
    if (!notFound(error)) throw error;
    return undefined;
  }
}

/** Bad arguments: said with the usage. */
class UsageError extends Error {}
/** A file or a project the command cannot work with: said alone. */
class AuditError extends Error {}

const toPosix = (path: string) => (sep === '/' ? path : path.split(sep).join('/'));

export async function auditCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof AUDIT_OPTIONS }>>;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: AUDIT_OPTIONS });
  } catch (error) {
    process.stderr.write(`mongoose-tripwire audit: ${(error as Error).message}\n\n${AUDIT_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${AUDIT_USAGE}\n`);
    return 0;
  }
  try {
    return await audit(values, positionals);
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof AuditError) && !(error instanceof BaselineError)) throw error;
    process.stderr.write(`mongoose-tripwire audit: ${error.message}\n${error instanceof UsageError ? `\n${AUDIT_USAGE}\n` : ''}`);
    return 2;
  }
}

type AuditValues = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof AUDIT_OPTIONS }>>['values'];

async function audit(values: AuditValues, positionals: string[]): Promise<number> {
  const approved = values.approved ?? [];
  const passThrough = values['pass-through'] ?? [];
  const model = values.model;
  if (!model) throw new UsageError('--model <Name> is required: the model as given to mongoose.model()');
  if (approved.length === 0) throw new UsageError('--approved <glob> is required: the code that owns the writes');
  const cwd = process.cwd();
  const root = resolve(values.root ?? '.');
  if (!existsSync(root)) throw new AuditError(`--root ${values.root} does not exist`);
  const paths = positionals.length > 0 ? positionals : ['.'];
  for (const path of paths) if (!existsSync(path)) throw new AuditError(`path ${path} does not exist`);

  const records: ParsedRecord[] = [];
  for (const file of values.records ?? []) records.push(...readRecords(file));
  const baseline: BaselineEntry[] = values.baseline === undefined ? [] : readBaseline(values.baseline);

  const ts = await loadTypescript(cwd);
  if (!ts) {
    throw new AuditError(
      'the typescript package cannot be found: audit reads the code with the TypeScript compiler. Install it in the project: ' +
        'npm install -D typescript',
    );
  }

  const rel = (file: string) => toPosix(relative(root, file));
  const matcher = (globs: readonly string[]) => {
    const matches = picomatch(
      globs.map((g) => g.replace(/^\.\//, '')),
      { dot: true },
    );
    return (file: string) => {
      const path = rel(file);
      return !path.startsWith('../') && !isAbsolute(path) && matches(path);
    };
  };
  const isApproved = matcher(approved);
  const isPassThrough = passThrough.length > 0 ? matcher(passThrough) : () => false;

  const files = sourceFilesUnder(paths);
  const config = projectConfig(values.tsconfig, cwd);
  let projectOptions: Parameters<typeof findWriteSites>[4];
  try {
    projectOptions = config ? projectCompilerOptions(ts, config) : undefined;
  } catch (error) {
    if (!(error instanceof ProjectConfigError)) throw error;
    throw new AuditError(`${relative(cwd, config!) || config}: ${error.message}`);
  }
  const inventory = findWriteSites(ts, files, model, root, projectOptions);
  if (inventory.declarations.length === 0) {
    throw new AuditError(
      `no mongoose.model('${model}', ...) (or connection.model) found in ${files.length} file(s) under ${paths.join(' ')}: ` +
        'is --model spelled as in the code, and are the paths the project?',
    );
  }

  // Records of this model, by where they ran: `path:line` relative to the plugin's root, and by key (file and function).
  const ours = records.filter((r) => r.model === model);
  const recordFile = (r: ParsedRecord) => (isAbsolute(r.file) ? r.file : resolve(r.root, r.file));
  const lineOf = (r: ParsedRecord) => Number(/:(\d+):\d+$/.exec(r.location)?.[1] ?? Number.NaN);
  const used = new Set<ParsedRecord>();
  // A record's line describes the code only while its file is unchanged (the record carries the file's hash).
  const currentHashes = new Map<string, string | null>();
  const fresh = (r: ParsedRecord, file: string): boolean => {
    if (r.source === null) return true;
    let hash = currentHashes.get(file);
    if (hash === undefined) {
      try {
        hash = sourceHash(readFileSync(file));
      } catch {
        hash = null;
      }
      currentHashes.set(file, hash);
    }
    return hash === r.source;
  };
  const recordsAt = (site: StaticSite): ParsedRecord[] => {
    const file = rel(site.file);
    const sameFile = ours.filter((r) => isBaselinable(r.file) && (r.file === file || recordFile(r) === site.file));
    // Lines first, from records of the file as it is; a site whose lines moved still has its file, function and operation.
    let found = sameFile.filter((r) => lineOf(r) === site.line && fresh(r, site.file));
    if (found.length === 0) found = sameFile.filter((r) => r.function === site.function && r.operation === site.operation);
    for (const r of found) used.add(r);
    return found;
  };

  const sites: AuditSite[] = [];
  const statusOf = (site: StaticSite, matched: ParsedRecord[]): SiteStatus =>
    isApproved(site.file) ? 'approved' : matched.length > 0 ? 'seen' : 'unseen';
  const add = (site: StaticSite, status: SiteStatus, via?: StaticSite) =>
    sites.push({
      file: rel(site.file),
      line: site.line,
      column: site.column,
      operation: site.operation,
      function: site.function,
      status,
      ...(via ? { via: `${rel(via.file)}:${via.line}:${via.column}` } : {}),
    });
  const baselined = new Set(baseline.map(keyOf));
  const inBaseline = new Map<AuditSite, boolean>();

  for (const site of inventory.sites) {
    if (isApproved(site.file) || !isPassThrough(site.file)) {
      const matched = recordsAt(site);
      add(site, statusOf(site, matched));
      inBaseline.set(sites.at(-1)!, keyed(site, matched));
      continue;
    }
    // Pass-through: the plugin judges such a write by its caller, so the audit does too, as far as calls can be followed.
    const seen = new Set<string>();
    const follow = (at: StaticSite, depth: number): void => {
      const callers = depth < 10 ? inventory.callersOf(at) : undefined;
      if (!callers || callers.length === 0) {
        add(at, 'pass-through', at === site ? undefined : site);
        inBaseline.set(sites.at(-1)!, false);
        return;
      }
      for (const caller of callers) {
        const key = `${caller.file}:${caller.line}:${caller.column}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (!isApproved(caller.file) && isPassThrough(caller.file)) follow(caller, depth + 1);
        else {
          const matched = recordsAt(caller);
          add(caller, statusOf(caller, matched), site);
          inBaseline.set(sites.at(-1)!, keyed(caller, matched));
        }
      }
    };
    follow(site, 0);
  }

  /** In the baseline: its own key, or the key of a record made there (the baseline is built from records). */
  function keyed(site: StaticSite, matched: ParsedRecord[]): boolean {
    const file = rel(site.file);
    if (baselined.has(keyOf({ model: model!, operation: site.operation, file, function: site.function }))) return true;
    return matched.some((r) => baselined.has(keyOf({ model: r.model, operation: r.operation, file: r.file, function: r.function })));
  }

  const runtimeOnly = new Map<string, RuntimeOnlySite & { baselined: boolean }>();
  for (const r of ours) {
    if (used.has(r) || r.kind === 'read') continue;
    const file = isBaselinable(r.file) ? toPosix(relative(cwd, recordFile(r))) : r.file;
    const [, line, column] = /:(\d+):(\d+)$/.exec(r.location) ?? [];
    const key = `${file}:${line}:${column}:${r.operation}`;
    const known = runtimeOnly.get(key);
    if (known) known.writes += 1;
    else
      runtimeOnly.set(key, {
        file,
        line: Number(line ?? 0),
        column: Number(column ?? 0),
        operation: r.operation,
        function: r.function,
        writes: 1,
        baselined: isBaselinable(r.file) && baselined.has(keyOf(r)),
      });
  }

  // Files relative to the current directory, as promised; records' files were relative to root.
  const shown = (file: string) => toPosix(relative(cwd, resolve(root, file)));
  const ordered = sites
    .map((s) => ({ ...s, file: shown(s.file), ...(s.via ? { via: shown(s.via) } : {}) }))
    .sort((a, b) => (a.file === b.file ? a.line - b.line || a.column - b.column : a.file < b.file ? -1 : 1));
  const notBaselined = sites.filter((s) => s.status !== 'approved' && !inBaseline.get(s)).map((s) => ({ ...s, file: shown(s.file) }));
  const extra = [...runtimeOnly.values()].sort((a, b) => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1));

  if (values.json) {
    const list = extra.map(({ baselined: _, ...rest }) => rest);
    process.stdout.write(`${JSON.stringify({ sites: ordered, runtimeOnly: list }, null, 2)}\n`);
  } else {
    const settings = config ? toPosix(relative(cwd, config)) : 'default compiler settings (no tsconfig.json or jsconfig.json here)';
    process.stdout.write(renderTable(model, { ...inventory, settings }, ordered, extra, records.length));
  }

  if (!values.check) return 0;
  const failing = [
    ...notBaselined.map((s) => `${s.status} ${s.file}:${s.line}:${s.column} ${model}.${s.operation} in ${s.function}`),
    ...extra
      .filter((s) => !s.baselined)
      .map((s) => `runtime-only ${s.file}:${s.line}:${s.column} ${model}.${s.operation} in ${s.function}`),
  ];
  const against = values.baseline === undefined ? ' (no --baseline given)' : ` nor in baseline ${values.baseline}`;
  if (failing.length > 0) {
    process.stderr.write(`mongoose-tripwire audit --check: ${failing.length} write site(s) of ${model} not approved${against}:\n`);
    for (const line of failing) process.stderr.write(`  ${line}\n`);
    process.stderr.write('Route these writes through approved code (or accept the recorded ones: mongoose-tripwire baseline).\n');
    return 1;
  }
  const done =
    baseline.length === 0 ? ': the migration is done' : ` (${baseline.length} baseline entr${baseline.length === 1 ? 'y' : 'ies'})`;
  const where = values.baseline === undefined ? 'approved' : `approved or in baseline ${values.baseline}`;
  process.stdout.write(`audit --check: every write site of ${model} is ${where}${done}\n`);
  return 0;
}

function renderTable(
  model: string,
  inventory: { files: number; collection: string; collectionSource: string; declarations: string[]; settings: string },
  sites: readonly AuditSite[],
  runtimeOnly: readonly RuntimeOnlySite[],
  records: number,
): string {
  const count = (status: SiteStatus) => sites.filter((s) => s.status === status).length;
  const lines: string[] = [];
  const counts = STATUS_ORDER.map((status) => `${count(status)} ${status}`).join(', ');
  lines.push(`${model}: ${sites.length} write site(s): ${counts}; ${runtimeOnly.length} runtime-only`);
  lines.push(
    `  ${inventory.files} file(s) read with ${inventory.settings}; collection "${inventory.collection}" (${inventory.collectionSource}); ` +
      `${records} record(s) read`,
  );
  const row = (s: { file: string; line: number; column: number; operation: string; function: string }) =>
    `${`${s.file}:${s.line}:${s.column}`.padEnd(40)} ${s.operation.padEnd(22)} ${s.function}`;
  for (const status of STATUS_ORDER) {
    const group = sites.filter((s) => s.status === status);
    if (group.length === 0) continue;
    lines.push('', `${status.toUpperCase()} (${group.length}): ${STATUS_MEANING[status]}`);
    for (const s of group) lines.push(`  ${row(s)}${s.via ? `  (via ${s.via})` : ''}`);
  }
  if (runtimeOnly.length > 0) {
    lines.push('', `RUNTIME-ONLY (${runtimeOnly.length}): recorded rogue writes no static site accounts for (dynamic code)`);
    for (const s of runtimeOnly) lines.push(`  ${row(s)}  (${s.writes} write(s))`);
  }
  return `${lines.join('\n')}\n`;
}
