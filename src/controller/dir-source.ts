/**
 * Rooms from a folder of YAML files (`--rooms-dir`, used by `torii dev` and tests). Each file may
 * hold several documents; documents of kind `Room` (apiVersion `torii.io/v1alpha1`) are Rooms.
 * The folder is watched and rescanned on `rescan()`. Status, finalizers and events live in memory
 * and are logged. A file that stops parsing keeps its last good Rooms: a typo never deletes a
 * classroom. A Room whose document disappears is deleted through the same finalizer path as in
 * Kubernetes.
 */
import { randomUUID } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describeError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import {
  ROOM_API_GROUP,
  ROOM_API_VERSION,
  ROOM_KIND,
  roomKey,
  type RoomResource,
  type RoomSpec,
  type RoomStatus,
} from '../domain/room-spec.js';
import type { EventType, RoomSource } from './source.js';

/** Wait after a file change before rescanning, so an editor's several writes count once. */
const DEBOUNCE_MS = 100;
const API_VERSION = `${ROOM_API_GROUP}/${ROOM_API_VERSION}`;

interface Entry {
  room: RoomResource;
  file: string;
  specJson: string;
}

export class DirRoomSource implements RoomSource {
  readonly description: string;
  private readonly rooms = new Map<string, Entry>();
  /** Last good Rooms of each file, by key. */
  private readonly fileRooms = new Map<
    string,
    Map<string, { spec: RoomSpec; room: RoomResource }>
  >();
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private onChange: (key: string) => void = () => undefined;
  private isSynced = false;
  private scanning: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    this.description = `dir ${path.resolve(dir)}`;
  }

  get synced(): boolean {
    return this.isSynced;
  }

  async start(onChange: (key: string) => void): Promise<void> {
    this.onChange = onChange;
    await this.rescan();
    this.isSynced = true;
    try {
      this.watcher = watch(this.dir, () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.rescan(), DEBOUNCE_MS);
      });
      this.watcher.on('error', (e) =>
        this.log.warn({ err: describeError(e) }, 'rooms folder watch failed; relying on resync'),
      );
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'cannot watch the rooms folder; relying on resync');
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounce);
    this.watcher?.close();
    await this.scanning;
  }

  /** Reads the folder again and reports what changed. Scans never overlap. */
  rescan(): Promise<void> {
    this.scanning = this.scanning
      .then(() => this.scan())
      .catch((e: unknown) => {
        this.log.error({ err: describeError(e), dir: this.dir }, 'cannot read the rooms folder');
      });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    const files = (await readdir(this.dir)).filter((f) => /\.ya?ml$/i.test(f)).sort();
    const present = new Set(files);
    for (const f of [...this.fileRooms.keys()]) if (!present.has(f)) this.fileRooms.delete(f);
    for (const f of files) {
      const parsed = await this.parseFile(f);
      if (parsed) this.fileRooms.set(f, parsed);
    }
    const seen = new Set<string>();
    for (const [file, rooms] of this.fileRooms) {
      for (const [key, { spec, room }] of rooms) {
        if (seen.has(key)) {
          this.log.warn({ key, file }, 'Room defined twice in the rooms folder; keeping the first');
          continue;
        }
        seen.add(key);
        this.upsert(key, file, spec, room);
      }
    }
    for (const [key, entry] of this.rooms) {
      if (!seen.has(key) && !entry.room.metadata.deletionTimestamp) {
        entry.room = {
          ...entry.room,
          metadata: { ...entry.room.metadata, deletionTimestamp: new Date().toISOString() },
        };
        if ((entry.room.metadata.finalizers ?? []).length === 0) this.rooms.delete(key);
        this.onChange(key);
      }
    }
  }

  private async parseFile(
    file: string,
  ): Promise<Map<string, { spec: RoomSpec; room: RoomResource }> | undefined> {
    const full = path.join(this.dir, file);
    let text: string;
    try {
      text = await readFile(full, 'utf8');
    } catch (e) {
      this.log.warn({ file: full, err: describeError(e) }, 'cannot read Room file');
      return undefined;
    }
    const docs = parseAllDocuments(text);
    const out = new Map<string, { spec: RoomSpec; room: RoomResource }>();
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      if (doc.errors.length > 0) {
        this.log.error(
          { file: full, err: doc.errors[0]?.message },
          'invalid YAML; keeping the Rooms this file had before',
        );
        return undefined;
      }
      const obj = doc.toJS() as Partial<RoomResource> | null;
      if (!obj || obj.kind !== ROOM_KIND || obj.apiVersion !== API_VERSION) continue;
      const name = obj.metadata?.name;
      if (typeof name !== 'string' || name.length === 0) {
        this.log.error({ file: full }, 'Room without metadata.name; skipped');
        continue;
      }
      const namespace =
        typeof obj.metadata?.namespace === 'string' ? obj.metadata.namespace : 'default';
      const room: RoomResource = {
        apiVersion: API_VERSION,
        kind: ROOM_KIND,
        metadata: { name, namespace },
        spec: obj.spec ?? {},
      };
      out.set(roomKey(room), { spec: room.spec, room });
    }
    return out;
  }

  private upsert(key: string, file: string, spec: RoomSpec, room: RoomResource): void {
    const specJson = JSON.stringify(spec);
    const existing = this.rooms.get(key);
    if (existing && !existing.room.metadata.deletionTimestamp) {
      if (existing.specJson === specJson) return;
      existing.specJson = specJson;
      existing.file = file;
      existing.room = {
        ...existing.room,
        spec,
        metadata: {
          ...existing.room.metadata,
          generation: (existing.room.metadata.generation ?? 1) + 1,
        },
      };
    } else {
      this.rooms.set(key, {
        file,
        specJson,
        room: {
          ...room,
          metadata: {
            ...room.metadata,
            uid: randomUUID(),
            generation: 1,
            creationTimestamp: new Date().toISOString(),
            finalizers: [],
          },
        },
      });
    }
    this.onChange(key);
  }

  get(key: string): RoomResource | undefined {
    return this.rooms.get(key)?.room;
  }

  keys(): string[] {
    return [...this.rooms.keys()];
  }

  setStatus(room: RoomResource, status: RoomStatus): Promise<RoomResource> {
    const key = roomKey(room);
    const entry = this.rooms.get(key);
    if (!entry) return Promise.resolve(room);
    entry.room = { ...entry.room, status };
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    this.log.info(
      {
        room: key,
        roomId: status.roomId,
        ready: ready?.status,
        reason: ready?.reason,
        message: ready?.message,
        file: entry.file,
      },
      'Room status',
    );
    return Promise.resolve(entry.room);
  }

  setFinalizers(room: RoomResource, finalizers: string[]): Promise<RoomResource> {
    const key = roomKey(room);
    const entry = this.rooms.get(key);
    if (!entry) return Promise.resolve(room);
    entry.room = { ...entry.room, metadata: { ...entry.room.metadata, finalizers } };
    if (entry.room.metadata.deletionTimestamp && finalizers.length === 0) {
      this.rooms.delete(key);
      this.onChange(key);
    }
    return Promise.resolve(entry.room);
  }

  event(room: RoomResource, type: EventType, reason: string, message: string): Promise<void> {
    const level = type === 'Warning' ? 'warn' : 'info';
    this.log[level]({ room: roomKey(room), reason }, message);
    return Promise.resolve();
  }
}
