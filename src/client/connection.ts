/**
 * The connection of one room member: opened with the room token and the member's private inbox
 * (docs/protocol.md, "Connecting"), and watched between servers.
 */
import {
  tokenAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/nats-core';
import { deviceConnectionName, userInboxPrefix } from '../protocol/subjects.js';

/** Pause between two reconnect attempts, in milliseconds. */
const RECONNECT_WAIT_MS = 500;

/** Where and as whom {@link openRoomConnection} connects. */
interface RoomConnectionTarget {
  servers: string | string[];
  roomId: string;
  userId: string;
  /** The device's id: its connection name gives it a consumer of its own. */
  deviceId?: string | undefined;
  /** Extra connection options (the name is the device's when `deviceId` is set). */
  connection?: Partial<ConnectionOptions> | undefined;
}

/**
 * Connects through the transport's `connect` with the member's inbox prefix, reconnecting for
 * ever; each connect and reconnect presents `token()`, so a renewed token is the one the
 * reconnect after an expiry uses.
 */
export function openRoomConnection(
  connect: (opts: ConnectionOptions) => Promise<NatsConnection>,
  t: RoomConnectionTarget,
  token: () => string,
): Promise<NatsConnection> {
  return connect({
    servers: t.servers,
    inboxPrefix: userInboxPrefix(t.roomId, t.userId),
    // The server closes the connection when the NATS JWT expires; the reconnect presents
    // whatever token is current by then (a renewed one).
    authenticator: tokenAuthenticator(token),
    maxReconnectAttempts: -1,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    ignoreAuthErrorAbort: true,
    // An Error (with its stack) per request costs more than a room message's whole handling.
    noAsyncTraces: true,
    ...t.connection,
    ...(t.deviceId !== undefined ? { name: deviceConnectionName(t.deviceId) } : {}),
  });
}

/** Whether the connection is between servers, told to whoever listens. */
export class ConnectionStatus {
  private up = true;
  private readonly listeners = new Set<(connected: boolean) => void>();

  constructor(private readonly nc: NatsConnection) {}

  /** False after a disconnect, until the reconnect (the connection may still be open). */
  get online(): boolean {
    return this.up;
  }

  /** False while the connection is between servers, and once it is closed. */
  get connected(): boolean {
    return this.up && !this.nc.isClosed();
  }

  /** Listens to connection changes; returns a function that stops listening. */
  onChange(listener: (connected: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Follows the connection's status until it closes: `disconnected` and `reconnected` are told
   * before the listeners, so that a listener sees the client already catching up.
   */
  async watch(on: { disconnected: () => void; reconnected: () => void }): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') on.disconnected();
      if (s.type === 'reconnect') on.reconnected();
      const up = s.type === 'disconnect' ? false : s.type === 'reconnect' ? true : this.up;
      if (up === this.up) continue;
      this.up = up;
      for (const l of this.listeners) l(up);
    }
  }
}
