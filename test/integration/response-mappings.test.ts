/**
 * Every request a room client sends through the `APP` → `CLIENTS` service export (a stored
 * publish, a catch-up's reset and pulls) makes nats-server keep a response mapping in `APP` until
 * the export's response threshold, since the answers are streamed and the client's reply
 * subscription lives as long as its connection. nats-server's own default, 2 minutes swept every
 * 2 minutes, kept a join's mappings 2–4 minutes: 3.5–5.6 KiB of live heap per connected user at
 * rest (docs/decisions.md, "Response mappings live seconds, not minutes"). Read back from the
 * server's `/accountz`.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RoomClient } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { DefaultAccount } from '../../src/protocol/subjects.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'mappings';

interface AccountInfo {
  /** Pending response mappings, by reply subject. */
  responses?: Record<string, unknown>;
}

/** The `APP` account as the server holds it (`/accountz?acc=APP`). */
async function appAccount(server: TestNats): Promise<AccountInfo> {
  const mon = server.process.ports.monitoring?.[0];
  if (!mon) throw new Error('no monitoring port');
  const res = await fetch(new URL(`/accountz?acc=${DefaultAccount.App}`, mon));
  return ((await res.json()) as { account_detail: AccountInfo }).account_detail;
}

describe('response mappings of room clients', () => {
  let server: TestNats;

  afterEach(async () => {
    await server?.destroy();
  });

  describe('with the threshold made short', () => {
    const THRESHOLD_MS = 1_500;
    let svc: NatsConnection;
    let callout: TestCallout;
    let worker: TestWorker;
    let client: RoomClient | undefined;

    afterEach(async () => {
      await client?.close({ leave: false }).catch(() => undefined);
      await worker?.stop();
      await callout?.stop();
      await svc?.close();
    });

    it('a joined client’s mappings are gone within twice the threshold, and it still gets answers', async () => {
      server = await startNats({ config: { clientResponseThresholdMs: THRESHOLD_MS } });
      svc = await server.connectService();
      await publishRoom(svc, ROOM, { maxParticipants: 5 });
      callout = await startCallout(server.keys, [server.url]);
      worker = await startWorker(server.keys, [server.url]);
      client = await RoomClient.connect({
        connect,
        servers: server.url,
        roomId: ROOM,
        userId: 'u1',
        token: await token(server.keys, { room: ROOM, sub: 'u1', role: 'student' }),
        autoRenew: false,
      });
      await client.request(RequestEvent.RaiseHand);
      // The join's catch-up and the stored request left mappings behind...
      const after = Object.keys((await appAccount(server)).responses ?? {}).length;
      expect(after).toBeGreaterThan(0);
      // ...which the server sweeps once they are older than the threshold.
      const started = Date.now();
      await waitFor(
        'no response mapping left',
        async () => Object.keys((await appAccount(server)).responses ?? {}).length === 0,
        { timeoutMs: 2 * THRESHOLD_MS + 3_000 },
      );
      expect(Date.now() - started).toBeLessThan(2 * THRESHOLD_MS + 3_000);
      // A request after the sweep is answered as before.
      await expect(client.request(RequestEvent.LowerHand)).resolves.toBeDefined();
    });
  });
});
