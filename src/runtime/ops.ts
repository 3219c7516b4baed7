/**
 * The operations endpoint every role serves: `/healthz` (the process runs), `/readyz` (every
 * readiness check passes) and `/metrics` (Prometheus text format).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from './logger.js';

/** Default ops port; 0 disables the endpoint. */
export const DEFAULT_OPS_PORT = 9090;
/** Prefix of every Torii metric. */
export const METRICS_PREFIX = 'torii_';

/** A named readiness check: returns true, or a reason it is not ready. */
type ReadinessCheck = () => boolean | string;

/** Holds the metrics registry and readiness checks; serves them over HTTP when started. */
export class Ops {
  readonly registry = new Registry();
  private readonly checks = new Map<string, ReadinessCheck>();
  private server: http.Server | undefined;

  private startupDone = false;

  constructor(private readonly log: Logger) {
    collectDefaultMetrics({ register: this.registry, prefix: METRICS_PREFIX });
    // Not ready until the role says it has started, whatever other checks say.
    this.addReadiness('startup', () => this.startupDone || 'starting');
  }

  /** Marks startup complete; `/readyz` then reflects the other checks. */
  markStarted(): void {
    this.startupDone = true;
  }

  /** Adds a readiness check (e.g. `nats`, `rooms-cache`). */
  addReadiness(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Results of every readiness check. */
  readiness(): { ready: boolean; checks: Record<string, string> } {
    const checks: Record<string, string> = {};
    let ready = true;
    for (const [name, check] of this.checks) {
      let r: boolean | string;
      try {
        r = check();
      } catch (e) {
        r = (e as Error).message;
      }
      checks[name] = r === true ? 'ok' : r === false ? 'not ready' : r;
      if (r !== true) ready = false;
    }
    return { ready, checks };
  }

  /** Starts listening; resolves with the bound port. */
  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const bound = (server.address() as AddressInfo).port;
    this.log.info({ port: bound }, 'ops endpoint listening (/healthz /readyz /metrics)');
    return bound;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const r = this.readiness();
        res
          .writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify(r) + '\n');
        return;
      }
      case '/metrics':
        try {
          const body = await this.registry.metrics();
          res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
        } catch (e) {
          res.writeHead(500).end(String(e));
        }
        return;
      default:
        res.writeHead(404).end();
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
  }
}
