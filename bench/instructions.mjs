// Instructions per write, counted by valgrind's callgrind: `node bench/instructions.mjs [op...]` after
// `npm run build`. For each op and variant, bench/profile.mjs runs twice under callgrind, with N1 and N2
// measured writes (no I/O: the driver answers at once); (instructions(N2) − instructions(N1)) / (N2 − N1)
// is the per-write count, free of the setup's. Variants: a plain model; the watched model (approved
// writes); a plain model in a process where another model is watched and all its entry points ran
// (`beside`: Mongoose's own functions there), against the same with that model not watched
// (`beside-plain`). Slow: about a minute per op and variant. INSTR_N1 / INSTR_N2 / INSTR_VARIANTS override.
// Measured on Node 20 (docs/benchmarks.md): the same variant varied by 30 % and more from run to run
// (V8 compiles and collects on its own threads and timers, which valgrind slows unevenly), so these
// counts resolve large differences only.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PROFILE = fileURLToPath(new URL('./profile.mjs', import.meta.url));
const N1 = Number(process.env.INSTR_N1 ?? 500);
const N2 = Number(process.env.INSTR_N2 ?? 2500);
const ops = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['updateOne'];
const VARIANTS = { plain: '', plugin: '1', 'beside-plain': 'beside-plain', beside: 'beside' };
const variants = (process.env.INSTR_VARIANTS ?? 'plain,plugin,beside-plain,beside').split(',');
const dir = mkdtempSync(join(tmpdir(), 'tripwire-callgrind-'));

async function instructions(op, plugin, n) {
  const { stderr } = await run(
    'valgrind',
    ['--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${join(dir, 'out')}`, process.execPath, PROFILE],
    { env: { ...process.env, NOIO: '1', OP: op, N: String(n), PLUGIN: plugin }, maxBuffer: 1 << 24 },
  );
  const collected = /Collected : (\d+)/.exec(stderr);
  if (!collected) throw new Error(`no instruction count from callgrind:\n${stderr.slice(-2000)}`);
  return Number(collected[1]);
}

const results = {};
for (const op of ops) {
  for (const variant of variants) {
    const plugin = VARIANTS[variant];
    const perWrite = ((await instructions(op, plugin, N2)) - (await instructions(op, plugin, N1))) / (N2 - N1);
    results[`${op} ${variant}`] = Math.round(perWrite);
    process.stdout.write(`${op.padEnd(16)} ${variant.padEnd(12)} ${Math.round(perWrite).toLocaleString('en')} instructions per write\n`);
  }
}
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ node: process.version, n1: N1, n2: N2, results })}\n`);
