/**
 * The documentation as a reader gets it: README.md and docs/*.md. Every TypeScript and JavaScript
 * sample type-checks against the package's own types (`mongoose-tripwire` mapped to src/ by the
 * tsconfig `paths`), the README stays the short path in, and no page names a path of a developer's
 * machine. Links are checked on the installed package by packaging.test.ts.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const README_MAX_BYTES = 15_000;
/** Languages whose samples are type-checked, and the extension each is checked as. */
const CHECKED: Readonly<Record<string, string>> = {
  ts: '.ts',
  typescript: '.ts',
  js: '.mjs',
  javascript: '.mjs',
  mjs: '.mjs',
  cjs: '.cjs',
};
const NOT_CHECKED = /^<!--\s*not-checked:\s*\S.*-->$/;

const docs = [
  'README.md',
  ...readdirSync(join(projectRoot, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];
const textOf = (doc: string): string => readFileSync(join(projectRoot, doc), 'utf8');

interface Sample {
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** The reason given by a `<!-- not-checked: reason -->` line just before the fence. */
  notChecked?: string;
}

/** Fenced code blocks of a markdown file (``` fences, possibly indented in a list). */
function samplesOf(doc: string): Sample[] {
  const lines = textOf(doc).split('\n');
  const samples: Sample[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})\s*([\w-]*)/.exec(lines[i]!);
    if (!open) continue;
    const [, indent = '', fence = '', lang = ''] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !lines[j]!.trimStart().startsWith(fence); j++)
      body.push(lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : lines[j]!);
    if (j === lines.length) throw new Error(`${doc}:${i + 1}: a code block is never closed`);
    const before = lines[i - 1]?.trim() ?? '';
    const sample: Sample = { doc, line: i + 1, lang: lang.toLowerCase(), code: body.join('\n') };
    if (NOT_CHECKED.test(before)) sample.notChecked = before;
    samples.push(sample);
    i = j;
  }
  return samples;
}

const samples = docs.flatMap(samplesOf);
const checked = samples.filter((sample) => sample.lang in CHECKED && sample.notChecked === undefined);
const fileOf = (sample: Sample): string =>
  join(projectRoot, '.docs-samples', `${sample.doc.replace(/[/.]/g, '_')}_L${sample.line}${CHECKED[sample.lang]}`);
const name = (sample: Sample): string => `${sample.doc}:${sample.line} (${sample.lang})`;

/** Wrong on purpose: the check must find an error in each, or it checks nothing. */
const CANARIES: Sample[] = [
  {
    doc: 'canary',
    line: 1,
    lang: 'ts',
    code: "import { tripwire } from 'mongoose-tripwire';\nconst mode: 'report' = 'throw';\nvoid tripwire; void mode;",
  },
  { doc: 'canary', line: 2, lang: 'js', code: "import { verify } from 'mongoose-tripwire';\nconst ok = verify().okay;\nvoid ok;" },
  { doc: 'canary', line: 3, lang: 'ts', code: "import { notExported } from 'mongoose-tripwire';\nvoid notExported;" },
];

