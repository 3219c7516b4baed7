/**
 * Where Rooms come from and where their status goes. Two implementations: the Kubernetes API
 * (informer + status subresource + Events) and a folder of YAML files (`--rooms-dir`).
 */
import type { RoomResource, RoomStatus } from '../domain/room-spec.js';

export const EventType = { Normal: 'Normal', Warning: 'Warning' } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export interface RoomSource {
  /** Human-readable kind of source for logs (`kubernetes`, `dir /path`). */
  readonly description: string;
  /** Starts delivering changes; resolves once the initial list is cached. */
  start(onChange: (key: string) => void): Promise<void>;
  stop(): Promise<void>;
  /** True once the initial list is cached (and while the source is healthy). */
  readonly synced: boolean;
  get(key: string): RoomResource | undefined;
  keys(): string[];
  /** Writes the status; returns the stored Room. */
  setStatus(room: RoomResource, status: RoomStatus): Promise<RoomResource>;
  /** Replaces the finalizers; returns the stored Room. */
  setFinalizers(room: RoomResource, finalizers: string[]): Promise<RoomResource>;
  /** Records an event about the Room (Kubernetes Event, or a log line). */
  event(room: RoomResource, type: EventType, reason: string, message: string): Promise<void>;
}
