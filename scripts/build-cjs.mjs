// The CommonJS copy of the package (dist/cjs/), for loaders that cannot load ES modules: jest's
// default CommonJS mode runs every module through its own `require`, which Node's require(esm) does not
// reach. Each module is transformed on its own (no bundle): the files keep their folders, so the
// plugin's own frames are still known by their path (src/util/paths.ts). The declarations are copied
// beside them, where `{"type": "commonjs"}` makes TypeScript read them as CommonJS.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');
const out = join(dist, 'cjs');
// import.meta has no CommonJS counterpart: the module's own URL from its __filename.
const IMPORT_META_URL = "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;";

rmSync(out, { recursive: true, force: true });
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
  // The command line is run by node itself, as the ES module it is.
  if (entry.parentPath === join(src, 'cli') && entry.name === 'main.ts') continue;
  const file = join(entry.parentPath, entry.name);
  const rel = relative(src, file);
  const code = readFileSync(file, 'utf8');
  const usesImportMeta = code.includes('import.meta');
  const result = transformSync(code, {
    loader: 'ts',
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcefile: relative(join(out, dirname(rel)), file),
    sourcemap: 'external',
    ...(usesImportMeta ? { define: { 'import.meta.url': '__importMetaUrl' }, banner: IMPORT_META_URL } : {}),
  });
  const target = join(out, rel.replace(/\.ts$/, '.js'));
  mkdirSync(dirname(target), { recursive: true });
  const mapName = `${entry.name.replace(/\.ts$/, '.js')}.map`;
  writeFileSync(target, `${result.code}//# sourceMappingURL=${mapName}\n`);
  writeFileSync(`${target}.map`, result.map);
  const declaration = join(dist, rel.replace(/\.ts$/, '.d.ts'));
  cpSync(declaration, target.replace(/\.js$/, '.d.ts'));
}
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
