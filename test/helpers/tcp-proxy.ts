/**
 * A TCP proxy in front of a real server that a test can break: stall (connections are accepted,
 * nothing is forwarded either way, as with a partitioned network or a hung server) or reset
 * (connections are accepted and closed at once, as with a server that fails every request). TLS
 * passes through untouched, so a client keeps checking the server's certificate.
 */
import net from 'node:net';

/** What the proxy does with traffic: forward it, hold it, or close connections on arrival. */
export type ProxyMode = 'forward' | 'stall' | 'reset';

export interface TcpProxy {
  readonly port: number;
  /** Connections accepted since the start, whatever the mode. */
  readonly accepted: number;
  /** Connections accepted in `reset` mode (each one a failed attempt of the client). */
  readonly resets: number;
  /** Client connections currently held in `stall` mode. */
  readonly stalledOpen: number;
  /** Stalled connections the client closed itself (it gave up on the request). */
  readonly stalledClosedByClient: number;
  /**
   * Switches mode. `stall` also freezes the connections already open; leaving `stall` closes
   * the held connections (their bytes are lost, as after a partition heals).
   */
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
  stalled: boolean;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  mode: ProxyMode = 'forward',
): Promise<TcpProxy> {
  let current = mode;
  let accepted = 0;
  let resets = 0;
  let stalledClosedByClient = 0;
  const pairs = new Set<Pair>();

  // Bytes are read and dropped rather than left unread: a paused socket would never see the
  // client close it.
  const drop = (): void => undefined;
  const stall = (p: Pair): void => {
    p.stalled = true;
    p.client.unpipe();
    p.upstream?.unpipe();
    // unpipe() leaves a stream paused, and a 'data' listener alone does not resume it.
    p.client.on('data', drop).resume();
    p.upstream?.on('data', drop).resume();
  };

  const server = net.createServer((client) => {
    accepted++;
    if (current === 'reset') {
      resets++;
      client.resetAndDestroy();
      return;
    }
    const p: Pair = { client, upstream: undefined, stalled: false };
    pairs.add(p);
    client.on('error', () => undefined);
    client.once('close', () => {
      // A client closing a connection that could not have completed has abandoned the request.
      if (p.stalled && pairs.has(p)) stalledClosedByClient++;
      pairs.delete(p);
      p.upstream?.destroy();
    });
    if (current === 'stall') {
      stall(p);
      return;
    }
    const upstream = net.connect(target.port, target.host);
    p.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.once('close', () => {
      if (!p.stalled) client.destroy();
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address() as net.AddressInfo;

  return {
    port: addr.port,
    get accepted() {
      return accepted;
    },
    get resets() {
      return resets;
    },
    get stalledOpen() {
      return [...pairs].filter((p) => p.stalled).length;
    },
    get stalledClosedByClient() {
      return stalledClosedByClient;
    },
    setMode(next) {
      if (next === 'stall') for (const p of pairs) stall(p);
      else if (current === 'stall') {
        for (const p of [...pairs]) {
          pairs.delete(p);
          p.client.destroy();
          p.upstream?.destroy();
        }
      }
      current = next;
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream?.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
