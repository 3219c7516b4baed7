import {
  checkOrigin,
  DEFAULT_CLIENT_MAX_PAYLOAD,
  DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
  renderNatsConfig,
  ServiceUser,
} from '../../src/infra/natsconf.js';
import { pageOrigins } from '../../src/commands/dev.js';
import { CLIENT_SERVICE_IMPORTS } from '../../src/protocol/subjects.js';

const keys = {
  issuerPublicKey: 'AISSUER',
  xkeyPublicKey: 'XKEY',
  authPassword: 'pa"ss',
  servicePassword: 'svc',
  systemPassword: 'sys',
};

describe('renderNatsConfig', () => {
  test('callout, accounts and JetStream', () => {
    const text = renderNatsConfig({
      serverName: 's1',
      port: 4222,
      httpPort: 8222,
      jetstreamDir: '/data/js',
      keys,
    });
    expect(text).toContain('listen: "127.0.0.1:4222"');
    expect(text).toContain('http: "127.0.0.1:8222"');
    expect(text).toContain('store_dir: "/data/js"');
    expect(text).toContain('issuer: "AISSUER"');
    expect(text).toContain('xkey: "XKEY"');
    expect(text).toContain('account: "AUTH"');
    expect(text).toContain(
      `auth_users: [ "${ServiceUser.Auth}", "${ServiceUser.Service}", "${ServiceUser.System}" ]`,
    );
    expect(text).toContain('system_account: "SYS"');
    expect(text).toMatch(/"APP": \{\n\s+jetstream: enabled/);
    // quotes in secrets are escaped, not injected
    expect(text).toContain('password: "pa\\"ss"');
    expect(text).not.toContain('websocket');
    expect(text).not.toContain('cluster');
  });

  test('optional listeners and custom accounts', () => {
    const text = renderNatsConfig({
      serverName: 'n1',
      host: '0.0.0.0',
      port: 4222,
      httpPort: 0,
      websocketPort: 8080,
      jetstreamDir: '/js',
      keys,
      accounts: { auth: 'A1', app: 'A2', clients: 'A4', sys: 'A3' },
      cluster: { name: 'c', port: 6222, routes: ['nats-route://n2:6222'] },
    });
    expect(text).not.toContain('http:');
    expect(text).toMatch(/websocket \{\n\s+listen: "0\.0\.0\.0:8080"\n\s+no_tls: true/);
    expect(text).toMatch(
      /cluster \{\n\s+name: "c"\n\s+listen: "0\.0\.0\.0:6222"\n\s+routes: \[ "nats-route:\/\/n2:6222" \]/,
    );
    expect(text).toContain('account: "A1"');
    expect(text).toContain('system_account: "A3"');
  });
});

describe('account layout (isolation)', () => {
  const text = renderNatsConfig({
    serverName: 's',
    port: 4222,
    httpPort: 0,
    jetstreamDir: '/js',
    keys,
  });
  test('APP exports one service, >, and the republished room subjects, to CLIENTS only', () => {
    expect(text).toContain(
      '    exports: [\n' +
        '      { service: ">", response_type: stream, response_threshold: "15000ms", accounts: [ "CLIENTS" ] }\n' +
        '      { stream: "room.*.rp.>", accounts: [ "CLIENTS" ] }\n' +
        '    ]',
    );
    expect(text.match(/exports:/g)).toHaveLength(1);
    expect(text.match(/\{ service: ">"/g)).toHaveLength(1);
  });

  test('CLIENTS has no JetStream and no users, and imports exactly what room clients publish', () => {
    const block = /"CLIENTS": \{\n([\s\S]*?)\n {2}\}/.exec(text)?.[1] ?? '';
    expect(block).not.toContain('jetstream');
    expect(block).not.toContain('users');
    const imports = [
      ...block.matchAll(/\{ service: \{ account: "APP", subject: "([^"]+)" \} \}/g),
    ].map((m) => m[1]);
    expect(imports).toEqual([...CLIENT_SERVICE_IMPORTS]);
    expect(imports).toEqual([
      'sysJsWorker.*.*.*',
      'room.*.chat.*',
      'room.*.wb.*',
      '$JS.API.INFO',
      '$JS.API.STREAM.INFO.*',
      '$JS.API.CONSUMER.INFO.*.*',
      '$JS.API.CONSUMER.MSG.NEXT.*.*',
      '$JS.API.CONSUMER.RESET.*.*',
      '$JS.ACK.*.*.>',
    ]);
    expect(block).toContain('{ stream: { account: "APP", subject: "room.*.rp.>" } }');
  });
});

describe('room clients: limits and websocket origins', () => {
  const render = (o: Partial<Parameters<typeof renderNatsConfig>[0]> = {}): string =>
    renderNatsConfig({ serverName: 's', port: 4222, httpPort: 0, jetstreamDir: '/js', keys, ...o });
  const clients = (text: string): string =>
    /"CLIENTS": \{\n([\s\S]*?)\n {2}\}/.exec(text)?.[1] ?? '';

  test('the CLIENTS account carries the per-connection limits, defaults or given', () => {
    expect(clients(render())).toContain(
      `limits: { max_subscriptions: ${DEFAULT_CLIENT_MAX_SUBSCRIPTIONS}, max_payload: ${DEFAULT_CLIENT_MAX_PAYLOAD} }`,
    );
    expect(DEFAULT_CLIENT_MAX_PAYLOAD).toBe(64 * 1024);
    expect(
      clients(render({ clientLimits: { maxSubscriptions: 20, maxPayload: 40_000 } })),
    ).toContain('limits: { max_subscriptions: 20, max_payload: 40000 }');
    // only CLIENTS: the service accounts keep the server's own bounds
    expect(render().match(/limits:/g)).toHaveLength(1);
  });

  test('the websocket names the allowed page origins, or refuses every page', () => {
    const ws = (text: string): string => /websocket \{([\s\S]*?)\n\}/.exec(text)?.[1] ?? '';
    const listed = ws(
      render({
        websocketPort: 8080,
        websocketAllowedOrigins: ['https://classroom.example.com', 'http://localhost:8090'],
      }),
    );
    expect(listed).toContain(
      'allowed_origins: [ "https://classroom.example.com", "http://localhost:8090" ]',
    );
    expect(listed).not.toContain('same_origin');
    const none = ws(render({ websocketPort: 8080 }));
    expect(none).toContain('same_origin: true');
    expect(none).not.toContain('allowed_origins');
  });

  test('origins are scheme://host[:port], as browsers send them', () => {
    expect(checkOrigin('https://Classroom.Example.com')).toBe('https://classroom.example.com');
    expect(checkOrigin('http://127.0.0.1:8090/')).toBe('http://127.0.0.1:8090');
    expect(checkOrigin('https://example.com:443')).toBe('https://example.com');
    for (const bad of [
      'example.com',
      'ftp://example.com',
      'https://example.com/app',
      'https://a.com?x=1',
      'null',
    ])
      expect(() => checkOrigin(bad)).toThrow(/origin/);
  });

  test("torii dev allows its classroom page's origins, none without a page", () => {
    expect(pageOrigins('127.0.0.1', 8090)).toEqual([
      'http://127.0.0.1:8090',
      'http://localhost:8090',
    ]);
    expect(pageOrigins('localhost', 8090)).toEqual(['http://localhost:8090']);
    expect(pageOrigins('::1', 8090)).toEqual(['http://[::1]:8090', 'http://localhost:8090']);
    expect(pageOrigins('127.0.0.1', 0)).toEqual([]);
  });
});
