/**
 * What the engineers read: a `BypassReport` rendered as a Datadog event (title, markdown text with
 * the notify handles first, the caller trace last so it is what truncation cuts) and its tags.
 * Pure functions: no I/O, nothing here reads a document.
 */
import { hostname } from 'node:os';
import { locationOf, withoutColumn } from './report.js';
import type { BypassReport } from './report.js';
import type { Frame } from './capture.js';

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
}

const ZERO_WIDTH_SPACE = '\u200B';

/**
 * Datadog turns `@name` in event text into a notification. Paths such as `node_modules/@acme/auth`
 * must never notify anyone by accident, so every `@` that is not one of our handles is broken with a
 * zero-width space (it still reads as `@`).
 */
export function defuseHandles(text: string): string {
  return text.replaceAll('@', `@${ZERO_WIDTH_SPACE}`);
}

/** Inline code for markdown: backticks inside are replaced so the span cannot be closed early. */
function code(text: string): string {
  return `\`${defuseHandles(text).replaceAll('`', "'")}\``;
}

const NODE_MODULES_PACKAGE = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/;

function packageOf(file: string): string | undefined {
  const all = [...file.matchAll(new RegExp(NODE_MODULES_PACKAGE, 'g'))];
  return all.at(-1)?.[1]?.replaceAll('\\', '/');
}

function frameLine(frame: Frame, root: string): string {
  const where = locationOf(frame, root);
  const fn = frame.function ? ` ${frame.async ? 'async ' : ''}${frame.function}` : frame.async ? ' async' : '';
  return defuseHandles(`${where}${fn}`);
}

/** Application frames as lines; consecutive frames inside one `node_modules` package become one line. */
export function traceLines(stack: readonly Frame[], root: string, framesOmitted: number): string[] {
  const lines: string[] = [];
  let run: { pkg: string; count: number } | undefined;
  const closeRun = () => {
    if (run) lines.push(defuseHandles(`[${run.count} frame${run.count === 1 ? '' : 's'} in ${run.pkg}]`));
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

function shortenPath(location: string, room: number): string {
  if (location.length <= room) return location;
  return `…${location.slice(location.length - room + 1)}`;
}

export function alertTitle(report: BypassReport, maxChars = 100): string {
  const where = withoutColumn(report.location);
  const what = `Rogue write: ${report.model}.${report.operation}`;
  const fixed = `${what} from `;
  if (fixed.length >= maxChars - 10) return defuseHandles(what.slice(0, maxChars));
  return defuseHandles(`${fixed}${shortenPath(where, maxChars - fixed.length)}`);
}

function outcomeText(report: BypassReport): string | undefined {
  const parts = Object.entries(report.outcome).map(([key, value]) => `${key} ${value}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

export function renderAlert(report: BypassReport, context: AlertContext): AlertContent {
  const site = report.callSite;
  const headLines: string[] = [];
  if (context.notify.length > 0) headLines.push(context.notify.join(' '));
  headLines.push(
    `**Rogue write** to ${code(report.model)}: ${code(report.operation)} (${report.kind})${report.blocked ? ', refused (throw mode)' : ''}`,
    `- call site: ${code(report.location)}${site.function ? ` in ${code(site.function)}` : ''}`,
  );
  if (report.bypassedMiddleware) headLines.push('- through `Model.collection`: the driver was called directly, no Mongoose middleware ran');
  if (report.documentIds.length > 0) {
    const more = report.documentIdsOmitted > 0 ? ` (+${report.documentIdsOmitted} more)` : '';
    headLines.push(`- documents: ${report.documentIds.map(code).join(', ')}${more}`);
  } else if (report.documentIdsOmitted > 0) {
    headLines.push(`- documents: ${report.documentIdsOmitted} (ids not sent)`);
  }
  const outcome = outcomeText(report);
  if (outcome) headLines.push(`- result: ${outcome}`);
  headLines.push(`- host: ${code(hostname())}, pid ${process.pid}${context.environment.length > 0 ? `, ${context.environment.map(code).join(', ')}` : ''}`);
  if (report.suppressed > 0) headLines.push(`- ${report.suppressed} more event${report.suppressed === 1 ? '' : 's'} from this call site held back by the rate limit since the last one`);
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
