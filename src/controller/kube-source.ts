/**
 * Rooms from the Kubernetes API: an informer (list + watch, relist on 410 Gone, restarted with
 * backoff after any other error, which client-node's informer does not do itself), the status
 * subresource, finalizers and core/v1 Events.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  ROOM_API_GROUP,
  ROOM_API_VERSION,
  ROOM_KIND,
  ROOM_PLURAL,
  roomKey,
  type RoomResource,
  type RoomStatus,
} from '../core/room.js';
import type { EventType, RoomSource } from './source.js';

/** Delay before restarting a failed watch, doubling up to the maximum, in milliseconds. */
const RESTART_BASE_MS = 500;
const RESTART_MAX_MS = 30_000;
/** Name of the component in Events. */
export const EVENT_COMPONENT = 'torii-controller';

/** The body of an API error, for logs (its message embeds headers). */
export function apiErrorSummary(e: unknown): string {
  const err = e as { code?: number; body?: unknown };
  if (typeof err.code === 'number') {
    let body = err.body;
    if (typeof body === 'string') {
      try {
        body = (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        // keep the text
      }
    } else if (body && typeof body === 'object' && 'message' in body) {
      body = (body as { message: string }).message;
    }
    return `HTTP ${err.code}: ${String(body)}`;
  }
  return describeError(e);
}

export class KubeRoomSource implements RoomSource {
  readonly description: string;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private informer: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  private isSynced = false;
  private stopped = false;
  private restartDelay = RESTART_BASE_MS;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kc: KubeConfig,
    private readonly log: Logger,
    /** Watch one namespace; all namespaces when undefined. */
    private readonly namespace: string | undefined,
    private readonly identity: string,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.description = `kubernetes ${kc.getCurrentCluster()?.server ?? '?'}${namespace ? ` namespace ${namespace}` : ''}`;
  }

  get synced(): boolean {
    return this.isSynced;
  }

  async start(onChange: (key: string) => void): Promise<void> {
    const path = this.namespace
      ? `/apis/${ROOM_API_GROUP}/${ROOM_API_VERSION}/namespaces/${this.namespace}/${ROOM_PLURAL}`
      : `/apis/${ROOM_API_GROUP}/${ROOM_API_VERSION}/${ROOM_PLURAL}`;
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> =>
      (this.namespace
        ? await this.custom.listNamespacedCustomObject({
            group: ROOM_API_GROUP,
            version: ROOM_API_VERSION,
            namespace: this.namespace,
            plural: ROOM_PLURAL,
          })
        : await this.custom.listClusterCustomObject({
            group: ROOM_API_GROUP,
            version: ROOM_API_VERSION,
            plural: ROOM_PLURAL,
          })) as KubernetesListObject<KubernetesObject>;
    const informer = makeInformer(this.kc, path, list);
    this.informer = informer;
    const changed = (obj: KubernetesObject): void =>
      onChange(roomKey({ metadata: obj.metadata ?? {} }));
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('connect', () => {
      this.restartDelay = RESTART_BASE_MS;
    });
    informer.on('error', (err) => {
      this.isSynced = false;
      if (this.stopped) return;
      this.log.warn(
        { err: apiErrorSummary(err), retryInMs: this.restartDelay },
        'Room watch failed; restarting',
      );
      this.scheduleRestart();
    });
    await this.startInformer();
  }

  private async startInformer(): Promise<void> {
    for (;;) {
      try {
        await this.informer?.start();
        this.isSynced = true;
        return;
      } catch (e) {
        if (this.stopped) return;
        this.log.warn(
          { err: apiErrorSummary(e), retryInMs: this.restartDelay },
          'cannot list Rooms; retrying',
        );
        await new Promise((r) => setTimeout(r, this.restartDelay));
        this.restartDelay = Math.min(RESTART_MAX_MS, this.restartDelay * 2);
      }
    }
  }

  private scheduleRestart(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.startInformer(), this.restartDelay);
    this.restartDelay = Math.min(RESTART_MAX_MS, this.restartDelay * 2);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.informer?.stop();
  }

  get(key: string): RoomResource | undefined {
    const [namespace, name] = key.split('/') as [string, string];
    return this.informer?.get(name, namespace) as RoomResource | undefined;
  }

  keys(): string[] {
    return (this.informer?.list() ?? []).map((o) => roomKey({ metadata: o.metadata ?? {} }));
  }

  async setStatus(room: RoomResource, status: RoomStatus): Promise<RoomResource> {
    return (await this.custom.replaceNamespacedCustomObjectStatus({
      group: ROOM_API_GROUP,
      version: ROOM_API_VERSION,
      namespace: room.metadata.namespace,
      plural: ROOM_PLURAL,
      name: room.metadata.name,
      body: { ...room, status },
    })) as RoomResource;
  }

  async setFinalizers(room: RoomResource, finalizers: string[]): Promise<RoomResource> {
    return (await this.custom.replaceNamespacedCustomObject({
      group: ROOM_API_GROUP,
      version: ROOM_API_VERSION,
      namespace: room.metadata.namespace,
      plural: ROOM_PLURAL,
      name: room.metadata.name,
      body: { ...room, metadata: { ...room.metadata, finalizers } },
    })) as RoomResource;
  }

  async event(room: RoomResource, type: EventType, reason: string, message: string): Promise<void> {
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace: room.metadata.namespace,
        body: {
          metadata: { generateName: `${room.metadata.name}.`, namespace: room.metadata.namespace },
          involvedObject: {
            apiVersion: `${ROOM_API_GROUP}/${ROOM_API_VERSION}`,
            kind: ROOM_KIND,
            name: room.metadata.name,
            namespace: room.metadata.namespace,
            ...(room.metadata.uid ? { uid: room.metadata.uid } : {}),
            ...(room.metadata.resourceVersion
              ? { resourceVersion: room.metadata.resourceVersion }
              : {}),
          },
          type,
          reason,
          message,
          source: { component: EVENT_COMPONENT },
          reportingComponent: EVENT_COMPONENT,
          reportingInstance: this.identity,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (e) {
      // An Event is best effort: never fail a reconcile over it.
      this.log.warn({ err: apiErrorSummary(e), reason }, 'cannot record Event');
    }
  }
}
