/**
 * Reconciles one Room, level-triggered and idempotent: validate, ensure the room stream, publish
 * the compiled config to KV, write status — each only when it differs from what is there, so a
 * resync of an unchanged Room writes nothing. Deletion runs behind the `torii.io/cleanup`
 * finalizer and keeps it while NATS is unreachable.
 */
import {
  JetStreamApiError,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import { Broadcast } from '../protocol/events.js';
import { casUpdate, type KvCache } from '../infra/kv.js';
import { SystemPublisher } from '../infra/system-publisher.js';
import type { Logger } from '../runtime/logger.js';
import { MsgId, type SystemMsgIds } from '../infra/msg-ids.js';
import {
  compileRoom,
  parseRoomConfig,
  validateRoomSpec,
  type CompiledRoomConfig,
} from '../domain/room-compile.js';
import {
  ConditionType,
  DeletionPolicy,
  resolveRoomId,
  ROOM_FINALIZER,
  type RoomCondition,
  type RoomResource,
  type RoomStatus,
} from '../domain/room-spec.js';
import { ensureWorkerStream, roomStreamConfig } from '../infra/streams.js';
import { JS_STREAM_NOT_FOUND } from '../protocol/jetstream.js';
import { PlatformEvent, roomEventsSubject, roomStreamName } from '../protocol/subjects.js';
import type { ControllerMetrics } from './metrics.js';
import { EventType, type RoomSource } from './source.js';
import { isJsError } from '../protocol/jetstream.js';

/** Time between EVT_SESSION_ENDED and deleting the room stream, in milliseconds. */
const SESSION_END_GRACE_MS = 2_000;

/** Condition reasons. */
const Reason = {
  Reconciled: 'Reconciled',
  InvalidSpec: 'InvalidSpec',
  RoomIdConflict: 'RoomIdConflict',
  NatsUnavailable: 'NatsUnavailable',
  StreamCreated: 'StreamCreated',
  StreamUpdated: 'StreamUpdated',
  StreamCreateFailed: 'StreamCreateFailed',
  StreamReady: 'StreamReady',
  StreamUpdateFailed: 'StreamUpdateFailed',
  StorageImmutable: 'StorageImmutable',
  Published: 'Published',
  NotPublished: 'NotPublished',
} as const;

/** Stream fields Torii sets and JetStream lets us update. */
const UPDATABLE_FIELDS = [
  'subjects',
  'max_age',
  'max_msgs',
  'max_bytes',
  'max_msgs_per_subject',
  'max_msg_size',
  'num_replicas',
  'max_consumers',
  'discard',
  'allow_direct',
  'republish',
] as const;

/** What the reconciler needs from NATS. */
interface NatsDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** Mirror of `torii_rooms`; its `bucket` is where configs are written. */
  rooms: KvCache<CompiledRoomConfig>;
  /** Users holding a seat in a room. */
  participants: (roomId: string) => number;
  kvReplicas: number;
  /** Ids of the broadcasts it stores (`EVT_ROOM_UPDATED`), the same in every replica. */
  msgIds: SystemMsgIds;
}

/** Result of one reconcile. */
interface ReconcileResult {
  /** Reconcile again after this many milliseconds (besides events and resyncs). */
  requeueAfterMs?: number;
}

class NatsFailure extends Error {
  override readonly name = 'NatsFailure';
}

/** The status is written; the key must come back with backoff. */
class RetryLater extends Error {
  override readonly name = 'RetryLater';
}

function isStreamNotFound(e: unknown): boolean {
  return isJsError(e, JS_STREAM_NOT_FOUND);
}

/** JetStream answered with an error (as opposed to a timeout or a lost connection). */
const isApiError = (e: unknown): boolean => e instanceof JetStreamApiError;

