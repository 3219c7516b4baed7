/**
 * Presence at scale: N users connect (through the callout) across R rooms, then drop their
 * connections (no goodbye). Measures how long until the participant lists are right, and the lag
 * of EVT_PARTICIPANT_JOINED (after the connect) and EVT_PARTICIPANT_LEFT (after the drop, against
 * the grace period). The worker runs as a separate process. Prints one JSON line.
 *
 *   npx tsx bench/presence.ts [--users 2000] [--rooms 50] [--grace 5s]
 */
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { parseDuration } from '../src/runtime/config.js';
import { openBucket } from '../src/infra/kv.js';
import { parsePresence } from '../src/domain/presence.js';
import { Broadcast } from '../src/protocol/events.js';
import { Bucket, userEventsSubject } from '../src/protocol/subjects.js';
import { connectClient, startCallout, token } from '../test/helpers/callout.js';
import { spawnRole } from '../test/helpers/cli.js';
import { startNats } from '../test/helpers/nats.js';
import { waitFor } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { nowMs, pool, r2, report, summary } from './lib.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    rooms: { type: 'string', default: '50' },
    grace: { type: 'string', default: '5s' },
  },
});
const N = Number(values.users);
const R = Number(values.rooms);
const GRACE_MS = parseDuration(values.grace);

async function main(): Promise<void> {
  const server = await startNats();
  const svc = await server.connectService();
  for (let r = 0; r < R; r++)
    await publishRoom(svc, `room${r}`, { maxParticipants: Math.ceil(N / R) * 2 });
  const callout = await startCallout(server.keys, [server.url]);
  const { proc: worker } = await spawnRole([
    'worker',
    '--nats-url',
    server.url,
    '--keys-dir',
    server.keys.dir,
    '--presence-grace',
    values.grace,
  ]);

  const users = Array.from({ length: N }, (_, i) => ({ room: `room${i % R}`, user: `u${i}` }));
  const tokens = await Promise.all(
    users.map((u) => token(server.keys, { room: u.room, sub: u.user, role: 'student' })),
  );
  const joinedAt = new Map<string, number>();
  const leftAt = new Map<string, number>();
  // Joins and leaves are broadcast about each user, on its own subject.
  const events = svc.subscribe(userEventsSubject('*', '*'), {
    callback: (_e, m) => {
      const ev = m.json<{ event: string; data: { userId: string } }>();
      if (ev.event === Broadcast.ParticipantJoined) joinedAt.set(ev.data.userId, nowMs());
      if (ev.event === Broadcast.ParticipantLeft) leftAt.set(ev.data.userId, nowMs());
    },
  });
  const presence = await openBucket(svc, Bucket.Presence);
  const count = async (state: string): Promise<number> => {
    let n = 0;
    for await (const k of await presence.keys()) {
      const e = await presence.get(k);
      if (e?.operation === 'PUT' && parsePresence(e.json())?.state === state) n++;
    }
    return n;
  };

  const conns: NatsConnection[] = new Array<NatsConnection>(N);
  const connectedAt = new Map<string, number>();
  const t0 = nowMs();
  const connected = await pool(N, 50, async (i) => {
    const u = users[i] as { room: string; user: string };
    conns[i] = await connectClient(server.url, u.room, u.user, tokens[i] as string, {
      reconnect: false,
    });
    connectedAt.set(u.user, nowMs());
  });
  await waitFor('all online', async () => (await count('online')) === N, {
    timeoutMs: 120_000,
    intervalMs: 500,
  });
  const allOnlineMs = nowMs() - t0;
  await waitFor('all joined events', () => joinedAt.size === N, { timeoutMs: 60_000 });
  const joinLag = users.map(
    (u) => (joinedAt.get(u.user) as number) - (connectedAt.get(u.user) as number),
  );

  const droppedAt = new Map<string, number>();
  const t1 = nowMs();
  await Promise.all(
    conns.map(async (c, i) => {
      droppedAt.set((users[i] as { user: string }).user, nowMs());
      await c.close(); // no REQ_LEAVE: the tracker must wait for the grace period
    }),
  );
  await waitFor('all left', async () => (await count('left')) === N, {
    timeoutMs: 120_000,
    intervalMs: 500,
  });
  const allLeftMs = nowMs() - t1;
  await waitFor('all left events', () => leftAt.size === N, { timeoutMs: 60_000 });
  const leaveLag = users.map(
    (u) => (leftAt.get(u.user) as number) - (droppedAt.get(u.user) as number),
  );

  report({
    bench: 'presence',
    users: N,
    rooms: R,
    graceMs: GRACE_MS,
    connectErrors: connected.errors,
    connectSeconds: r2(connected.elapsedMs / 1000),
    allOnlineMs: r2(allOnlineMs),
    joinedEventLagMs: summary(joinLag),
    allLeftMs: r2(allLeftMs),
    leftEventLagMs: summary(leaveLag),
    leftLagOverGraceP99Ms: r2(summary(leaveLag).p99 - GRACE_MS),
    targets: { leftWithinGracePlusMs: 2_000 },
  });
  events.unsubscribe();
  worker.kill('SIGTERM');
  await callout.stop();
  await svc.close();
  await server.destroy();
}

await main();
process.exit(0);
