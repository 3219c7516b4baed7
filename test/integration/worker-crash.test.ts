/**
 * Two `torii worker` processes share the queue; one is killed (SIGKILL) while 1,000 events are in
 * flight. Every event must be answered exactly once: unacked events are redelivered to the
 * survivor, and answers carry a Nats-Msg-Id derived from the event, so a redelivery that repeats
 * an answer is dropped by the room stream.
 */
import { connect as nodeConnect } from '@nats-io/transport-node';
import type { ChildProcess } from 'node:child_process';
import { RoomClient, type RoomMessage } from '../../src/client/index.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { spawnRole } from '../helpers/cli.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';

let server: TestNats;
let callout: TestCallout;

const startWorkerProcess = (): Promise<{ proc: ChildProcess; port: number }> =>
  spawnRole([
    'worker',
    '--nats-url',
    server.url,
    '--keys-dir',
    server.keys.dir,
    '--ack-wait',
    '2s',
    // 100 hand changes a user, far past the default bucket: this suite is about crashes, not rates
    '--hand-changes',
    '1000',
  ]);

beforeAll(async () => {
  server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, 'crash', { maxParticipants: 50 });
  await svc.close();
  callout = await startCallout(server.keys, [server.url]);
});
afterAll(async () => {
  await callout?.stop();
  await server?.destroy();
});

test('killing a worker with 1,000 events in flight: every event answered exactly once', async () => {
  const a = await startWorkerProcess();
  const b = await startWorkerProcess();
  const clients: RoomClient[] = [];
  const answers = new Map<string, number>();
  try {
    for (let i = 0; i < 10; i++) {
      const userId = `u${i}`;
      const c = await RoomClient.connect({
        connect: nodeConnect,
        servers: server.url,
        roomId: 'crash',
        userId,
        token: await token(server.keys, { room: 'crash', sub: userId, role: 'student' }),
        autoRenew: false,
      });
      c.on((m: RoomMessage) => {
        if (m.kind !== 'answer') return;
        const id = (m.body as { id: string }).id;
        answers.set(id, (answers.get(id) ?? 0) + 1);
      });
      clients.push(c);
    }
    const requests: Promise<unknown>[] = [];
    for (let n = 0; n < 100; n++) {
      for (const c of clients)
        requests.push(c.request(n % 2 === 0 ? 'REQ_RAISE_HAND' : 'REQ_LOWER_HAND', {}, 60_000));
    }
    await waitFor('some answers', () => answers.size >= 150, { timeoutMs: 30_000 });
    a.proc.kill('SIGKILL');
    const results = await Promise.allSettled(requests);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(answers.size).toBe(1000);
    expect([...answers.values()].filter((n) => n !== 1)).toEqual([]); // no duplicate answers
    const metrics = await (await fetch(`http://127.0.0.1:${b.port}/metrics`)).text();
    expect(metrics).toMatch(/torii_worker_events_total\{event="REQ_RAISE_HAND",outcome="ok"\} \d+/);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    b.proc.kill('SIGTERM');
  }
}, 120_000);
