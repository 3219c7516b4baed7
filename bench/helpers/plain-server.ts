/**
 * The baseline of the side-by-side benches: a nats-server of the same binary and the same
 * JetStream settings as Torii's, but with plain token auth and no accounts, callout or keys in use.
 */
import path from 'node:path';
import { NatsServerProcess } from '../../src/devtools/nats-server.js';
import { renderNatsConfig } from '../../src/infra/natsconf.js';
import type { TestKeys } from '../../test/helpers/nats.js';
import { tempDir, track } from '../../test/helpers/procs.js';

/** A user of the plain server with its own permissions (as a room client's user JWT has). */
export interface PlainUser {
  user: string;
  password: string;
  permissions: { publish: string[]; subscribe: string[] };
}

/**
 * Starts the plain server (tracked, so it is stopped with the bench); `extra` is appended. With
 * `users`, those users with their permissions instead of the one token.
 */
export async function startPlainServer(o: {
  name: string;
  token: string;
  keys: TestKeys;
  extra?: string;
  users?: readonly PlainUser[];
}): Promise<NatsServerProcess> {
  const q = (s: string): string => JSON.stringify(s);
  const list = (l: string[]): string => `[ ${l.map(q).join(', ')} ]`;
  const auth = o.users
    ? `authorization {\n  users: [\n${o.users
        .map(
          (u) =>
            `    { user: ${q(u.user)}, password: ${q(u.password)}, permissions: { publish: ${list(u.permissions.publish)}, subscribe: ${list(u.permissions.subscribe)} } }`,
        )
        .join('\n')}\n  ]\n}\n`
    : `authorization { token: "${o.token}" }\n`;
  const dir = tempDir(`bench-${o.name}`);
  const config = renderNatsConfig({
    serverName: o.name,
    port: -1,
    httpPort: -1,
    jetstreamDir: path.join(dir, 'js'),
    keys: o.keys.server,
    portsFileDir: dir,
  })
    .replace(/authorization \{[\s\S]*?\n\}\n/, () => auth)
    .replace(/accounts \{[\s\S]*?\n\}\nsystem_account: "SYS"\n/, '');
  const server = await NatsServerProcess.start({ dir, config: `${config}${o.extra ?? ''}` });
  track(server.child);
  return server;
}
