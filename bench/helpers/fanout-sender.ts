/**
 * The sending side of bench/fanout, in a process of its own, as a sender is a device of its own:
 * its waits for PubAcks must not queue behind the receivers' work in one event loop. Reads one
 * JSON command per line on stdin and answers each with one JSON line on stdout when done.
 *
 *   {"path":"torii","messages":2000,"window":50}   the teacher's SDK chat (a JetStream publish)
 *   {"path":"core","messages":2000,"subject":"…"}  a core publish from a service connection
 *   {"path":"torii","paced":1000,"messages":5000}  SDK chat at a fixed rate per second
 *
 * Environment: SENDER_SERVERS, SENDER_ROOM, SENDER_TOKEN (the teacher's), SENDER_SERVICE_PASS.
 * Every message's body is a chat's (`{"text","at"}`), its text the send time in epoch
 * milliseconds, which the receivers decode.
 */
import { createInterface } from 'node:readline';
import { connect } from '@nats-io/transport-node';
import { RoomClient } from '../../src/client/index.js';
import { paced, pool } from '../lib.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const servers = env('SENDER_SERVERS');
const roomId = env('SENDER_ROOM');

const teacher = await RoomClient.connect({
  connect,
  servers,
  roomId,
  userId: 'teacher',
  token: env('SENDER_TOKEN'),
  autoRenew: false,
});
const service = await connect({
  servers,
  user: 'torii-service',
  pass: env('SENDER_SERVICE_PASS'),
});

interface Command {
  path: 'torii' | 'core';
  messages: number;
  window?: number;
  paced?: number;
  subject?: string;
}

const send = (c: Command): (() => Promise<void>) =>
  c.path === 'torii'
    ? () => teacher.chat(String(Date.now()))
    : () => {
        // the body a chat has (RoomClient.chat): same size, same decoding at the receivers
        const now = Date.now();
        service.publish(
          c.subject ?? '',
          JSON.stringify({ text: String(now), at: new Date(now).toISOString() }),
        );
        return Promise.resolve();
      };

process.stdout.write(JSON.stringify({ ready: true }) + '\n');
for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line) as Command;
  const task = send(c);
  const r = c.paced
    ? await paced(c.messages, c.paced, task)
    : await pool(c.messages, c.window ?? 1, task);
  await service.flush();
  process.stdout.write(JSON.stringify({ done: true, errors: r.errors }) + '\n');
}
await teacher.close({ leave: false });
await service.close();
