/**
 * The classroom page's static server over real HTTP, against a temp folder with a secret file
 * beside the served one: no request path reaches the secret, a malformed one is answered (not
 * left hanging), and every response carries the security headers, errors included.
 */
import { request } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  contentSecurityPolicy,
  startWebServer,
  type WebServer,
} from '../../src/devtools/web-server.js';
import { tempDir } from '../helpers/procs.js';

/** What the secret file holds: no response body may contain it. */
const SECRET = 'the-secret-beside-the-page';
/** A malformed request must be answered well within this, in milliseconds. */
const ANSWER_WITHIN_MS = 1_000;
/** The websocket the page's config.json names. */
const WEBSOCKET = 'ws://127.0.0.1:4223';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One request with `rawPath` sent as it is: `fetch` would normalize `%2e%2e` and friends before
 * they reach the server, which is what this test must not let happen.
 */
function get(server: WebServer, rawPath: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: server.port, path: rawPath, method, timeout: ANSWER_WITHIN_MS },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${rawPath}: no answer in time`)));
    req.on('error', reject);
    req.end();
  });
}

describe('startWebServer', () => {
  let server: WebServer;

  beforeAll(async () => {
    const dir = tempDir('web-server');
    const served = path.join(dir, 'web');
    mkdirSync(served);
    writeFileSync(path.join(served, 'index.html'), '<!doctype html><title>page</title>');
    writeFileSync(path.join(dir, 'secret.txt'), SECRET);
    server = await startWebServer({
      dir: served,
      host: '127.0.0.1',
      port: 0,
      generated: { '/config.json': `{"servers":["${WEBSOCKET}"]}` },
      connectSrc: [WEBSOCKET],
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  const expectSecurityHeaders = (a: Answer): void => {
    expect(a.headers['content-security-policy']).toBe(
      `default-src 'self'; connect-src 'self' ${WEBSOCKET}; img-src 'self' data:; ` +
        "frame-ancestors 'none'; form-action 'none'; object-src 'none'; base-uri 'none'",
    );
    expect(a.headers['referrer-policy']).toBe('no-referrer');
    expect(a.headers['x-content-type-options']).toBe('nosniff');
  };

  test('connect-src takes websocket and http(s) URLs only (nothing that could end the directive)', () => {
    expect(() => contentSecurityPolicy(["ws://a:1; script-src 'unsafe-inline'"])).toThrow();
    expect(() => contentSecurityPolicy(["http://a:1 'unsafe-eval'"])).toThrow();
    expect(() => contentSecurityPolicy(['javascript:alert(1)'])).toThrow();
    expect(() => contentSecurityPolicy(['*'])).toThrow();
    // the media server: its websocket and the HTTP origin LiveKit's client asks for reasons
    expect(contentSecurityPolicy(['ws://127.0.0.1:7880', 'http://127.0.0.1:7880'])).toContain(
      "connect-src 'self' ws://127.0.0.1:7880 http://127.0.0.1:7880;",
    );
    expect(contentSecurityPolicy()).toContain("connect-src 'self';");
  });

  test('serves the page and the generated documents', async () => {
    const page = await get(server, '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<title>page</title>');
    expectSecurityHeaders(page);
    const config = await get(server, '/config.json');
    expect(config.status).toBe(200);
    expect(config.headers['content-type']).toBe('application/json');
    expectSecurityHeaders(config);
  });

  test.each([
    '/..%2fsecret.txt',
    '/%2e%2e/secret.txt',
    '/%2e%2e%2fsecret.txt',
    '/%5c..%5csecret.txt',
    '/..%5c..%5csecret.txt',
    '/%00',
    '/index.html%00.txt',
  ])('%s is not found, and never the secret', async (p) => {
    const a = await get(server, p);
    expect(a.status).toBe(404);
    expect(a.body).not.toContain(SECRET);
    expectSecurityHeaders(a);
  });

  test.each(['/%E0%A4%A', '/%', '//'])(
    '%s (undecodable or unparsable) is a bad request, answered at once',
    async (p) => {
      const a = await get(server, p);
      expect(a.status).toBe(400);
      expectSecurityHeaders(a);
    },
  );

  test('a method other than GET and HEAD is refused', async () => {
    const a = await get(server, '/', 'POST');
    expect(a.status).toBe(405);
    expect(a.headers['allow']).toBe('GET, HEAD');
    expectSecurityHeaders(a);
  });

  test('HEAD answers without a body', async () => {
    const a = await get(server, '/', 'HEAD');
    expect(a.status).toBe(200);
    expect(a.body).toBe('');
    expectSecurityHeaders(a);
  });

  test('the server still answers after the malformed requests', async () => {
    expect((await get(server, '/')).status).toBe(200);
  });
});
