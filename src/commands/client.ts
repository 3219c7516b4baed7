/**
 * `torii client`: a command-line classroom client built on `src/client/`. It joins the room named
 * by the token, prints what happens in the room, and turns lines typed on stdin into actions:
 * plain text is chat, `/raise`, `/lower`, `/who`, `/media`, `/leave`. End of input leaves the room.
 * It is both the example of how a client uses Torii and the client the end-to-end test drives.
 */
import { connect as nodeConnect } from '@nats-io/transport-node';
import { InvalidArgumentError, type Command } from 'commander';
import { createInterface } from 'node:readline';
import { decodeJwt } from 'jose';
import { RoomClient, RoomRequestError, type RoomMessage } from '../client/index.js';
import { configError, intParser, opt } from '../runtime/config.js';
import { ConfigError, describeError } from '../protocol/errors.js';
import { Broadcast, RequestEvent } from '../protocol/events.js';
import { checkRoomId, checkUserId } from '../protocol/ids.js';
import { DEVICE_ID_RULE, isValidDeviceId } from '../protocol/subjects.js';
import { createLogger } from '../runtime/logger.js';
import { Shutdown } from '../runtime/shutdown.js';
import { addNatsUrl, examples } from './common.js';

interface ClientFlags {
  token: string;
  natsUrl: string[];
  json?: boolean;
  device?: string;
  resumeAfter?: number;
}

/** The commands a user types; anything not starting with `/` is chat. */
const ClientCommand = {
  Raise: '/raise',
  Lower: '/lower',
  Who: '/who',
  Media: '/media',
  Leave: '/leave',
  Help: '/help',
} as const;
type ClientCommand = (typeof ClientCommand)[keyof typeof ClientCommand];

const HELP = [
  'type a line to chat, or:',
  `  ${ClientCommand.Raise} [note]    raise your hand`,
  `  ${ClientCommand.Lower} [user]    lower your hand (a moderator may name someone else)`,
  `  ${ClientCommand.Who}             who is here and whose hand is up`,
  `  ${ClientCommand.Media}           media server URL and token (needs LiveKit on the workers)`,
  `  ${ClientCommand.Leave}           leave the room (so does Ctrl-D or Ctrl-C)`,
].join('\n');

/** What the room token names: the client needs it for the inbox prefix and its consumer. */
export function tokenIdentity(token: string): { roomId: string; userId: string; role?: string } {
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(token);
  } catch (e) {
    throw new ConfigError(`--token (TORII_TOKEN): not a JWT (${describeError(e)})`, {
      flag: '--token',
      cause: e,
    });
  }
  const room = claims['room'];
  const sub = claims['sub'];
  if (typeof room !== 'string' || typeof sub !== 'string')
    configError('--token', 'the token has no room or sub claim (mint one with `torii token`)');
  try {
    checkRoomId(room, 'room');
    checkUserId(sub, 'sub');
  } catch (e) {
    configError('--token', describeError(e));
  }
  const role = claims['role'];
  return { roomId: room, userId: sub, ...(typeof role === 'string' ? { role } : {}) };
}

/** Display names seen so far (initial data, joins), for readable output. */
type Names = Map<string, string>;

/** One human-readable line for something that arrived in the room; undefined to print nothing. */
export function formatRoomMessage(m: RoomMessage, names: Names): string | undefined {
  const who = (id: unknown): string => (typeof id === 'string' ? (names.get(id) ?? id) : 'someone');
  const body = (m.body ?? {}) as Record<string, unknown>;
  const data = (body['data'] ?? {}) as Record<string, unknown>;
  switch (m.kind) {
    case 'chat':
      return `<${who(m.from)}> ${typeof body['text'] === 'string' ? body['text'] : JSON.stringify(m.body)}`;
    case 'whiteboard':
      return `* ${who(m.from)} drew on the whiteboard`;
    case 'answer':
      // Answers are shown where the request was made; errors are printed there too.
      return undefined;
    case 'event':
      break;
  }
  switch (body['event']) {
    case Broadcast.ParticipantJoined:
      if (typeof data['userId'] === 'string' && typeof data['name'] === 'string')
        names.set(data['userId'], data['name']);
      return `* ${who(data['userId'])} joined${typeof data['role'] === 'string' ? ` as ${data['role']}` : ''}`;
    case Broadcast.ParticipantLeft:
      return `* ${who(data['userId'])} left`;
    case Broadcast.HandRaised:
      return `* ${who(data['userId'])} raised a hand${typeof data['note'] === 'string' && data['note'] ? `: ${data['note']}` : ''}`;
    case Broadcast.HandLowered:
      return data['by'] && data['by'] !== data['userId']
        ? `* ${who(data['by'])} lowered ${who(data['userId'])}'s hand`
        : `* ${who(data['userId'])} lowered a hand`;
    case Broadcast.RoomUpdated:
      return '* the room was updated';
    case Broadcast.SessionEnded:
      return '* the session has ended';
    default:
      return `* ${String(body['event'])} ${JSON.stringify(data)}`;
  }
}

