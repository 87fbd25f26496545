/**
 * The static half of `mongoose-tripwire audit`: every place in the code that can write to one model,
 * found with the TypeScript compiler API over `.ts`/`.js` alike (one program, `allowJs`), so a
 * write is found by what its receiver *is* (the model's symbol, through imports and re-exports),
 * never by a name a grep would match in another model's code.
 *
 * `typescript` is only a type here: the command loads it at run time and hands it in, so the plugin
 * (and this bin's other commands) never need it.
 */
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import type * as TS from 'typescript';

export type Typescript = typeof TS;

/** File extensions read (declaration files are not code). */
export const SOURCE_EXTENSIONS = ['.ts', '.tsx', '.mts', '.cts', '.js', '.mjs', '.cjs', '.jsx'] as const;
const SKIPPED_DIRECTORIES = new Set(['node_modules', 'dist']);

/** Model statics that write, with the operation a record names them by (`findByIdAndX` runs a `findOneAndX` query). */
const MODEL_WRITES: Readonly<Record<string, string>> = {
  create: 'create',
  insertMany: 'insertMany',
  insertOne: 'insertOne',
  updateOne: 'updateOne',
  updateMany: 'updateMany',
  replaceOne: 'replaceOne',
  deleteOne: 'deleteOne',
  deleteMany: 'deleteMany',
  findOneAndUpdate: 'findOneAndUpdate',
  findOneAndReplace: 'findOneAndReplace',
  findOneAndDelete: 'findOneAndDelete',
  findByIdAndUpdate: 'findOneAndUpdate',
  findByIdAndDelete: 'findOneAndDelete',
  bulkWrite: 'bulkWrite',
  bulkSave: 'bulkSave',
};
/** Writes of a driver collection (`Model.collection`, `connection.collection(name)`, `db.collection(name)`). */
const COLLECTION_WRITES = new Set([
  'insertOne',
  'insertMany',
  'updateOne',
  'updateMany',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'findOneAndUpdate',
  'findOneAndReplace',
  'findOneAndDelete',
  'bulkWrite',
  'initializeOrderedBulkOp',
  'initializeUnorderedBulkOp',
]);
/** Calls that drop or replace the whole collection, by the operation the plugin reports them as. */
const WHOLE_COLLECTION_WRITES: Readonly<Record<string, string>> = { drop: 'drop', rename: 'renameCollection' };
/** Document methods that write (`doc.deleteOne()`/`doc.updateOne()` run model queries of those names). */
const DOCUMENT_WRITES: Readonly<Record<string, string>> = { save: 'save', $save: 'save', deleteOne: 'deleteOne', updateOne: 'updateOne' };
/** Model statics that give a document, for the untyped heuristic (`const t = await Model.findById(id); t.save()`). */
const DOCUMENT_SOURCES = new Set(['findById', 'findOne', 'create', 'findOneAndUpdate', 'findByIdAndUpdate']);
/** Query methods that keep the document a query resolves to. */
const QUERY_CHAIN = new Set(['exec', 'orFail', 'session', 'populate', 'select', 'sort', 'where']);

/** One write site found in the code. */
export interface StaticSite {
  /** Absolute path. */
  file: string;
  /** 1-based, at the name of the method called (where V8 puts the call's position). */
  line: number;
  column: number;
  /** As a record names it: `create`, `save`, `collection.insertOne`, `driver.updateMany`, `aggregate`, ... */
  operation: string;
  /** The enclosing function, named as V8 names it in a stack (`Class.method`, `Object.method`, `new Class`, `<anonymous>`). */
  function: string;
}

export interface Inventory {
  /** Files read. */
  files: number;
  /** Where the model is declared (`path:line`). */
  declarations: string[];
  /** Its collection, and how that name was found. */
  collection: string;
  collectionSource: string;
  sites: StaticSite[];
  /**
   * The calls of the function enclosing `site`, each as a site with the same operation; undefined
   * when that function cannot be followed (an anonymous callback, module top level).
   */
  callersOf(site: StaticSite): StaticSite[] | undefined;
}

