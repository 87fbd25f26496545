/**
 * Every value put into an event (paths, function and model names, ids, env values) is inert: a
 * real markdown parser (markdown-it, HTML and linkify on) finds no link, image or HTML from a value,
 * the markdown keeps the structure it has with harmless values, and the datagram keeps its lines.
 */
import { runInThisContext } from 'node:vm';
import MarkdownIt from 'markdown-it';
import type mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
import { alertTitle, inert, renderAlert } from '../src/report/alert.js';
import { formatEvent, type ParsedDatagram, parseDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport, Frame } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { scaled } from './support/scale.js';

type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;
type Token = ReturnType<InstanceType<typeof MarkdownIt>['parse']>[number];

const md = new MarkdownIt({ html: true, linkify: true });
const FORBIDDEN = new Set(['link_open', 'image', 'html_inline', 'html_block']);

/** Every token, children included, in document order. */
function flatten(tokens: readonly Token[]): Token[] {
  return tokens.flatMap((token) => [token, ...flatten(token.children ?? [])]);
}

/** What Datadog renders: the markdown between the `%%%` lines. */
function markdownOf(text: string): string {
  expect(text.startsWith('%%%\n')).toBe(true);
  expect(text.endsWith('\n%%%')).toBe(true);
  expect(text.split('%%%')).toHaveLength(3); // exactly one block, opened and closed by us
  return text.slice(4, -4);
}

const SNIPPETS = [
  '`',
  '```',
  '``',
  '%%%',
  '%',
  '%%',
  '[a](http://evil.test/)',
  '![i](http://evil.test/i.png)',
  '[a]',
  '(http://evil.test)',
  '[r]: http://evil.test',
  '<img src=x onerror=alert(1)>',
  '<b>',
  '</code>',
  '<http://evil.test>',
  '<!channel>',
  '<@U123>',
  '@here',
  '@slack-ops',
  'me@evil.test',
  '\n',
  '\r\n',
  '\r',
  '\n\n',
  '\u2028',
  '\u0085',
  '\t',
  '\u0000',
  '\u001b[31m',
  '|',
  '||',
  '\\n',
  '\\',
  '\\`',
  '*',
  '**',
  '_',
  '~~',
  '#',
  '# ',
  '> ',
  '- ',
  '1. ',
  '---',
  '    ',
  ' ',
  'http://evil.test',
  'www.evil.test',
  'javascript:alert(1)',
  '&lt;img src=x&gt;',
  '&#60;b&#62;',
  '&amp;',
  '\u202Etxt.exe',
  '{{event.text}}',
  '#model:x',
  'a',
  'tokens',
  'é',
  '发放',
  '🔑',
  '\uD800',
  'x]',
  '](',
  '][',
];

function random(n: number): number {
  return Math.floor(Math.random() * n);
}

function hostile(): string {
  return Array.from({ length: 1 + random(6) }, () => SNIPPETS[random(SNIPPETS.length)]).join('');
}

const root = '/srv/app';

/**
 * A report and context whose every free-form value comes from `value`: the hostile case, and a
 * harmless twin built from the same choices with `x` everywhere.
 */
function scenario(value: () => string) {
  const frames: Frame[] = [
    { file: `${root}/${value()}/${value()}.js`, line: 7, column: 15, function: value() },
    { file: `${root}/node_modules/${value()}/index.js`, line: 1, column: 1, function: value() },
    { file: `/elsewhere/${value()}.mjs`, line: 2, column: 3, function: value(), async: true },
    { file: value(), line: 4, column: 5 },
  ];
  const report = {
    model: value(),
    operation: 'updateOne',
    kind: 'update',
    callSite: frames[0]!,
    stack: frames,
    framesOmitted: 3,
    fingerprint: '0123456789abcdef',
    documentIds: [value(), value()],
    documentIdsOmitted: 2,
    outcome: { matched: 1, modified: 1 },
    at: new Date(1_700_000_000_000),
    suppressed: 2,
    blocked: false,
    location: `${value()}/${value()}.js:7:15`,
    bypassedMiddleware: true,
  } as BypassReport;
  const context = { root, notify: ['@slack-auth-alerts'], environment: [`env: ${value()}`, `service: ${value()}`] };
  return { report, context };
}

function render(value: () => string) {
  const { report, context } = scenario(value);
  const alert = renderAlert(report, context);
  const datagram = formatEvent(
    { title: alert.title, text: { head: alert.head, trace: alert.trace, tail: alert.tail }, alertType: 'warning' },
    { maxTextChars: 100_000, maxDatagramBytes: 1_000_000 },
  );
  return { alert, event: parseDatagram(datagram) as EventDatagram };
}

