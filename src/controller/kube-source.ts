/**
 * Rooms from the Kubernetes API: an informer (list + watch, relist on 410 Gone, restarted with
 * backoff after any other error, which client-node's informer does not do itself), the status
 * subresource, finalizers and core/v1 Events.
 *
 * client-node 1.4's `informer.start()` resolves whatever happened: a failed list or watch is only
 * reported to the 'error' handlers, and 'connect' is emitted before the list, so neither the
 * promise nor 'connect' means the cache holds the Rooms. An attempt is a success when `start()`
 * resolved without an 'error' in between: the list was cached and the watch is open.
 */
import { backoffCeilingMs } from '../domain/retry.js';
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
import { describeError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import {
  ROOM_API_GROUP,
  ROOM_API_VERSION,
  ROOM_KIND,
  ROOM_PLURAL,
  roomKey,
  type RoomResource,
  type RoomStatus,
} from '../domain/room-spec.js';
import type { EventType, RoomSource } from './source.js';

/** Delay before restarting a failed watch, doubling up to the maximum, in milliseconds. */
const RESTART_BASE_MS = 500;
const RESTART_MAX_MS = 30_000;
/** Name of the component in Events. */
const EVENT_COMPONENT = 'torii-controller';

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
  private everSynced = false;
  /** An 'error' was reported since the current start attempt began. */
  private attemptFailed = false;
  private stopped = false;
  /** Failed starts in a row, for the backoff of the next. */
  private restartFailures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Resolves the promise of {@link start}: on the first sync, or on stop. */
  private settle: (() => void) | undefined;

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

  /**
   * Starts the informer; resolves once the first list is cached (retrying with backoff until
   * then), or when the source is stopped first.
   */
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
    informer.on('error', (err) => this.failed(err));
    const started = new Promise<void>((resolve) => (this.settle = resolve));
    void this.startInformer();
    await started;
  }

  /** One attempt to list and watch; a failure schedules the next one through {@link failed}. */
  private async startInformer(): Promise<void> {
    if (this.stopped || !this.informer) return;
    this.attemptFailed = false;
    try {
      await this.informer.start();
    } catch (e) {
      this.failed(e);
      return;
    }
    if (this.stopped) {
      // stop() came while the list was in flight: the informer went on to open a watch.
      await this.informer.stop();
      return;
    }
    if (this.attemptFailed) return;
    this.isSynced = true;
    this.restartFailures = 0;
    if (!this.everSynced) {
      this.everSynced = true;
      this.settle?.();
    }
  }

  private failed(err: unknown): void {
    this.isSynced = false;
    this.attemptFailed = true;
    if (this.stopped) return;
    // Not jittered: one controller replica watches at a time, and its schedule is asserted.
    const delay = backoffCeilingMs(
      { firstMs: RESTART_BASE_MS, maxMs: RESTART_MAX_MS },
      ++this.restartFailures,
    );
    this.log.warn(
      { err: apiErrorSummary(err), retryInMs: delay },
      this.everSynced ? 'Room watch failed; restarting' : 'cannot list Rooms; retrying',
    );
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.startInformer(), delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.settle?.();
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