/** Files to read under `paths` (files or directories), `node_modules`, `dist` and dot-directories excluded. */
export function sourceFilesUnder(paths: readonly string[]): string[] {
  const files = new Set<string>();
  const isSource = (name: string) =>
    (SOURCE_EXTENSIONS as readonly string[]).includes(extname(name)) && !/\.d\.[cm]?ts$/.test(name) && !/\.d\.[^.]+\.ts$/.test(name);
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRECTORIES.has(entry.name) && !entry.name.startsWith('.')) walk(join(dir, entry.name));
      } else if (entry.isFile() && isSource(entry.name)) files.add(join(dir, entry.name));
    }
  };
  for (const path of paths) {
    const absolute = resolve(path);
    if (statSync(absolute).isDirectory()) walk(absolute);
    else files.add(absolute);
  }
  return [...files].sort();
}

/**
 * Mongoose's own collection name for a model name: its `pluralize` helper, from the Mongoose the
 * project resolves (mongoose 8.x and 9.12 lib/helpers/pluralize.js: `module.exports = pluralize`),
 * else lowercase + `s`.
 */
export function defaultCollectionName(model: string, projectDir: string): { name: string; source: string } {
  try {
    const require = createRequire(join(projectDir, 'package.json'));
    const main = require.resolve('mongoose');
    const pluralize = require(join(dirname(main), 'lib', 'helpers', 'pluralize.js')) as (name: string) => string;
    const name = pluralize(model);
    if (typeof name === 'string' && name !== '') return { name, source: "Mongoose's pluralize" };
  } catch {
    /* no Mongoose resolvable from here */
  }
  return {
    name: `${model.toLowerCase()}s`,
    source: "lowercase + 's' (Mongoose's pluralize could not be loaded from this project: give the collection to model() to be sure)",
  };
}

/** A tsconfig that cannot be read or parsed: the message TypeScript gives. */
export class ProjectConfigError extends Error {}

/**
 * The compiler options of the project's own tsconfig (or jsconfig): its `paths`, `baseUrl` and module
 * resolution decide which declaration an import names. Without them an aliased import
 * (`import { AccessToken } from '@models/token'`) resolves to nothing and every write through it is
 * missed. `undefined` when there is no config; a config that cannot be parsed is an error.
 */
export function projectCompilerOptions(ts: Typescript, configFile: string): TS.CompilerOptions {
  const read = ts.readConfigFile(configFile, ts.sys.readFile);
  if (read.error) throw new ProjectConfigError(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dirname(configFile), undefined, configFile);
  // "No inputs were found" (TS18003) is no problem here: the files come from the command line.
  const errors = parsed.errors.filter((error) => error.code !== 18003);
  if (errors.length > 0) throw new ProjectConfigError(ts.flattenDiagnosticMessageText(errors[0]!.messageText, '\n'));
  return parsed.options;
}

