/** `mongoose-tripwire listen`: the stand-in agent, run as a user would (the built bin, a real socket). */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { formatCount, formatEvent } from '../src/report/dogstatsd.js';
import { waitFor } from './support/wait.js';

const bin = join(process.cwd(), 'dist', 'cli', 'main.js');

async function listen(args: string[]) {
  const child = spawn(process.execPath, [bin, 'listen', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = createInterface({ input: child.stderr });
  const stdout = createInterface({ input: child.stdout });
  const lines: string[] = [];
  const errors: string[] = [];
  stdout.on('line', (line) => lines.push(line));
  let port = 0;
  for await (const line of stderr) {
    errors.push(line);
    const match = /udp:\/\/127\.0\.0\.1:(\d+)/.exec(line);
    if (match) {
      port = Number(match[1]);
      break;
    }
  }
  stderr.on('line', (line) => errors.push(line));
  const send = async (packet: string) => {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => socket.send(packet, port, '127.0.0.1', (error) => (error ? reject(error) : resolve())));
    socket.close();
  };
  const stop = async () => {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    return code;
  };
  return { port, lines, errors, send, stop };
}

describe('mongoose-tripwire listen', () => {
  it('prints events and counters as JSON, and refuses malformed datagrams loudly', async () => {
    const agent = await listen(['--json']);
    expect(agent.port).toBeGreaterThan(0);
    const event = formatEvent({ title: 'Rogue write: AccessToken.save from légacy/x.ts:3', text: '%%%\nline\n%%%', alertType: 'warning' });
    await agent.send(`${event}|#model:AccessToken`);
    await agent.send(`${formatCount('tripwire.writes', 2)}|#approved:true`);
    await agent.send('_e{3,1}:ab|c');
    await waitFor(
      () => agent.lines.length >= 2 && agent.errors.some((e) => e.startsWith('MALFORMED')),
      'two lines and a MALFORMED error from the agent',
    );
    expect(JSON.parse(agent.lines[0]!)).toMatchObject({
      type: 'event',
      title: 'Rogue write: AccessToken.save from légacy/x.ts:3',
      text: '%%%\nline\n%%%',
      tags: ['model:AccessToken'],
    });
    expect(JSON.parse(agent.lines[1]!)).toMatchObject({ type: 'metric', name: 'tripwire.writes', value: 2, metricType: 'c' });
    expect(agent.errors.join('\n')).toMatch(/MALFORMED datagram/);
    expect(await agent.stop()).toBe(0);
  });

  it('renders an event for a person by default', async () => {
    const agent = await listen([]);
    await agent.send(formatEvent({ title: 'Rogue write: T.save from a.ts:1', text: '%%%\n@slack-x\nbody\n%%%' }));
    await waitFor(() => agent.lines.some((line) => line.includes('body')), 'the rendered event from the agent');
    expect(agent.lines.join('\n')).toMatch(/── EVENT[\s\S]*Rogue write: T\.save from a\.ts:1\n@slack-x\nbody/);
    expect(await agent.stop()).toBe(0);
  });

  it('rejects a bad port with a usage error', async () => {
    const child = spawn(process.execPath, [bin, 'listen', '--port', 'eighty'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(stderr).toMatch(/--port must be an integer/);
  });
});