/** Sets a condition, keeping its transition time when its status does not change. */
export function setCondition(
  conditions: RoomCondition[] | undefined,
  c: Omit<RoomCondition, 'lastTransitionTime'>,
  now: Date,
): RoomCondition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: RoomCondition = {
    type: c.type,
    status: c.status,
    reason: c.reason,
    message: c.message,
    lastTransitionTime:
      prev && prev.status === c.status ? prev.lastTransitionTime : now.toISOString(),
    ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

const conditionOf = (s: RoomStatus | undefined, type: string): RoomCondition | undefined =>
  s?.conditions?.find((c) => c.type === type);

/** Canonical JSON (sorted keys) for comparisons. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(
          Object.entries(val as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : val,
  );
}

/** The room stream's condition after a reconcile, and the Event that tells what changed. */
interface StreamCondition {
  status: 'True' | 'False';
  reason: string;
  message: string;
  event?: { reason: string; message: string };
  /** Reconcile again with backoff. */
  retry?: boolean;
}

interface StreamOutcome {
  info: StreamInfo;
  stream: StreamCondition;
}

/**
 * A stream that matches its Room. The condition states the result, not the action (that is the
 * Event): the next reconcile computes the same status and writes nothing.
 */
function streamReady(
  info: StreamInfo,
  name: string,
  event?: StreamCondition['event'],
): StreamOutcome {
  return {
    info,
    stream: {
      status: 'True',
      reason: Reason.StreamReady,
      message: `stream ${name} matches the spec`,
      ...(event ? { event } : {}),
    },
  };
}

export class RoomReconciler {
  /** roomId last reconciled for each key, to clean up after Rooms removed without a finalizer. */
  private readonly roomIds = new Map<string, string>();
  /** When the session of a deleted Room was ended, by key (the stream is deleted a little later). */
  private readonly ended = new Map<string, number>();
  private workerStreamReady = false;
  private readonly out: SystemPublisher;

  constructor(
    private readonly source: RoomSource,
    private readonly nats: NatsDeps,
    private readonly metrics: ControllerMetrics,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.out = new SystemPublisher(nats.nc, nats.msgIds, log);
  }

  /** The key of the Room that owns a roomId, if known. */
  keyOfRoomId(roomId: string): string | undefined {
    for (const [key, id] of this.roomIds) if (id === roomId) return key;
    return undefined;
  }

  /** Forget that the worker stream exists (after NATS lost its state). */
  resetNatsState(): void {
    this.workerStreamReady = false;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const room = this.source.get(key);
    if (!room) {
      await this.forgetRemoved(key);
      return {};
    }
    if (room.metadata.deletionTimestamp) {
      if ((room.metadata.finalizers ?? []).includes(ROOM_FINALIZER))
        return this.finalize(key, room);
      return {};
    }
    let current = room;
    if (!(current.metadata.finalizers ?? []).includes(ROOM_FINALIZER)) {
      current = await this.source.setFinalizers(current, [
        ...(current.metadata.finalizers ?? []),
        ROOM_FINALIZER,
      ]);
      this.metrics.writes.inc({ target: 'apiserver' });
    }
    const generation = current.metadata.generation ?? 1;
    const roomId = resolveRoomId(current.metadata.name, current.spec ?? {});

    const problems = validateRoomSpec(current.metadata.name, current.spec ?? {});
    if (problems.length > 0) {
      await this.writeStatus(
        current,
        { roomId, ready: ['False', Reason.InvalidSpec, problems.join('; ')], generation },
        EventType.Warning,
      );
      return {}; // nothing to retry until the spec changes
    }
    const compiled = compileRoom(current.metadata.name, current.spec, key);

    const owner = this.nats.rooms.get(roomId)?.source;
    if (owner !== undefined && owner !== key) {
      const other = this.source.get(owner);
      if (other && !other.metadata.deletionTimestamp) {
        await this.writeStatus(
          current,
          {
            roomId,
            ready: [
              'False',
              Reason.RoomIdConflict,
              `roomId ${roomId} is already used by Room ${owner}`,
            ],
            generation,
          },
          EventType.Warning,
        );
        return {};
      }
    }
    this.roomIds.set(key, roomId);

    let info: StreamInfo;
    let stream: StreamCondition;
    let published: boolean;
    try {
      if (!this.workerStreamReady) {
        await ensureWorkerStream(this.nats.jsm, this.nats.kvReplicas);
        this.workerStreamReady = true;
      }
      ({ info, stream } = await this.ensureStream(compiled));
      published = await this.publish(compiled);
    } catch (e) {
      const message = `NATS: ${describeError(e)}`;
      await this.writeStatus(
        current,
        { roomId, ready: ['False', Reason.NatsUnavailable, message], generation },
        EventType.Warning,
      ).catch(() => undefined);
      throw new NatsFailure(message, { cause: e });
    }
    if (stream.event)
      await this.event(current, EventType.Normal, stream.event.reason, stream.event.message);
    const ok = stream.status === 'True';
    await this.writeStatus(
      current,
      {
        roomId,
        generation,
        ready: ok
          ? ['True', Reason.Reconciled, `stream ${info.config.name} and room config are in place`]
          : ['False', stream.reason, stream.message],
        stream: [stream.status, stream.reason, stream.message],
        published: published
          ? ['True', Reason.Published, `torii_rooms/${roomId}`]
          : ['False', Reason.NotPublished, 'not published'],
        streamState: {
          name: info.config.name,
          messages: info.state.messages,
          bytes: info.state.bytes,
        },
        participants: this.nats.participants(roomId),
      },
      ok ? EventType.Normal : EventType.Warning,
    );
    if (stream.retry) throw new RetryLater(stream.message);
    return {};
  }

  private async ensureStream(room: CompiledRoomConfig): Promise<StreamOutcome> {
    const desired = roomStreamConfig(room) as StreamConfig;
    const name = roomStreamName(room.roomId);
    let info: StreamInfo;
    try {
      info = await this.nats.jsm.streams.info(name);
    } catch (e) {
      if (!isStreamNotFound(e)) throw e;
      try {
        info = await this.nats.jsm.streams.add(desired);
      } catch (err) {
        // JetStream said no (limits, storage): report it and retry with backoff.
        if (!isApiError(err)) throw err;
        return {
          info: { config: { name }, state: { messages: 0, bytes: 0 } } as StreamInfo,
          stream: {
            status: 'False',
            reason: Reason.StreamCreateFailed,
            message: `JetStream refused to create stream ${name}: ${describeError(err)}`,
            retry: true,
          },
        };
      }
      this.metrics.writes.inc({ target: 'jetstream' });
      return streamReady(info, name, {
        reason: Reason.StreamCreated,
        message: `created stream ${name}`,
      });
    }
    if (info.config.storage !== desired.storage) {
      return {
        info,
        stream: {
          status: 'False',
          reason: Reason.StorageImmutable,
          message: `stream ${name} has storage ${info.config.storage}; JetStream cannot change it to ${desired.storage} (delete the Room to recreate it)`,
        },
      };
    }
    const differs = UPDATABLE_FIELDS.filter(
      (f) => canonical(info.config[f] ?? null) !== canonical(desired[f] ?? null),
    );
    if (differs.length === 0) return streamReady(info, name);
    try {
      info = await this.nats.jsm.streams.update(name, {
        ...info.config,
        ...Object.fromEntries(differs.map((f) => [f, desired[f]])),
      });
      this.metrics.writes.inc({ target: 'jetstream' });
      return streamReady(info, name, {
        reason: Reason.StreamUpdated,
        message: `updated stream ${name}: ${differs.join(', ')}`,
      });
    } catch (e) {
      if (!isApiError(e)) throw e; // transport trouble: retry
      return {
        info,
        stream: {
          status: 'False',
          reason: Reason.StreamUpdateFailed,
          message: `JetStream refused to update ${differs.join(', ')}: ${describeError(e)}`,
        },
      };
    }
  }

  private async publish(room: CompiledRoomConfig): Promise<boolean> {
    const want = JSON.stringify(room);
    const have = this.nats.rooms.get(room.roomId);
    if (have && JSON.stringify(have) === want) return true;
    const revision = await this.nats.rooms.bucket.put(room.roomId, want);
    this.metrics.writes.inc({ target: 'kv' });
    // A changed room is announced to its participants (docs/protocol.md); the first publish is not a
    // change. The KV revision makes the announcement's id, so a retried reconcile sends it once.
    if (have) {
      const data = { roomId: room.roomId, title: room.title, features: room.features };
      await this.out.broadcast(
        roomEventsSubject(room.roomId),
        Broadcast.RoomUpdated,
        data,
        MsgId.roomUpdated(room.roomId, revision),
        this.now(),
      );
      this.metrics.writes.inc({ target: 'jetstream' });
    }
    return true;
  }

  private async writeStatus(
    room: RoomResource,
    s: {
      roomId: string;
      generation: number;
      ready: ['True' | 'False', string, string];
      stream?: ['True' | 'False', string, string];
      published?: ['True' | 'False', string, string];
      streamState?: { name: string; messages: number; bytes: number };
      participants?: number;
    },
    eventType: EventType,
  ): Promise<void> {
    const now = this.now();
    const prev = room.status;
    let conditions = prev?.conditions;
    for (const [type, c] of [
      [ConditionType.Ready, s.ready],
      [ConditionType.StreamReady, s.stream],
      [ConditionType.ConfigPublished, s.published],
    ] as const) {
      if (!c) continue;
      conditions = setCondition(
        conditions,
        { type, status: c[0], reason: c[1], message: c[2], observedGeneration: s.generation },
        now,
      );
    }
    const status: RoomStatus = {
      roomId: s.roomId,
      observedGeneration: s.generation,
      conditions,
      ...(s.streamState ? { stream: s.streamState } : prev?.stream ? { stream: prev.stream } : {}),
      ...(s.participants !== undefined
        ? { joinedParticipants: s.participants }
        : prev?.joinedParticipants !== undefined
          ? { joinedParticipants: prev.joinedParticipants }
          : {}),
    };
    if (canonical(status) === canonical(prev ?? {})) return;
    this.log.debug(
      { room: `${room.metadata.namespace}/${room.metadata.name}`, from: prev, to: status },
      'writing status',
    );
    await this.source.setStatus(room, status);
    this.metrics.writes.inc({ target: 'apiserver' });
    const before = conditionOf(prev, ConditionType.Ready);
    if (before?.reason !== s.ready[1] || before.status !== s.ready[0])
      await this.event(room, eventType, s.ready[1], s.ready[2]);
  }

  private async event(
    room: RoomResource,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    await this.source.event(room, type, reason, message);
    this.metrics.writes.inc({ target: 'apiserver' });
  }

  /** Deletion: end the session, remove the config, delete the stream unless retained. */
  private async finalize(key: string, room: RoomResource): Promise<ReconcileResult> {
    const roomId = resolveRoomId(room.metadata.name, room.spec ?? {});
    const owner = this.nats.rooms.get(roomId)?.source;
    if (owner === undefined || owner === key) {
      try {
        // First EVT_SESSION_ENDED, then (a moment later, so that clients' consumers deliver it)
        // the config goes — tokens are refused and the workers kick every connection — and the
        // stream.
        const endedAt = this.ended.get(key);
        if (endedAt === undefined) {
          await this.announceEnd(roomId, 'room deleted');
          this.ended.set(key, Date.now());
          return { requeueAfterMs: SESSION_END_GRACE_MS };
        }
        if (Date.now() - endedAt < SESSION_END_GRACE_MS)
          return { requeueAfterMs: SESSION_END_GRACE_MS - (Date.now() - endedAt) };
        await this.unpublish(roomId, 'room deleted');
        if (room.spec?.deletionPolicy !== DeletionPolicy.Retain) {
          try {
            await this.nats.jsm.streams.delete(roomStreamName(roomId));
            this.metrics.writes.inc({ target: 'jetstream' });
          } catch (e) {
            if (!isStreamNotFound(e)) throw e;
          }
        }
      } catch (e) {
        throw new NatsFailure(`cleanup of ${roomId}: ${describeError(e)}`, { cause: e });
      }
      await this.event(
        room,
        EventType.Normal,
        'Deleted',
        room.spec?.deletionPolicy === DeletionPolicy.Retain
          ? `room ${roomId} closed; stream retained`
          : `room ${roomId} closed; stream deleted`,
      );
    }
    await this.source.setFinalizers(
      room,
      (room.metadata.finalizers ?? []).filter((f) => f !== ROOM_FINALIZER),
    );
    this.metrics.writes.inc({ target: 'apiserver' });
    this.roomIds.delete(key);
    this.ended.delete(key);
    return {};
  }

  /** Broadcasts EVT_SESSION_ENDED on the room. */
  private async announceEnd(roomId: string, reason: string): Promise<void> {
    const subject = roomEventsSubject(roomId);
    const data = { roomId, reason };
    const at = this.now();
    try {
      await this.out.broadcast(subject, Broadcast.SessionEnded, data, undefined, at);
    } catch {
      this.out.tell(subject, Broadcast.SessionEnded, data, at); // no stream: live subscribers still hear it
    }
  }

  /**
   * Removes the room config: the callout refuses the room's tokens, workers kick its connections.
   * The one removal that wins the compare-and-set tells the platform that the room ended, so a
   * finalizer run again (a requeue, a new leader) tells it once.
   */
  private async unpublish(roomId: string, reason: string): Promise<void> {
    if (this.nats.rooms.get(roomId) === undefined) return;
    const { step } = await casUpdate(this.nats.rooms.bucket, roomId, parseRoomConfig, (cur) =>
      cur ? { delete: true } : undefined,
    );
    if (!step) return;
    this.metrics.writes.inc({ target: 'kv' });
    this.out.platform({
      event: PlatformEvent.RoomEnded,
      data: { roomId, reason, at: this.now().toISOString() },
    });
  }

  /** Both at once, for Rooms that vanished without our finalizer. */
  private async endSession(roomId: string, reason: string): Promise<void> {
    await this.announceEnd(roomId, reason);
    await this.unpublish(roomId, reason);
  }

  /** A Room that vanished without our finalizer (finalizer removed by hand): unpublish it. */
  private async forgetRemoved(key: string): Promise<void> {
    const roomId = this.roomIds.get(key);
    if (roomId === undefined) return;
    if (this.nats.rooms.get(roomId)?.source === key) {
      this.log.warn(
        { room: key, roomId },
        'Room removed without cleanup; unpublishing it (stream kept)',
      );
      await this.endSession(roomId, 'room removed');
    }
    this.roomIds.delete(key);
  }
}
