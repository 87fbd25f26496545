/**
 * What the engineers read: a `BypassReport` rendered as a Datadog event (title, markdown text with
 * the notify handles first, the caller trace last so it is what truncation cuts) and its tags.
 * Pure functions: no I/O, nothing here reads a document. The markdown's structure is ours; every
 * value put into it (or into the title) goes through `inert()` first.
 */
import { hostname } from 'node:os';
import type { BypassReport, Frame, TraceContext } from '../types.js';
import { cutEnd, cutStart } from '../util/text.js';
import { locationOf, withoutColumn } from './bypass-report.js';

export interface AlertContent {
  title: string;
  /** Always kept whole: handles, what happened, where. */
  head: string;
  /** One line per frame (node_modules runs collapsed); cut from the far end when too long. */
  trace: string[];
  /** Closes the markdown block; always kept. */
  tail: string;
  tags: string[];
}

export interface AlertContext {
  root: string;
  notify: readonly string[];
  /** Extra lines such as `env: dev`; from `DD_ENV`, `DD_SERVICE`, `DD_VERSION`. */
  environment: readonly string[];
  /** The Datadog app's host (`app.datadoghq.com`), from `DD_SITE`: the trace is linked there. */
  appHost?: string | undefined;
}

const ZWSP = '\u200B';

// C0 and C1 controls (line breaks, tabs, escape sequences), and the Unicode line/paragraph separators.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is what it is for
const CONTROL = /[\u0000-\u001F\u007F-\u009F\u2028\u2029]/g;
// Bidirectional overrides and isolates: they would make a path read differently from what it is.
const BIDI = /[\u202A-\u202E\u2066-\u2069]/g;

function controlPicture(char: string): string {
  const code = char.charCodeAt(0);
  if (code < 0x20) return String.fromCharCode(0x2400 + code); // '\n' → '␊', '\t' → '␉'
  if (code === 0x7f) return '\u2421'; // '␡'
  return '\uFFFD';
}

/**
 * A value we did not write ourselves (a file path, a function or model name, an `_id`, an
 * environment value, the host name), made inert wherever it is put: in Datadog markdown (in or out
 * of a code span), in Slack, and in the datagram. It stays readable; what could act is broken:
 *
 * - control characters and line breaks become visible pictures (`␊`): no new markdown line;
 * - `\` is followed by a zero-width space: the agent turns the two characters `\n` into a line break,
 *   and markdown reads `\` as an escape;
 * - `` ` `` becomes `'`: a code span or the trace's code block cannot be closed early;
 * - `%%` is split: Datadog's `%%%` markdown block cannot be closed or opened;
 * - `@` is followed by a zero-width space (it still reads as `@`): `node_modules/@acme/auth` never
 *   notifies anyone (`notify` handles are ours and are not escaped);
 * - `<` `>` become `‹` `›`: no HTML, no autolink, no Slack `<!channel>` or `<url|text>`;
 * - `](` and `][` are split: no markdown link or image; `://` is split: no bare URL to linkify;
 * - `|`, the datagram's field separator, becomes `¦`;
 * - bidirectional overrides become `�`.
 */