describe('code samples in README.md and docs/', () => {
  let diagnostics: Map<string, string[]>;

  beforeAll(() => {
    // The project's compiler options (strict, NodeNext, the `paths` that map the package to src/).
    const configPath = join(projectRoot, 'tsconfig.json');
    const config = ts.readConfigFile(configPath, (path) => ts.sys.readFile(path));
    if (config.error) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'));
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, projectRoot, undefined, configPath);
    const options: ts.CompilerOptions = {
      ...parsed.options,
      noEmit: true,
      allowJs: true,
      checkJs: true,
      declaration: false,
      sourceMap: false,
    };

    // Each sample is a module of its own, as a file in the project (so `mongoose` resolves from node_modules).
    const virtual = new Map([...checked, ...CANARIES].map((sample) => [fileOf(sample), `${sample.code}\nexport {};\n`]));
    const host = ts.createCompilerHost(options, true);
    const { fileExists, readFile, getSourceFile } = host;
    host.fileExists = (file) => virtual.has(file) || fileExists.call(host, file);
    host.readFile = (file) => virtual.get(file) ?? readFile.call(host, file);
    host.getSourceFile = (file, language, onError, shouldCreate) => {
      const text = virtual.get(file);
      return text === undefined
        ? getSourceFile.call(host, file, language, onError, shouldCreate)
        : ts.createSourceFile(file, text, language, true);
    };
    const program = ts.createProgram([...virtual.keys()], options, host);

    diagnostics = new Map([...virtual.keys()].map((file) => [file, []]));
    const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
    if (global.length > 0) throw new Error(ts.formatDiagnostics(global, host));
    for (const file of virtual.keys()) {
      const source = program.getSourceFile(file)!;
      const found = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
      diagnostics.set(
        file,
        found.map((d) => {
          const { line } = d.start === undefined ? { line: -1 } : source.getLineAndCharacterOfPosition(d.start);
          return `sample line ${line + 1}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
        }),
      );
    }
  }, 120_000);

  it('the check finds a wrong option value, a wrong property in JavaScript and a missing export', () => {
    for (const canary of CANARIES) expect(diagnostics.get(fileOf(canary)), name(canary)).not.toEqual([]);
  });

  it('there are samples to check, in the README and in the docs', () => {
    expect(checked.filter((sample) => sample.doc === 'README.md').length).toBeGreaterThanOrEqual(2);
    expect(checked.filter((sample) => sample.doc.startsWith('docs/')).length).toBeGreaterThanOrEqual(5);
  });

  it('only a few samples are marked as fragments, each with a reason', () => {
    const marked = samples.filter((sample) => sample.notChecked !== undefined);
    expect(marked.length, marked.map(name).join(', ')).toBeLessThanOrEqual(3);
  });

  it('every code block says its language (so none escapes the check by having none that matches)', () => {
    const known = new Set([...Object.keys(CHECKED), 'sh', 'json', 'text']);
    const unknown = samples.filter((sample) => sample.lang !== '' && !known.has(sample.lang));
    expect(unknown.map(name)).toEqual([]);
    // An unlabelled block is output (the demo's event, an npm warning), never code: it has no import.
    const unlabelledCode = samples.filter((sample) => sample.lang === '' && /^\s*(import|const|export) /m.test(sample.code));
    expect(unlabelledCode.map(name)).toEqual([]);
  });

  it.each(checked.map((sample) => [name(sample), sample] as const))('%s type-checks', (_, sample) => {
    expect(diagnostics.get(fileOf(sample))).toEqual([]);
  });
});

/** GitHub's anchors for the headings of a markdown text (code blocks left out; repeats get -1, -2...). */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  for (const [, heading = ''] of markdown.replace(/^\s*```[\s\S]*?^\s*```/gm, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    let slug = base;
    for (let n = 1; slugs.has(slug); n++) slug = `${base}-${n}`;
    slugs.add(slug);
  }
  return slugs;
}

describe('the README and docs/ as a reader finds them', () => {
  it(`README.md is at most ${README_MAX_BYTES} bytes: the path in, with the depth in docs/`, () => {
    expect(statSync(join(projectRoot, 'README.md')).size).toBeLessThanOrEqual(README_MAX_BYTES);
  });

  it('the README links every page of docs/, and every page starts with a link back to the README', () => {
    const readme = textOf('README.md');
    for (const doc of docs.filter((d) => d !== 'README.md')) {
      expect(readme, `README links ${doc}`).toContain(`](${doc})`);
      expect(textOf(doc).split('\n')[0], `${doc} starts with a link to the README`).toContain('](../README.md');
    }
  });

  it('every relative link names a file of the repository and, with a #fragment, a heading of it', () => {
    const broken: string[] = [];
    let anchors = 0;
    for (const doc of docs) {
      for (const [, target = ''] of textOf(doc)
        .replace(/^\s*```[\s\S]*?^\s*```/gm, '')
        .matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto: — checked on the installed package by packaging.test.ts
        const [path = '', fragment] = target.split('#');
        const file = path === '' ? doc : join(dirname(doc), path);
        if (!existsSync(join(projectRoot, file))) {
          broken.push(`${doc}: ${target} (no such file)`);
          continue;
        }
        if (fragment === undefined) continue;
        anchors++;
        if (!file.endsWith('.md') || !headingSlugs(textOf(file)).has(fragment)) broken.push(`${doc}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
    expect(anchors).toBeGreaterThan(10);
  });

  it('no page names a path of a developer machine, or a directory outside the repository', () => {
    const outside = '../' + 'shared';
    const machine = /(^|[\s`'"(=:])\/(work|tmp|home|Users|root|var\/folders)\//m;
    for (const doc of docs) {
      const text = textOf(doc);
      expect(text.includes(outside), `${doc} names ${outside}`).toBe(false);
      expect(machine.exec(text)?.[0], `${doc} names an absolute path of a machine`).toBeUndefined();
      expect(/[A-Z]:\\Users\\/.test(text), `${doc} names a Windows user directory`).toBe(false);
    }
  });

  it('no page tells you to install from the npm registry, where the package is not published', () => {
    for (const doc of docs) {
      expect(/npm (install|i|add) mongoose-tripwire(?![\w./-])/.test(textOf(doc)), doc).toBe(false);
    }
  });
});