/** The static inventory of `model`'s write sites in `files`, resolved with `projectOptions` (the project's tsconfig) when given. */
export function findWriteSites(
  ts: Typescript,
  files: readonly string[],
  model: string,
  projectDir: string,
  projectOptions: TS.CompilerOptions = {},
): Inventory {
  const program = ts.createProgram({
    rootNames: files,
    options: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.Preserve,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      esModuleInterop: true,
      resolveJsonModule: true,
      jsx: ts.JsxEmit.Preserve,
      ...projectOptions,
      // Read every file as it is, fast, without emitting or loading the project's global types.
      allowJs: true,
      checkJs: false,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    },
  });
  const checker = program.getTypeChecker();
  const inTree = new Set(files.map((f) => resolve(f)));
  const sources = program.getSourceFiles().filter((sf) => inTree.has(resolve(sf.fileName)));

  // One walk: the model's declarations, the calls that may write, and every call by its callee's name (to follow callers).
  const declarationCalls: TS.CallExpression[] = [];
  const candidates: TS.CallExpression[] = [];
  const callsByName = new Map<string, TS.CallExpression[]>();
  const visit = (node: TS.Node): void => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const name = ts.isPropertyAccessExpression(callee) ? callee.name.text : ts.isIdentifier(callee) ? callee.text : undefined;
      if (name !== undefined) {
        let list = callsByName.get(name);
        if (!list) callsByName.set(name, (list = []));
        list.push(node);
        if (name === 'model' && node.arguments.length >= 2 && literalText(node.arguments[0]) === model) declarationCalls.push(node);
        if (
          ts.isPropertyAccessExpression(callee) &&
          (name in MODEL_WRITES || COLLECTION_WRITES.has(name) || name in WHOLE_COLLECTION_WRITES || name in DOCUMENT_WRITES)
        )
          candidates.push(node);
        else if (name === 'aggregate') candidates.push(node);
      }
    }
    ts.forEachChild(node, visit);
  };
  for (const sf of sources) visit(sf);

  function literalText(node: TS.Node | undefined): string | undefined {
    return node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) ? node.text : undefined;
  }

  function unwrap(node: TS.Expression): TS.Expression {
    let n = node;
    while (ts.isParenthesizedExpression(n) || ts.isAsExpression(n) || ts.isNonNullExpression(n) || ts.isSatisfiesExpression(n))
      n = n.expression;
    if (ts.isTypeAssertionExpression(n)) return unwrap(n.expression);
    return n;
  }

  function symbolOf(node: TS.Node): TS.Symbol | undefined {
    const symbol = checker.getSymbolAtLocation(node);
    if (symbol && symbol.flags & ts.SymbolFlags.Alias) {
      try {
        return checker.getAliasedSymbol(symbol);
      } catch {
        return symbol;
      }
    }
    return symbol;
  }

  // The symbols the model is bound to where it is compiled: `const X = mongoose.model(...)`, `export default`,
  // `module.exports = ...`, `exports.X = ...`, `{ X: mongoose.model(...) }`.
  const modelSymbols = new Set<TS.Symbol>();
  const declarations: string[] = [];
  let explicitCollection: { name: string; source: string } | undefined;
  for (const call of declarationCalls) {
    const sf = call.getSourceFile();
    const { line } = sf.getLineAndCharacterOfPosition(call.getStart(sf));
    declarations.push(`${sf.fileName}:${line + 1}`);
    let top: TS.Node = call;
    while (
      ts.isParenthesizedExpression(top.parent) ||
      ts.isAsExpression(top.parent) ||
      ts.isSatisfiesExpression(top.parent) ||
      ts.isNonNullExpression(top.parent)
    )
      top = top.parent;
    const parent = top.parent;
    let bound: TS.Symbol | undefined;
    if (ts.isVariableDeclaration(parent) && parent.initializer === top) bound = symbolOf(parent.name);
    else if (ts.isPropertyAssignment(parent)) bound = symbolOf(parent.name);
    else if (ts.isBinaryExpression(parent) && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken) {
      bound = symbolOf(parent.left) ?? (ts.isPropertyAccessExpression(parent.left) ? symbolOf(parent.left.name) : undefined);
      // `module.exports = model(...)`: a `require()` of this file resolves to the module's `export=` symbol.
      if (parent.left.getText(sf) === 'module.exports') {
        const exported = checker.getSymbolAtLocation(sf)?.exports?.get(ts.InternalSymbolName.ExportEquals);
        if (exported) modelSymbols.add(exported);
      }
    } else if (ts.isExportAssignment(parent)) {
      const moduleSymbol = checker.getSymbolAtLocation(sf);
      bound = moduleSymbol && checker.getExportsOfModule(moduleSymbol).find((s) => s.escapedName === 'default');
    }
    if (bound) modelSymbols.add(bound);
    explicitCollection ??= collectionOfDeclaration(call);
  }

  /** The collection a `model(name, schema, collection)` call gives: its third argument, or its schema's `collection` option. */
  function collectionOfDeclaration(call: TS.CallExpression): { name: string; source: string } | undefined {
    const third = literalText(call.arguments[2]);
    if (third !== undefined) return { name: third, source: 'the third argument of model()' };
    let schema = call.arguments[1] && unwrap(call.arguments[1]);
    if (schema && ts.isIdentifier(schema)) {
      const declaration = symbolOf(schema)?.valueDeclaration;
      schema =
        declaration && ts.isVariableDeclaration(declaration) && declaration.initializer ? unwrap(declaration.initializer) : undefined;
    }
    if (!schema || !ts.isNewExpression(schema)) return undefined;
    const options = schema.arguments?.[1] && unwrap(schema.arguments[1]);
    if (!options || !ts.isObjectLiteralExpression(options)) return undefined;
    for (const property of options.properties) {
      if (ts.isPropertyAssignment(property) && property.name.getText() === 'collection') {
        const name = literalText(property.initializer);
        if (name !== undefined) return { name, source: "the schema's collection option" };
      }
    }
    return undefined;
  }

  const { name: collection, source: collectionSource } = explicitCollection ?? defaultCollectionName(model, projectDir);

  function declaredInitializer(node: TS.Expression): TS.Expression | undefined {
    if (!ts.isIdentifier(node)) return undefined;
    const declaration = symbolOf(node)?.valueDeclaration;
    return declaration && ts.isVariableDeclaration(declaration) && declaration.initializer ? declaration.initializer : undefined;
  }

  /** True when `node` evaluates to the model: its symbol, `x.model('<Name>')`, `x.models.<Name>`, or a const set to one. */
  function isModel(node: TS.Expression, depth = 0): boolean {
    const n = unwrap(node);
    if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const name = ts.isPropertyAccessExpression(callee) ? callee.name.text : ts.isIdentifier(callee) ? callee.text : undefined;
      return name === 'model' && literalText(n.arguments[0]) === model;
    }
    if (ts.isPropertyAccessExpression(n) && n.name.text === model && ts.isPropertyAccessExpression(n.expression)) {
      if (n.expression.name.text === 'models') return true;
    }
    if (!ts.isIdentifier(n) && !ts.isPropertyAccessExpression(n)) return false;
    const symbol = symbolOf(ts.isPropertyAccessExpression(n) ? n.name : n);
    if (symbol && modelSymbols.has(symbol)) return true;
    const initializer = depth < 3 ? declaredInitializer(n) : undefined;
    return initializer !== undefined && isModel(initializer, depth + 1);
  }

  /** `collection` for a Mongoose collection (`Model.collection`, `connection.collection(name)`), `driver` for a `Db`'s. */
  function collectionKind(node: TS.Expression, depth = 0): 'collection' | 'driver' | undefined {
    const n = unwrap(node);
    if (ts.isPropertyAccessExpression(n) && n.name.text === 'collection' && isModel(n.expression)) return 'collection';
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'collection') {
      if (literalText(n.arguments[0]) !== collection) return undefined;
      return isDb(n.expression.expression) ? 'driver' : 'collection';
    }
    const initializer = depth < 3 ? declaredInitializer(n) : undefined;
    return initializer ? collectionKind(initializer, depth + 1) : undefined;
  }

  /** A driver `Db` (`connection.db`, `client.db()`, or typed `Db`), not a Mongoose connection. */
  function isDb(node: TS.Expression): boolean {
    const n = unwrap(node);
    if (ts.isPropertyAccessExpression(n) && n.name.text === 'db') return true;
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'db') return true;
    const type = checker.getNonNullableType(checker.getTypeAtLocation(n));
    return (type.getSymbol() ?? type.aliasSymbol)?.getName() === 'Db';
  }

  // The model's document type: what `new Model()` returns.
  let documentType: TS.Type | undefined;
  for (const symbol of modelSymbols) {
    const declaration = symbol.valueDeclaration ?? symbol.declarations?.[0];
    if (!declaration) continue;
    const signature = checker.getTypeOfSymbolAtLocation(symbol, declaration).getConstructSignatures()[0];
    const type = signature?.getReturnType();
    if (type && !(type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown))) {
      documentType = type;
      break;
    }
  }

  /** True when `node` is a document of the model: its type says so, or (untyped code) it was just read or made from it. */
  function isDocument(node: TS.Expression, call: TS.CallExpression): boolean {
    const n = unwrap(node);
    if (ts.isNewExpression(n)) return isModel(n.expression);
    const type = checker.getNonNullableType(checker.getTypeAtLocation(n));
    const untyped = (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) !== 0;
    if (!untyped && documentType) {
      // Both ways: a document of another model with a subset of the fields must not pass for this one.
      return checker.isTypeAssignableTo(type, documentType) && checker.isTypeAssignableTo(documentType, type);
    }
    // The documented heuristic for code without types: `const t = await Model.findById(...)` in the same function.
    let initializer = declaredInitializer(n);
    if (!initializer || enclosingFunction(initializer) !== enclosingFunction(call)) return false;
    initializer = unwrap(initializer);
    if (ts.isAwaitExpression(initializer)) initializer = unwrap(initializer.expression);
    while (
      ts.isCallExpression(initializer) &&
      ts.isPropertyAccessExpression(initializer.expression) &&
      QUERY_CHAIN.has(initializer.expression.name.text) &&
      ts.isCallExpression(unwrap(initializer.expression.expression))
    )
      initializer = unwrap(initializer.expression.expression);
    if (ts.isNewExpression(initializer)) return isModel(initializer.expression);
    return (
      ts.isCallExpression(initializer) &&
      ts.isPropertyAccessExpression(initializer.expression) &&
      DOCUMENT_SOURCES.has(initializer.expression.name.text) &&
      isModel(initializer.expression.expression)
    );
  }

  /** `[..., { $out: '<collection>' }]` / `{ $merge: ... }` into the model's collection, in a literal pipeline. */
  /** The writing stage (`$out`, `$merge`) of a literal pipeline that writes into the watched collection. */
  function writesIntoCollection(pipeline: TS.Expression | undefined): '$out' | '$merge' | undefined {
    const list = pipeline && unwrap(pipeline);
    if (!list || !ts.isArrayLiteralExpression(list)) return undefined;
    const names = (value: TS.Expression): Array<string | undefined> => {
      const v = unwrap(value);
      if (!ts.isObjectLiteralExpression(v)) return [literalText(v)];
      return v.properties.flatMap((p) =>
        ts.isPropertyAssignment(p) && ['coll', 'into'].includes(p.name.getText().replace(/['"]/g, '')) ? names(p.initializer) : [],
      );
    };
    for (const stage of list.elements) {
      const s = unwrap(stage as TS.Expression);
      if (!ts.isObjectLiteralExpression(s)) continue;
      for (const property of s.properties) {
        if (!ts.isPropertyAssignment(property)) continue;
        const key = property.name.getText().replace(/['"]/g, '');
        if ((key === '$out' || key === '$merge') && names(property.initializer).includes(collection)) return key;
      }
    }
    return undefined;
  }

  // The name node of each site, to find its enclosing function again when following callers.
  const nodeOfSite = new Map<string, TS.Node>();
  const keyOfSite = (site: StaticSite) => `${site.file}:${site.line}:${site.column}:${site.operation}`;

  const sites: StaticSite[] = [];
  for (const call of candidates) {
    const callee = call.expression as TS.PropertyAccessExpression;
    const method = callee.name.text;
    const receiver = callee.expression;
    let operation: string | undefined;
    if (method === 'aggregate') {
      const stage = writesIntoCollection(call.arguments[0]);
      operation = stage && `aggregate.${stage}`;
    } else if (method in WHOLE_COLLECTION_WRITES && collectionKind(receiver)) operation = WHOLE_COLLECTION_WRITES[method];
    else if (method in MODEL_WRITES && isModel(receiver)) operation = MODEL_WRITES[method];
    else if (COLLECTION_WRITES.has(method) && collectionKind(receiver)) operation = `${collectionKind(receiver)}.${method}`;
    else if (method in DOCUMENT_WRITES && !isModel(receiver) && isDocument(receiver, call)) operation = DOCUMENT_WRITES[method];
    if (operation !== undefined) sites.push(siteAt(callee.name, operation));
  }

  function siteAt(name: TS.Node, operation: string): StaticSite {
    const sf = name.getSourceFile();
    const { line, character } = sf.getLineAndCharacterOfPosition(name.getStart(sf));
    const site = { file: resolve(sf.fileName), line: line + 1, column: character + 1, operation, function: functionName(name) };
    nodeOfSite.set(keyOfSite(site), name);
    return site;
  }

  function enclosingFunction(node: TS.Node): TS.SignatureDeclaration | undefined {
    for (let n = node.parent; n; n = n.parent) if (ts.isFunctionLike(n) && 'body' in n && n.body) return n;
    return undefined;
  }

  function className(node: TS.Node): string {
    return ts.isClassLike(node) && node.name ? node.name.text : '<anonymous>';
  }

  /** The enclosing function as V8 names it in a stack trace (measured on Node 20 and 24). */
  function functionName(node: TS.Node): string {
    const fn = enclosingFunction(node);
    if (!fn) return '<anonymous>';
    const parent = fn.parent;
    const nameOf = (n: TS.PropertyName | TS.BindingName | undefined) =>
      n && (ts.isIdentifier(n) || ts.isStringLiteral(n) || ts.isPrivateIdentifier(n)) ? n.text : undefined;
    if (ts.isConstructorDeclaration(fn)) return `new ${className(parent)}`;
    if (ts.isMethodDeclaration(fn) || ts.isGetAccessor(fn) || ts.isSetAccessor(fn)) {
      const name = nameOf(fn.name) ?? '<anonymous>';
      return ts.isObjectLiteralExpression(parent) ? `Object.${name}` : `${className(parent)}.${name}`;
    }
    if ((ts.isFunctionDeclaration(fn) || ts.isFunctionExpression(fn)) && fn.name) return fn.name.text;
    if (ts.isVariableDeclaration(parent)) return nameOf(parent.name) ?? '<anonymous>';
    if (ts.isPropertyAssignment(parent)) return `Object.${nameOf(parent.name) ?? '<anonymous>'}`;
    if (ts.isPropertyDeclaration(parent)) return `${className(parent.parent)}.${nameOf(parent.name) ?? '<anonymous>'}`;
    if (ts.isFunctionDeclaration(fn) && ts.getCombinedModifierFlags(fn) & ts.ModifierFlags.Default) return 'default';
    return '<anonymous>';
  }

  /** The symbol a call of `fn` resolves to, and the name it is called by; undefined for an anonymous function. */
  function calleeSymbol(fn: TS.SignatureDeclaration): { symbol: TS.Symbol; name: string } | undefined {
    const named = (node: TS.Node | undefined) => {
      if (!node || !(ts.isIdentifier(node) || ts.isPrivateIdentifier(node) || ts.isStringLiteral(node))) return undefined;
      const symbol = checker.getSymbolAtLocation(node);
      return symbol ? { symbol, name: node.text } : undefined;
    };
    if (ts.isFunctionDeclaration(fn) || ts.isMethodDeclaration(fn)) return named(fn.name);
    const parent = fn.parent;
    if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return named(parent.name);
    if (ts.isFunctionExpression(fn)) return named(fn.name);
    return undefined;
  }

  function callersOf(site: StaticSite): StaticSite[] | undefined {
    const node = nodeOfSite.get(keyOfSite(site));
    const fn = node && enclosingFunction(node);
    const target = fn && calleeSymbol(fn);
    if (!target) return undefined;
    const callers: StaticSite[] = [];
    for (const call of callsByName.get(target.name) ?? []) {
      const callee = call.expression;
      const name = ts.isPropertyAccessExpression(callee) ? callee.name : callee;
      if (symbolOf(name) !== target.symbol) continue;
      callers.push(siteAt(name, site.operation));
    }
    return callers;
  }

  sites.sort((a, b) => (a.file === b.file ? a.line - b.line || a.column - b.column : a.file < b.file ? -1 : 1));
  return { files: sources.length, declarations, collection, collectionSource, sites, callersOf };
}