export function inert(value: string): string {
  return value
    .replace(CONTROL, controlPicture)
    .replace(BIDI, '\uFFFD')
    .replaceAll('\\', `\\${ZWSP}`)
    .replaceAll('`', "'")
    .replace(/%(?=%)/g, `%${ZWSP}`)
    .replaceAll('@', `@${ZWSP}`)
    .replaceAll('<', '\u2039')
    .replaceAll('>', '\u203A')
    .replace(/\](?=[([])/g, `]${ZWSP}`)
    .replace(/:(?=\/\/)/g, `:${ZWSP}`)
    .replaceAll('|', '\u00A6');
}

/** Inline code for markdown, around an inert value (never empty: two backticks would be literal text). */
function code(text: string): string {
  return `\`${text === '' ? ZWSP : inert(text)}\``;
}

const NODE_MODULES_PACKAGE = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/;

function packageOf(file: string): string | undefined {
  const all = [...file.matchAll(new RegExp(NODE_MODULES_PACKAGE, 'g'))];
  return all.at(-1)?.[1]?.replaceAll('\\', '/');
}

function frameLine(frame: Frame, root: string): string {
  const where = locationOf(frame, root);
  const fn = frame.function ? ` ${frame.async ? 'async ' : ''}${frame.function}` : frame.async ? ' async' : '';
  return inert(`${where}${fn}`);
}

/** Application frames as lines; consecutive frames inside one `node_modules` package become one line. */
export function traceLines(stack: readonly Frame[], root: string, framesOmitted: number): string[] {
  const lines: string[] = [];
  let run: { pkg: string; count: number } | undefined;
  const closeRun = () => {
    if (run) lines.push(`[${run.count} frame${run.count === 1 ? '' : 's'} in ${inert(run.pkg)}]`);
    run = undefined;
  };
  for (const frame of stack) {
    const pkg = packageOf(frame.file);
    if (pkg) {
      if (run?.pkg === pkg) run.count++;
      else {
        closeRun();
        run = { pkg, count: 1 };
      }
      continue;
    }
    closeRun();
    lines.push(frameLine(frame, root));
  }
  closeRun();
  if (framesOmitted > 0) lines.push(`[${framesOmitted} deeper frames not captured]`);
  return lines;
}

/**
 * At most `max` UTF-16 units of inert text, whole characters (util/text.ts), never ending between a
 * character and the zero-width space that defuses it (`@`, `%%`, `\\`, `](`): that pair goes whole or not at all.
 */
function cutInert(text: string, max: number): string {
  let kept = cutStart(text, max);
  while (kept.length > 0 && text[kept.length] === ZWSP) kept = cutStart(kept, kept.length - 1); // its escaped character goes with it
  return kept;
}

/** The end of a location in `room` units, whole characters, after a `…`. */
function shortenPath(location: string, room: number): string {
  if (location.length <= room) return location;
  return `…${cutEnd(location, room - 1)}`;
}

/** Plain text (Datadog does not render titles as markdown, Slack may): every value in it is inert too. */
export function alertTitle(report: BypassReport, maxChars = 100): string {
  const where = inert(withoutColumn(report.location));
  const what = `Rogue write: ${inert(report.model)}.${inert(report.operation)}`;
  const fixed = `${what} from `;
  if (fixed.length >= maxChars - 10) return cutInert(what, maxChars);
  return `${fixed}${shortenPath(where, maxChars - fixed.length)}`;
}

/**
 * The Datadog app's host for a `DD_SITE` (`datadoghq.com`, `datadoghq.eu`, `us3.datadoghq.com`,
 * `ddog-gov.com`, `ap1.datadoghq.com`...): a site of two labels is served at `app.<site>`
 * (`app.datadoghq.eu`), a regional one at its own name (`us5.datadoghq.com`), as Datadog's site
 * list says. Undefined for anything that is not a host name (no link then).
 */
export function datadogAppHost(site: string | undefined): string | undefined {
  const host = site
    ?.trim()
    .toLowerCase()
    .replace(/^https?:\/\//, '')
    .replace(/\/+$/, '');
  if (!host || host.length > 253 || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(host)) return undefined;
  return host.split('.').length === 2 ? `app.${host}` : host;
}

/**
 * The trace's page in Datadog APM (`/apm/trace/<id>`, the id in decimal). An OpenTelemetry trace id is
 * linked by its low 64 bits: the trace id Datadog keeps for a trace it received from OpenTelemetry.
 */
export function datadogTraceUrl(trace: Pick<TraceContext, 'traceId' | 'source'>, appHost: string): string | undefined {
  let id: string | undefined;
  if (trace.source === 'datadog') id = trace.traceId;
  else if (/^[0-9a-f]{32}$/.test(trace.traceId)) id = BigInt(`0x${trace.traceId.slice(16)}`).toString();
  if (!id || !/^\d{1,39}$/.test(id) || /^0+$/.test(id) || !/^[a-z0-9.-]+$/.test(appHost)) return undefined;
  return `https://${appHost}/apm/trace/${id}`;
}

/** Route and resource names are the app's: shown whole up to this length, then cut (the head is never cut). */
const MAX_REQUEST_CHARS = 200;

function traceLine(trace: TraceContext, appHost: string | undefined): string[] {
  const lines: string[] = [];
  const request = [
    trace.route ? `route ${code(trace.route.slice(0, MAX_REQUEST_CHARS))}` : undefined,
    trace.resource && trace.resource !== trace.route ? `resource ${code(trace.resource.slice(0, MAX_REQUEST_CHARS))}` : undefined,
  ].filter((part) => part !== undefined);
  if (request.length > 0) lines.push(`- request: ${request.join(', ')}`);
  const tracer = trace.source === 'datadog' ? 'dd-trace' : 'OpenTelemetry';
  const url = appHost === undefined ? undefined : datadogTraceUrl(trace, appHost);
  // The URL is ours: a checked host name and a decimal id (inert() would leave both as they are, and would break its `://`).
  lines.push(`- trace: ${code(trace.traceId)} (${tracer}, span ${code(trace.spanId)})${url ? `: [open in APM](${url})` : ''}`);
  return lines;
}

function outcomeText(report: BypassReport): string | undefined {
  const parts = Object.entries(report.outcome).map(([key, value]) => `${key} ${value}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

/** How a write that ran no Mongoose middleware was made, as the event says it. */
function routeLine(operation: string): string {
  if (operation.startsWith('collection.'))
    return '- through `Model.collection`: the driver was called directly, no Mongoose middleware ran';
  if (operation === 'connection.bulkWrite') return '- through `connection.bulkWrite`: no Mongoose middleware ran';
  if (/^(?:driver\.|client\.|aggregate\.|renameCollection$|drop)/.test(operation))
    return '- with the MongoDB driver directly: no Mongoose middleware ran';
  return "- through a query built by hand on Mongoose's base `Query` class: no middleware of the model ran";
}

export function renderAlert(report: BypassReport, context: AlertContext): AlertContent {
  const site = report.callSite;
  const headLines: string[] = [];
  if (context.notify.length > 0) headLines.push(context.notify.join(' '));
  headLines.push(
    `**Rogue write** to ${code(report.model)}: ${code(report.operation)} ` +
      `(${inert(report.kind)})${report.blocked ? ', refused (throw mode)' : ''}`,
    `- call site: ${code(report.location)}${site.function ? ` in ${code(site.function)}` : ''}`,
  );
  if (report.trace) headLines.push(...traceLine(report.trace, context.appHost));
  if (report.bypassedMiddleware) headLines.push(routeLine(report.operation));
  if (report.documentIds.length > 0) {
    const more = report.documentIdsOmitted > 0 ? ` (+${report.documentIdsOmitted} more)` : '';
    headLines.push(`- documents: ${report.documentIds.map(code).join(', ')}${more}`);
  } else if (report.documentIdsOmitted > 0) {
    headLines.push(`- documents: ${report.documentIdsOmitted} (ids not sent)`);
  }
  const outcome = outcomeText(report);
  if (outcome) headLines.push(`- result: ${outcome}`);
  headLines.push(
    `- host: ${code(hostname())}, pid ` +
      `${process.pid}${context.environment.length > 0 ? `, ${context.environment.map(code).join(', ')}` : ''}`,
  );
  if (report.suppressed > 0)
    headLines.push(
      `- ${report.suppressed} more event${report.suppressed === 1 ? '' : 's'} from this call site held back by the rate limit since the ` +
        `last one`,
    );
  headLines.push(`- fingerprint: ${code(report.fingerprint)}`, '', 'Caller trace (innermost first):', '```');

  return {
    title: alertTitle(report),
    head: `%%%\n${headLines.join('\n')}`,
    trace: traceLines(report.stack, context.root, report.framesOmitted),
    tail: '```\n%%%',
    tags: [
      `model:${report.model}`,
      `operation:${report.operation}`,
      `kind:${report.kind}`,
      `callsite:${withoutColumn(report.location)}`,
      `fingerprint:${report.fingerprint}`,
    ],
  };
}
