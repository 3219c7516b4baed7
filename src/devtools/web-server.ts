/**
 * A small static file server for the classroom page (`dist/web`, built by `make web`): what
 * `torii dev` serves on `--web-port`. Files come only from one folder (no path escapes it), plus
 * a few generated documents (the page's `config.json`). Not a production web server: any static
 * host serves `dist/web` as well.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../runtime/version.js';

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
 * The page's Content-Security-Policy: its own files only (scripts, styles, `config.json`), the
 * `data:` favicon, and connections to `connectSrc` alone (the NATS websocket; the media server's
 * websocket and its HTTP origin, where LiveKit's client asks why a connection was refused), so
 * that neither an injected script nor a crafted link can send the page's token to another host.
 * No framing (clickjacking), no form posts, no plugins, no `<base>`. `src/web/index.html` carries the same policy as a meta tag for
 * static hosts, less `frame-ancestors` (which a meta tag cannot set) and with any websocket.
 */
export function contentSecurityPolicy(connectSrc: readonly string[] = []): string {
  for (const s of connectSrc)
    if (!/^(wss?|https?):\/\/[^\s;,']+$/.test(s))
      throw new Error(`connect-src: ${JSON.stringify(s)} is not a ws(s):// or http(s):// URL`);
  return [
    "default-src 'self'",
    `connect-src ${["'self'", ...connectSrc].join(' ')}`,
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "form-action 'none'",
    "object-src 'none'",
    "base-uri 'none'",
  ].join('; ');
}

/** A running static server. */
export interface WebServer {
  /** `http://host:port/` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `dir` on `host:port` (0: any free port). `generated` maps request paths such as
 * `/config.json` to bodies that take precedence over files. `connectSrc` lists the websocket URLs
 * the page may open (those its `config.json` names); nothing else but its own origin.
 */
export async function startWebServer(o: {
  dir: string;
  host: string;
  port: number;
  generated?: Readonly<Record<string, string>>;
  connectSrc?: readonly string[];
}): Promise<WebServer> {
  const root = path.resolve(o.dir);
  const headers = {
    'Content-Security-Policy': contentSecurityPolicy(o.connectSrc),
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    // dev rebuilds the page under a running server: never serve a stale copy
    'Cache-Control': 'no-store',
  };
  const text = { ...headers, 'Content-Type': 'text/plain; charset=utf-8' };
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...text, Allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    const pathname = requestPath(req.url);
    if (pathname === undefined) {
      res.writeHead(400, text).end('bad request\n');
      return;
    }
    const generated = o.generated?.[pathname];
    if (generated !== undefined) {
      res.writeHead(200, { ...headers, 'Content-Type': contentType(pathname) });
      res.end(req.method === 'HEAD' ? undefined : generated);
      return;
    }
    const rel = pathname === '/' ? '/index.html' : pathname;
    const file = path.resolve(root, `.${rel}`);
    // NUL and backslashes name no file of the page; a path out of the folder is none of its files.
    if (/[\0\\]/.test(rel) || !file.startsWith(root + path.sep)) {
      res.writeHead(404, text).end('not found\n');
      return;
    }
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      res.writeHead(404, text).end('not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': contentType(file) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const server: Server = createServer((req, res) => {
    // Node drops the handler's promise: whatever it throws must end in an answer here, or the
    // request hangs and the rejection goes unhandled.
    serve(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, text).end('internal error\n');
      else res.destroy();
    });
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

/**
 * The decoded path of a request target, undefined when it is not one: a target `new URL` cannot
 * parse (`//`), or a percent-encoding that decodes to no UTF-8 (`/%E0%A4%A`).
 */
function requestPath(target: string | undefined): string | undefined {
  try {
    return decodeURIComponent(new URL(target ?? '/', 'http://localhost').pathname);
  } catch {
    return undefined;
  }
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
