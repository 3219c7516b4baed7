/**
 * A small static file server for the classroom page (`dist/web`, built by `make web`): what
 * `torii dev` serves on `--web-port`. Files come only from one folder (no path escapes it), plus
 * a few generated documents (the page's `config.json`). Not a production web server: any static
 * host serves `dist/web` as well.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from './tools.js';

/** Default port of the classroom page in `torii dev`. */
export const DEFAULT_WEB_PORT = 8090;
/** Where `make web` writes the page. */
export const WEB_DIST_DIR = path.join(PROJECT_ROOT, 'dist', 'web');

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/**
 * The page may load only its own files and talk only to NATS websockets: a token in the URL must
 * not leak to another origin through a script or an image.
 */
const CSP =
  "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'";

/** A running static server. */
export interface WebServer {
  /** `http://host:port/` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `dir` on `host:port` (0: any free port). `generated` maps request paths such as
 * `/config.json` to bodies that take precedence over files.
 */
export async function startWebServer(o: {
  dir: string;
  host: string;
  port: number;
  generated?: Readonly<Record<string, string>>;
}): Promise<WebServer> {
  const root = path.resolve(o.dir);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const headers = {
        'Content-Security-Policy': CSP,
        'Referrer-Policy': 'no-referrer',
        'X-Content-Type-Options': 'nosniff',
        // dev rebuilds the page under a running server: never serve a stale copy
        'Cache-Control': 'no-store',
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
        return;
      }
      const generated = o.generated?.[url.pathname];
      if (generated !== undefined) {
        res.writeHead(200, { ...headers, 'Content-Type': contentType(url.pathname) });
        res.end(req.method === 'HEAD' ? undefined : generated);
        return;
      }
      const rel = decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname);
      const file = path.resolve(root, `.${rel}`);
      if (file !== root && !file.startsWith(root + path.sep)) {
        res.writeHead(404, headers).end();
        return;
      }
      try {
        const body = await readFile(file);
        res.writeHead(200, { ...headers, 'Content-Type': contentType(file) });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch {
        res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found\n');
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function contentType(file: string): string {
  return CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream';
}

/** True when `dir` holds a built page. */
export async function hasWebBuild(dir: string = WEB_DIST_DIR): Promise<boolean> {
  return readFile(path.join(dir, 'index.html')).then(
    () => true,
    () => false,
  );
}
