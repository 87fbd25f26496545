/**
 * A local DogStatsD listener: shows what the agent would receive, without an agent. Used by the
 * demo, by `npx mongoose-tripwire listen`, and by the tests (a real UDP socket, real datagrams).
 * Every datagram goes through the strict parser, so a malformed one is shown as such, not guessed at.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { DatagramError } from '../errors.js';
import { type ParsedDatagram, parsePacket } from '../report/dogstatsd.js';

export interface ListenerOptions {
  /** UDP port; 0 picks a free one. Default 8125, the agent's. */
  port?: number;
  host?: string;
  onDatagram?: (datagram: ParsedDatagram) => void;
  /** A packet the strict parser refused, with why. */
  onMalformed?: (packet: string, error: DatagramError) => void;
}

export interface Listener {
  port: number;
  host: string;
  /** Every datagram received so far, in order. */
  readonly datagrams: ParsedDatagram[];
  /** Raw packets the parser refused. */
  readonly malformed: Array<{ packet: string; error: string }>;
  /** Sum of each counter, keyed `name|sorted,tags`. */
  counters(): Map<string, number>;
  /** Resolves once `predicate` holds for what was received (checked on every datagram). */
  waitFor(predicate: (datagrams: readonly ParsedDatagram[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startListener(options: ListenerOptions = {}): Promise<Listener> {
  const host = options.host ?? '127.0.0.1';
  const socket: Socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const datagrams: ParsedDatagram[] = [];
  const malformed: Array<{ packet: string; error: string }> = [];
  const waiters = new Set<() => void>();

  socket.on('message', (packet) => {
    try {
      for (const datagram of parsePacket(packet)) {
        datagrams.push(datagram);
        options.onDatagram?.(datagram);
      }
    } catch (error) {
      const text = packet.toString('utf8');
      const refusal = error instanceof DatagramError ? error : new DatagramError(String(error));
      malformed.push({ packet: text, error: refusal.message });
      options.onMalformed?.(text, refusal);
    }
    for (const check of [...waiters]) check();
  });
  socket.bind(options.port ?? 8125, host);
  await once(socket, 'listening');
  // A socket buffer large enough for a storm of events in a test or benchmark.
  socket.setRecvBufferSize(8 * 1024 * 1024);

  return {
    port: socket.address().port,
    host,
    datagrams,
    malformed,
    counters() {
      const sums = new Map<string, number>();
      for (const datagram of datagrams) {
        if (datagram.type !== 'metric' || datagram.metricType !== 'c') continue;
        const key = `${datagram.name}|${[...datagram.tags].sort().join(',')}`;
        sums.set(key, (sums.get(key) ?? 0) + datagram.value);
      }
      return sums;
    },
    waitFor(predicate, timeoutMs = 5_000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!predicate(datagrams)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching datagram within ${timeoutMs} ms (received ${datagrams.length})`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** An event as a person reads it: the markdown fences dropped, tags on one line. */
export function renderForTerminal(datagram: ParsedDatagram): string {
  if (datagram.type === 'event') {
    const body = datagram.text
      .replace(/^%%%\n?/, '')
      .replace(/\n?%%%$/, '')
      .replace(/^```\n?|\n?```$/gm, '');
    const meta = [
      datagram.alertType && `alert_type:${datagram.alertType}`,
      datagram.aggregationKey && `aggregation_key:${datagram.aggregationKey}`,
    ]
      .filter(Boolean)
      .join('  ');
    return `── EVENT ${'─'.repeat(60)}\n${datagram.title}\n${body}\n   ${meta}\n   #${datagram.tags.join(' #')}\n`;
  }
  if (datagram.type === 'metric')
    return `   ${datagram.metricType === 'g' ? 'gauge  ' : 'counter'} ${datagram.name} ${datagram.value}  #${datagram.tags.join(' #')}`;
  return `   ${datagram.raw}`;
}
