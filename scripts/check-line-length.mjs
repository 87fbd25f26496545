// Lines of code stay readable side by side: none over 140 characters (the formatter wraps code,
// this catches the comments and strings it cannot). Markdown and data files are not code; the test
// fixtures (and the table they are generated from) are apps whose line numbers the tests assert, left as they are.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MAX = 140;
const CODE = /\.(?:[cm]?[jt]s|tsx|sh)$/;
const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' })
  .split('\n')
  .filter((file) => CODE.test(file) && !file.includes('/dist/'))
  .filter((file) => !file.startsWith('test/fixtures/') && file !== 'test/support/fixture-writes.mjs');
const long = [];
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // listed by git but deleted in the work tree
  }
  text.split('\n').forEach((line, index) => {
    if ([...line].length > MAX) long.push(`${file}:${index + 1}: ${[...line].length} characters`);
  });
}
if (long.length > 0) {
  const shown = long.slice(0, 50);
  console.error(
    `${long.length} line(s) over ${MAX} ` +
      `characters:\n${shown.join('\n')}${long.length > shown.length ? `\n… and ${long.length - shown.length} more` : ''}`,
  );
  process.exit(1);
}
