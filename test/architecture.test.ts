/**
 * The tree shows the architecture, and this test keeps it so: which folder of src/ may import which
 * (type-only imports included), and no import cycle anywhere.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/**
 * Each part of src/ and the parts it may import. Leaves import nothing of ours but types; hooks see a
 * write, attribution judges it, report and ratchet say what was judged; core runs a registration; the
 * files at the top compose them.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  types: [],
  util: [],
  errors: ['types'],
  attribution: ['types', 'errors', 'util'],
  hooks: ['types', 'util', 'attribution'],
  report: ['types', 'errors', 'util'],
  ratchet: ['types', 'errors', 'util'],
  core: ['types', 'errors', 'util', 'attribution', 'report', 'ratchet'],
  cli: ['types', 'errors', 'util', 'report', 'ratchet'],
  top: ['types', 'errors', 'util', 'attribution', 'hooks', 'report', 'ratchet', 'core'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The part of src/ a file belongs to: its folder, `types`/`errors` for those two files, else `top`. */
function partOf(file: string): string {
  const rel = relative(SRC, file).split('\\').join('/');
  if (rel.includes('/')) return rel.slice(0, rel.indexOf('/'));
  const stem = rel.replace(/\.ts$/, '');
  return stem === 'types' || stem === 'errors' ? stem : 'top';
}

const IMPORT = /^\s*(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));
const name = (file: string) => relative(SRC, file);

function upwardImports(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const wrong: string[] = [];
  for (const [file, imports] of graph) {
    const from = partOf(file);
    for (const target of imports) {
      const to = partOf(target);
      if (to !== from && !MAY_IMPORT[from]!.includes(to)) wrong.push(`${name(file)} (${from}) imports ${name(target)} (${to})`);
    }
  }
  return wrong;
}

function cyclesOf(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    path.push(file);
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === 'open') cycles.push([...path.slice(path.indexOf(target)), target].map(name).join(' → '));
      else if (!state.has(target)) visit(target);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return cycles;
}

describe('architecture of src/', () => {
  it('has a known part for every file, and every import resolves to a source file', () => {
    for (const [file, imports] of graph) {
      expect(Object.keys(MAY_IMPORT), name(file)).toContain(partOf(file));
      for (const target of imports) expect(graph.has(target), `${name(file)} imports ${name(target)}`).toBe(true);
    }
  });

  it('imports only downward: each part only from the parts it may use', () => {
    expect(upwardImports(graph)).toEqual([]);
  });

  it('has no import cycle, type-only imports included', () => {
    expect(cyclesOf(graph)).toEqual([]);
  });

  it('can fail: finds the cycle and the upward import of a graph that has them', () => {
    const [hook, sink, registration] = ['hooks/query.ts', 'report/datadog-sink.ts', 'core/registration.ts'].map((f) => join(SRC, f));
    const bad = new Map([
      [hook!, [sink!]],
      [sink!, [registration!]],
      [registration!, [sink!]],
    ]);
    expect(upwardImports(bad)).toEqual([
      'hooks/query.ts (hooks) imports report/datadog-sink.ts (report)',
      'report/datadog-sink.ts (report) imports core/registration.ts (core)',
    ]);
    expect(cyclesOf(bad)).toEqual(['report/datadog-sink.ts → core/registration.ts → report/datadog-sink.ts']);
  });

  it('reads type-only imports and re-exports as imports', () => {
    const index = graph.get(join(SRC, 'api.ts'))!.map(name);
    expect(index).toContain('types.ts');
    expect(index).toContain('plugin.ts');
  });
});
