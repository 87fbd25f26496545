#!/usr/bin/env node
/**
 * `mongoose-tripwire listen`: a stand-in DogStatsD agent that prints events as an engineer would
 * read them in Slack, and counters as a dashboard would sum them.
 * `mongoose-tripwire baseline`: writes (or checks) a baseline of known rogue call sites from records.
 * `mongoose-tripwire audit`: every write site of a model in the code, with what records have shown of it.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BaselineError } from '../errors.js';
import {
  compareWithBaseline,
  DEFAULT_BASELINE_FILE,
  formatBaseline,
  nextBaseline,
  observedSites,
  readBaseline,
} from '../ratchet/baseline.js';
import { checkRecordsFresh, type ParsedRecord, RECORD_ENV, readRecordFile } from '../ratchet/recorder.js';
import { describeKey, keyOf } from '../ratchet/site-key.js';
import type { BaselineEntry } from '../types.js';
import { firstLines, firstOf } from '../util/list.js';
import { auditCommand } from './audit.js';
import { renderForTerminal, startListener } from './listen.js';

const USAGE = `Usage: mongoose-tripwire listen [--port 8125] [--host 127.0.0.1] [--json]
       mongoose-tripwire baseline <record files...> [--out ${DEFAULT_BASELINE_FILE}] [--prune] [--check] [--root <dir>]
       mongoose-tripwire audit --model <Name> --approved <glob>... [--pass-through <glob>...] [--records <file>...]
                               [--baseline <file>] [--root <dir>] [--json] [--check] [paths...]

listen: receives DogStatsD datagrams over UDP, checks each with a strict parser, and prints events in
full and counters as they arrive. Point the plugin at it with DD_AGENT_HOST / DD_DOGSTATSD_PORT.

baseline: see mongoose-tripwire baseline --help.

audit: every place in the code that can write to the model, each with what records have shown of it
(approved, seen, unseen, pass-through); see mongoose-tripwire audit --help.`;

const BASELINE_USAGE =
  `Usage: mongoose-tripwire baseline <record files...> [--out ${DEFAULT_BASELINE_FILE}] [--prune] [--check] [--root ` +
  `<dir>]

Writes the baseline of known rogue call sites (the plugin's option \`baseline\`) from record files,
written by running the app or its tests with ${RECORD_ENV}=<file>. An entry is a model, an operation,
a file and its enclosing function, with the number of distinct call sites seen.

  --out <file>   the baseline to update (default ${DEFAULT_BASELINE_FILE}); entries already in it are kept
  --prune        write exactly what the records saw: entries not seen are dropped, counts lowered
  --check        write nothing; exit 1, naming them, when the records hold rogue call sites the
                 baseline does not (it would grow). With --prune, also when it could shrink.
  --root <dir>   where the recorded files are now (default: the root recorded with them)

Every recording run marks the record file when it starts, and lines are appended run after run: a
line recorded before its source file changed is ignored (and counted) when a run recorded since;
otherwise a record whose source file changed or disappeared since it was recorded is an error:
delete the record and record again. Exit codes: 0 done, 1 --check failed, 2 bad arguments or files.`;

/** \`mongoose-tripwire baseline\`: never approves silently; every bad input is an error naming it. */
const BASELINE_OPTIONS = {
  out: { type: 'string', default: DEFAULT_BASELINE_FILE },
  prune: { type: 'boolean', default: false },
  check: { type: 'boolean', default: false },
  root: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function baselineCommand(argv: string[]): number {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof BASELINE_OPTIONS }>>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: BASELINE_OPTIONS,
    });
  } catch (error) {
    process.stderr.write(`mongoose-tripwire baseline: ${(error as Error).message}\n\n${BASELINE_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${BASELINE_USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) {
    process.stderr.write(
      `mongoose-tripwire baseline: name at least one record file (written with ${RECORD_ENV}=<file>)\n\n${BASELINE_USAGE}\n`,
    );
    return 2;
  }
  const out = values.out;
  try {
    const records: ParsedRecord[] = [];
    for (const file of positionals) {
      const read = readRecordFile(file);
      const { fresh, ignored } = checkRecordsFresh(read.records, file, values.root, read.mtimeMs);
      records.push(...fresh);
      if (ignored.length > 0) {
        const files = [...new Set(ignored.map((r) => r.file))];
        process.stderr.write(
          `mongoose-tripwire baseline: ignored ${ignored.length} line(s) of ${file} recorded by an earlier run, before their file ` +
            `changed: ${firstOf(files)} (the latest run recorded these files afresh)\n`,
        );
      }
    }
    let entries: BaselineEntry[] = [];
    if (existsSync(out)) entries = readBaseline(out);
    else if (values.check)
      throw new BaselineError(
        `baseline ${out} does not exist, so there is nothing to check against: create it with \`mongoose-tripwire baseline ` +
          `${positionals.join(' ')} --out ${out}\` and commit it`,
      );

    const { observed, unbaselinable } = observedSites(records);
    if (unbaselinable.length > 0) {
      const where = firstOf([...new Set(unbaselinable.map((r) => `${r.model}.${r.operation} at ${r.location}`))], 10, '; ');
      process.stderr.write(
        `mongoose-tripwire baseline: ${unbaselinable.length} rogue write(s) had no call site file and cannot be baselined (they stay ` +
          `new): ${where}\n`,
      );
    }
    const { grown, shrinkable } = compareWithBaseline(entries, observed);
    const sites = [...observed.values()].reduce((sum, o) => sum + o.locations.size, 0);

    if (values.check) {
      let failed = false;
      if (grown.length > 0) {
        failed = true;
        process.stderr.write(`mongoose-tripwire baseline --check: ${grown.length} new rogue call site key(s), not in ${out}:\n`);
        const lines = grown.map(
          ({ site, allowed, locations }) =>
            `  + ${describeKey(site)}: ${locations.length} call site(s), the baseline allows ${allowed}: ${firstOf(locations)}`,
        );
        for (const line of firstLines(lines, 20, (more) => `  … and ${more} more`)) process.stderr.write(`${line}\n`);
        process.stderr.write(
          `Route these writes through approved code, or accept them: mongoose-tripwire baseline ${positionals.join(' ')} --out ${out}\n`,
        );
      }
      if (shrinkable.length > 0) {
        process.stderr.write(
          `${values.prune ? 'mongoose-tripwire baseline --check --prune: ' : ''}${shrinkable.length} ` +
            `entr${shrinkable.length === 1 ? 'y' : 'ies'} of ${out} can shrink (fewer call sites seen):\n`,
        );
        const lines = shrinkable.map(({ entry, seen }) => `  - ${describeKey(entry)}: ${entry.count} known, ${seen} seen`);
        for (const line of firstLines(lines, 20, (more) => `  … and ${more} more`)) process.stderr.write(`${line}\n`);
        process.stderr.write(`Shrink it with: mongoose-tripwire baseline ${positionals.join(' ')} --out ${out} --prune\n`);
        if (values.prune) failed = true;
      }
      if (failed) return 1;
      process.stdout.write(`baseline ${out} covers every rogue call site recorded (${sites} call site(s), ${records.length} write(s))\n`);
      return 0;
    }

    const next = nextBaseline(entries, observed, values.prune);
    const before = new Map(entries.map((entry) => [keyOf(entry), entry.count]));
    const after = new Map(next.map((entry) => [keyOf(entry), entry.count]));
    const added = next.filter((entry) => !before.has(keyOf(entry))).length;
    const grew = next.filter((entry) => (before.get(keyOf(entry)) ?? entry.count) < entry.count).length;
    const lowered = next.filter((entry) => (before.get(keyOf(entry)) ?? entry.count) > entry.count).length;
    const dropped = entries.filter((entry) => !after.has(keyOf(entry))).length;
    writeFileSync(out, formatBaseline(next));
    process.stdout.write(
      `wrote ${out}: ${next.length} entr${next.length === 1 ? 'y' : 'ies'} (${added} added, ${grew} grown, ${lowered} lowered, ` +
        `${dropped} dropped) from ${records.length} recorded rogue write(s)\n`,
    );
    const lines = grown.map(({ site, allowed, locations }) => `  + ${describeKey(site)}: ${allowed} -> ${locations.length} call site(s)`);
    for (const line of firstLines(lines, 20, (more) => `  … and ${more} more`)) process.stdout.write(`${line}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof BaselineError)) throw error;
    process.stderr.write(`mongoose-tripwire baseline: ${error.message}\n`);
    return 2;
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'baseline') return baselineCommand(argv.slice(1));
  if (argv[0] === 'audit') return auditCommand(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string', default: '8125' },
      host: { type: 'string', default: '127.0.0.1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals[0] !== 'listen' || positionals.length > 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    process.stderr.write(`mongoose-tripwire: --port must be an integer 0-65535, got "${values.port}"\n`);
    return 2;
  }
  const listener = await startListener({
    port,
    host: values.host,
    onDatagram: (datagram) => process.stdout.write(`${values.json ? JSON.stringify(datagram) : renderForTerminal(datagram)}\n`),
    onMalformed: (packet, error) => process.stderr.write(`MALFORMED datagram (${error.message}): ${JSON.stringify(packet)}\n`),
  });
  process.stderr.write(`listening for DogStatsD on udp://${listener.host}:${listener.port}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await listener.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`mongoose-tripwire: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