describe('values in the event are inert', () => {
  const ROUNDS = scaled(1_000, 100); // 1 000 at TRIPWIRE_TEST_SCALE=1
  it(`fuzz: ${ROUNDS} events with hostile values keep the structure of harmless ones, with no link, image or HTML`, () => {
    for (let round = 0; round < ROUNDS; round++) {
      const choices = Array.from({ length: 30 }, hostile);
      let i = 0;
      const { event } = render(() => choices[i++ % choices.length]!);
      const { event: twin } = render(() => 'x');

      const tokens = flatten(md.parse(markdownOf(event.text), {}));
      const found = tokens.filter((token) => FORBIDDEN.has(token.type));
      expect(
        found.map((t) => `${t.type} ${t.content}`),
        `round ${round}: ${JSON.stringify(choices)}`,
      ).toEqual([]);
      // Same blocks and inline tokens as with `x` everywhere: no value opened a list, a heading, a
      // quote, a new paragraph, emphasis, or closed a code span or the trace's code block.
      const twinTokens = flatten(md.parse(markdownOf(twin.text), {}));
      expect(
        tokens.map((t) => t.type),
        `round ${round}: ${JSON.stringify(choices)}`,
      ).toEqual(twinTokens.map((t) => t.type));
      // No line break from a value, in the text as the agent decodes it.
      expect(event.text.split('\n')).toHaveLength(twin.text.split('\n').length);
      // The only live @-handle is ours.
      expect(event.text.replace('@slack-auth-alerts', '')).not.toMatch(/@(?!\u200B)/);

      expect(event.title).not.toMatch(/[\n\r|`<>]/);
      const titleTokens = flatten(new MarkdownIt({ html: true }).parseInline(event.title, {}));
      expect(titleTokens.filter((token) => FORBIDDEN.has(token.type))).toEqual([]);
      expect(event.title).not.toMatch(/@(?!\u200B)/);
    }
  });

  it('inert() keeps ordinary paths and names as they read', () => {
    expect(inert('src/legacy/tokens.ts:42:7 async issueToken')).toBe('src/legacy/tokens.ts:42:7 async issueToken');
    expect(inert('légacy/jetons-été.mjs 发放令牌')).toBe('légacy/jetons-été.mjs 发放令牌');
    expect(inert('pages/[id].ts')).toBe('pages/[id].ts');
    expect(inert('a\nb')).toBe('a␊b');
    expect(inert('node_modules/@acme/auth')).toBe('node_modules/@\u200Bacme/auth');
    expect(inert('%%%')).toBe('%\u200B%\u200B%');
    expect(inert('[a](b)')).toBe('[a]\u200B(b)');
    expect(inert('<img>|`x`')).toBe("‹img›¦'x'");
    expect(inert('C:\\new')).toBe('C:\\\u200Bnew');
  });
});

describe('a title cut to 100 characters', () => {
  const title = (model: string) => alertTitle({ model, operation: 'updateOne', location: 'legacy/x.mjs:1:1' } as BypassReport);
  it('never keeps an escaped character without its zero-width space, nor half a surrogate pair', () => {
    for (let at = 80; at <= 101; at++) {
      for (const hostile of ['@here', '%%%', '\\n', '](x)', '😀😀']) {
        const cut = title(`${'m'.repeat(at - 'Rogue write: '.length)}${hostile}${'z'.repeat(40)}`);
        expect(cut.length, `${hostile} at ${at}`).toBeLessThanOrEqual(100);
        expect(cut, `${hostile} at ${at}`).not.toMatch(/@(?!\u200B)|%%|\\(?!\u200B)|\](?=[([])|[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
      }
    }
  });
});

describe('end to end: a hostile file path and function name in a real rogue write', () => {
  const suite = listenerSuite(() => connect('markdown'));

  it('a folder named with a newline, %%%, a link, HTML and @here: one inert event, its lines intact', async () => {
    const schema = tokenSchema() as mongoose.Schema;
    schema.plugin(tripwire, {
      approved: ['auth/**'],
      root: fixtureDir as string,
      statsd: { host: '127.0.0.1', port: suite.listener.port },
      notify: '@slack-auth-alerts',
    });
    const T = suite.connection.model('MdToken', schema);
    await T.init();
    const folder = '/srv/app/evil\n%%%\n[click](http://evil.test/) ![x](http://evil.test/x.png) <img src=x> @here `code` |x';
    const write = runInThisContext('(function (T) { return T.create({ token: "tok_md_" + Math.random() }); })', {
      filename: `${folder}/handler.js`,
    }) as (t: unknown) => Promise<unknown>;
    Object.defineProperty(write, 'name', { value: 'issue](http://evil.test/) <script>alert(1)</script> @channel\n- fake line' });
    await write(T);
    await suite.listener.waitFor((all) => all.some((d) => d.type === 'event'));
    expect(suite.listener.malformed).toEqual([]);
    const event = suite.listener.datagrams.find((d): d is EventDatagram => d.type === 'event')!;
    const tokens = flatten(md.parse(markdownOf(event.text), {}));
    expect(tokens.filter((token) => FORBIDDEN.has(token.type))).toEqual([]);
    const lines = event.text.split('\n');
    const site = lines.find((line) => line.startsWith('- call site: '))!;
    expect(site).toContain('evil␊%\u200B%\u200B%␊[click]\u200B(http:\u200B//evil.test/)');
    expect(site).toContain('‹script›');
    // Only our own list items: the function name's '\n- fake line' stayed inside the call-site line.
    const items = lines.filter((line) => line.startsWith('- ')).map((line) => line.split(':')[0]);
    expect(
      items.every((item) => ['- call site', '- documents', '- result', '- host', '- fingerprint'].includes(item!)),
      items.join(' / '),
    ).toBe(true);
    expect(items.filter((item) => item === '- call site')).toHaveLength(1);
    expect(site).toContain('␊- fake line');
    expect(event.text).not.toMatch(/@(?!\u200B|slack-auth-alerts)/);
    expect(event.title).toMatch(/^Rogue write: MdToken\.\w+ from /);
    expect(event.title).not.toMatch(/[\n<>`|]/);
  });
});