interface InitialData {
  room: { id: string; title?: string };
  me: { userId: string; role: string };
  participants: { userId: string; name: string; role: string }[];
  hands: { userId: string; note?: string }[];
  snapshotSeq: number;
}

function describeRoom(d: InitialData, names: Names): string {
  for (const p of d.participants) names.set(p.userId, p.name);
  const here = d.participants.map((p) => `${p.name} (${p.role})`).join(', ') || 'nobody yet';
  const hands = d.hands.map((h) => names.get(h.userId) ?? h.userId).join(', ') || 'none';
  return `here: ${here}; hands up: ${hands}`;
}

export function registerClient(program: Command): void {
  const cmd = program
    .command('client')
    .description(
      'join a room with a room token: prints what happens in the room; type to chat, /raise, /lower, /who, /leave (see --help)',
    )
    .addOption(
      opt<string>(
        '--token <jwt>',
        'room access token (`torii token`, or printed by `torii dev`)',
      ).makeOptionMandatory(),
    )
    .addOption(opt<boolean>('--json', 'print one JSON object per line instead of text'))
    .addOption(
      opt<string>(
        '--device <id>',
        `this device (${DEVICE_ID_RULE}): a consumer of its own, so each device of a user gets the whole room`,
        {
          parse: (v: string) => {
            if (isValidDeviceId(v)) return v;
            throw new InvalidArgumentError(`'${v}' is not a device id (${DEVICE_ID_RULE})`);
          },
        },
      ),
    )
    .addOption(
      opt<number>(
        '--resume-after <seq>',
        'last room stream sequence this device showed (printed as "seq" with --json): nothing at or before it is shown again',
        { parse: intParser(0, Number.MAX_SAFE_INTEGER) },
      ),
    );
  addNatsUrl(cmd).action(async (f: ClientFlags) => {
    const id = tokenIdentity(f.token);
    for (const url of f.natsUrl) {
      if (/^wss?:/i.test(url))
        configError('--nats-url', `${url}: this client speaks nats:// (ws:// is for browsers)`);
    }
    const out = (line: string): void => void process.stdout.write(line + '\n');
    const emit = (obj: Record<string, unknown>): void => out(JSON.stringify(obj));
    const names: Names = new Map();
    const log = createLogger('client', 'warn');
    let client: RoomClient;
    try {
      client = await RoomClient.connect({
        connect: nodeConnect,
        servers: f.natsUrl,
        token: f.token,
        roomId: id.roomId,
        userId: id.userId,
        connection: { name: `torii-client ${id.roomId}/${id.userId}` },
        ...(f.device !== undefined ? { deviceId: f.device } : {}),
        ...(f.resumeAfter !== undefined ? { resumeAfter: f.resumeAfter } : {}),
      });
    } catch (e) {
      throw new Error(
        `could not join room ${id.roomId} as ${id.userId} at ${f.natsUrl.join(',')}: ${describeError(e)}` +
          (/authoriz/i.test(describeError(e))
            ? ' (the token was refused: expired, signed with other keys, or an unknown room)'
            : ''),
        { cause: e },
      );
    }
    const shutdown = new Shutdown(log);
    let leaving: Promise<void> | undefined;
    const leave = (): Promise<void> => (leaving ??= client.close());
    shutdown.add('leave', leave);
    shutdown.installSignalHandlers(() => process.exit(0));
    const closedByServer = client.nc.closed().then((err) => {
      if (leaving) return;
      if (f.json) emit({ kind: 'closed', error: err ? describeError(err) : null });
      else out(`* disconnected${err ? `: ${describeError(err)}` : ''}`);
      process.exit(1);
    });
    void closedByServer;
    client.onConnectionChange((up) => {
      if (f.json) emit({ kind: up ? 'reconnected' : 'disconnected' });
      else out(up ? '* reconnected' : '* disconnected; reconnecting…');
    });

    // Listen before asking for the snapshot: chat sent meanwhile must not be lost.
    const joined: { snapshotSeq?: number } = {};
    const early: RoomMessage[] = [];
    const show = (m: RoomMessage, snapshotSeq: number): void => {
      // Broadcasts from before the snapshot are already reflected in it.
      if (m.kind === 'event' && m.seq <= snapshotSeq) return;
      if (f.json) {
        if (m.kind !== 'answer') emit({ ...m });
        return;
      }
      const line = formatRoomMessage(m, names);
      if (line !== undefined) out(line);
    };
    client.on((m) =>
      joined.snapshotSeq !== undefined ? show(m, joined.snapshotSeq) : early.push(m),
    );
    const snapshot = await client.request(RequestEvent.InitialData);
    if (f.json) emit({ kind: 'joined', ...snapshot });
    else {
      out(
        `joined ${snapshot.room.title ? `"${snapshot.room.title}" (${snapshot.room.id})` : snapshot.room.id} as ${snapshot.me.userId} (${snapshot.me.role})`,
      );
      out(describeRoom(snapshot, names));
      out(`type /help for commands`);
    }
    joined.snapshotSeq = snapshot.snapshotSeq;
    for (const m of early.splice(0)) show(m, snapshot.snapshotSeq);

    const act = async (line: string): Promise<boolean> => {
      const [word = '', ...rest] = line.trim().split(/\s+/);
      const arg = rest.join(' ');
      try {
        switch (word) {
          case '':
            return true;
          case ClientCommand.Raise:
            await client.request(RequestEvent.RaiseHand, arg ? { note: arg } : {});
            return true;
          case ClientCommand.Lower:
            await client.request(RequestEvent.LowerHand, arg ? { userId: arg } : {});
            return true;
          case ClientCommand.Who: {
            const d = await client.request(RequestEvent.InitialData);
            if (f.json) emit({ kind: 'who', participants: d.participants, hands: d.hands });
            else out(describeRoom(d, names));
            return true;
          }
          case ClientCommand.Media: {
            const d = await client.request(RequestEvent.MediaServerData);
            if (f.json) emit({ kind: 'media', ...(d as object) });
            else out(JSON.stringify(d));
            return true;
          }
          case ClientCommand.Leave:
            return false;
          case ClientCommand.Help:
            out(HELP);
            return true;
          default:
            if (word.startsWith('/')) {
              process.stderr.write(`unknown command ${word}; /help lists them\n`);
              return true;
            }
            await client.chat(line);
            return true;
        }
      } catch (e) {
        const code = e instanceof RoomRequestError ? e.code : 'ERROR';
        if (f.json) emit({ kind: 'error', command: word, code, message: describeError(e) });
        else process.stderr.write(`${word || 'chat'}: ${code}: ${describeError(e)}\n`);
        return true;
      }
    };

    // One line at a time, in order: "/raise" then "/lower" must reach the room in that order.
    const rl = createInterface({ input: process.stdin, terminal: false });
    for await (const line of rl) {
      if (!(await act(line))) break;
    }
    rl.close();
    await shutdown.run('left');
    if (f.json) emit({ kind: 'left' });
    else out('left the room');
  });
  examples(cmd, [
    'torii client --token "$(torii token --room demo --user kenji --role student)"',
    'TORII_TOKEN=… torii client --nats-url nats://127.0.0.1:4222 --json',
    'echo "/raise I have a question" | torii client --token …',
  ]);
}
