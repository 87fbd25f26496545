#!/usr/bin/env node
/**
 * `mongoose-tripwire listen`: a stand-in DogStatsD agent that prints events as an engineer would
 * read them in Slack, and counters as a dashboard would sum them.
 */
import { parseArgs } from 'node:util';
import { renderForTerminal, startListener } from './listen.js';

const USAGE = `Usage: mongoose-tripwire listen [--port 8125] [--host 127.0.0.1] [--json]

Receives DogStatsD datagrams over UDP, checks each with a strict parser, and prints events in full
and counters as they arrive. Point the plugin at it with DD_AGENT_HOST / DD_DOGSTATSD_PORT.`;

async function main(argv: string[]): Promise<number> {
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
