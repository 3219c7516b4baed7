/** `torii rooms`: what is published in NATS — room configs, streams and participants. */
import type { Command } from 'commander';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { opt } from '../runtime/config.js';
import { ToriiError, ErrorCode, describeError } from '../protocol/errors.js';
import { KeyFile, readKeyFile } from '../infra/keys.js';
import { openBucket } from '../infra/kv.js';
import { ServiceUser } from '../infra/natsconf.js';
import { occupiesSeat, parsePresence } from '../domain/presence.js';
import { parseRoomConfig } from '../domain/room-compile.js';
import { Bucket, roomStreamName } from '../protocol/subjects.js';
import { addKeysDir, addNatsUrl, examples } from './common.js';

interface RoomsFlags {
  natsUrl: string[];
  keysDir: string;
  json?: boolean;
}

/** One line of `torii rooms`. */
interface RoomSummary {
  roomId: string;
  title: string;
  maxParticipants: number;
  participants: number;
  roles: string[];
  source: string;
  stream: { messages: number; bytes: number } | null;
}

export function registerRooms(program: Command): void {
  const cmd = program
    .command('rooms')
    .description(
      'list the rooms published in NATS (KV torii_rooms), with their streams and participants',
    );
  addNatsUrl(cmd);
  addKeysDir(cmd).addOption(opt<boolean>('--json', 'print JSON instead of a table'));
  cmd.action(async (f: RoomsFlags) => {
    const pass = await readKeyFile(f.keysDir, KeyFile.ServicePassword);
    let nc;
    try {
      nc = await connect({
        servers: f.natsUrl,
        user: ServiceUser.Service,
        pass,
        maxReconnectAttempts: 0,
        timeout: 5_000,
      });
    } catch (e) {
      throw new ToriiError(
        ErrorCode.Internal,
        `cannot connect to NATS at ${f.natsUrl.join(',')}: ${describeError(e)}`,
        { cause: e },
      );
    }
    try {
      const jsm = await jetstreamManager(nc);
      const rooms = await openBucket(nc, Bucket.Rooms);
      const presence = await openBucket(nc, Bucket.Presence);
      const seats = new Map<string, number>();
      for await (const key of await presence.keys()) {
        const e = await presence.get(key);
        const r = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
        if (r && occupiesSeat(r)) seats.set(r.roomId, (seats.get(r.roomId) ?? 0) + 1);
      }
      const out: RoomSummary[] = [];
      for await (const key of await rooms.keys()) {
        const e = await rooms.get(key);
        const cfg = e?.operation === 'PUT' ? parseRoomConfig(e.json()) : undefined;
        if (!cfg) continue;
        const si = await jsm.streams.info(roomStreamName(cfg.roomId)).catch(() => undefined);
        out.push({
          roomId: cfg.roomId,
          title: cfg.title,
          maxParticipants: cfg.maxParticipants,
          participants: seats.get(cfg.roomId) ?? 0,
          roles: Object.keys(cfg.roles),
          source: cfg.source ?? '',
          stream: si ? { messages: si.state.messages, bytes: si.state.bytes } : null,
        });
      }
      out.sort((a, b) => a.roomId.localeCompare(b.roomId));
      process.stdout.write(f.json ? JSON.stringify(out, null, 2) + '\n' : table(out));
    } finally {
      await nc.close();
    }
  });
  examples(cmd, [
    'torii rooms',
    'torii rooms --json | jq ".[].roomId"',
    'torii rooms --nats-url nats://nats:4222 --keys-dir /etc/torii/keys',
  ]);
}

function table(rows: RoomSummary[]): string {
  const head = ['ROOM ID', 'PARTICIPANTS', 'MESSAGES', 'ROLES', 'SOURCE', 'TITLE'];
  const body = rows.map((r) => [
    r.roomId,
    `${r.participants}/${r.maxParticipants}`,
    r.stream ? String(r.stream.messages) : 'no stream',
    r.roles.join(','),
    r.source,
    r.title,
  ]);
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n') + '\n';
}
