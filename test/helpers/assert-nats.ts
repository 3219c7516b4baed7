/** Assertions on what a NATS client may and may not do, observed from the client's side. */
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import WebSocket from 'ws';

/**
 * Runs `action` and resolves with the permission violation the server reports for `subject`;
 * rejects when none arrives within the timeout.
 */
export async function expectViolation(
  nc: NatsConnection,
  operation: 'publish' | 'subscription',
  subject: string,
  action: () => unknown,
  timeoutMs = 2_000,
): Promise<PermissionViolationError> {
  const status = nc.status()[Symbol.asyncIterator]();
  const seen = (async () => {
    for (let r = await status.next(); !r.done; r = await status.next()) {
      const s = r.value;
      if (
        s.type === 'error' &&
        s.error instanceof PermissionViolationError &&
        s.error.operation === operation &&
        s.error.subject === subject
      ) {
        return s.error;
      }
    }
    throw new Error('connection closed before a permission violation was reported');
  })();
  let timer: NodeJS.Timeout | undefined;
  try {
    const attempt = Promise.resolve().then(action);
    attempt.catch(() => undefined); // a denied request also rejects; the status is what we check
    return await Promise.race([
      seen,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`no ${operation} violation for ${subject} within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    void status.return?.();
  }
}

/**
 * Opens a websocket to a NATS websocket listener as a browser page of `origin` would (undefined:
 * no Origin header, as apps and servers send). Resolves with the HTTP status the server answered
 * the upgrade with, and on 101 the first word of its first frame (`INFO`).
 */
export function websocketUpgrade(
  url: string,
  origin: string | undefined,
): Promise<{ status: number; info?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin !== undefined ? { origin } : {});
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('message', (data: Buffer) => {
      resolve({ status: 101, info: data.toString().split(' ')[0] });
      ws.close();
    });
    ws.once('error', reject);
  });
}
