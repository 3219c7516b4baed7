/** Rooms in the test Kubernetes API: the CRD, and create/update/delete/wait helpers. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import {
  ROOM_API_GROUP as group,
  ROOM_API_VERSION as version,
  ROOM_PLURAL as plural,
  type RoomResource,
  type RoomSpec,
} from '../../src/domain/room-spec.js';
import { applyCrd } from './kube.js';
import { waitFor } from './procs.js';

export const CRD_FILE = path.join(PROJECT_ROOT, 'crds', 'rooms.torii.io.yaml');

/**
 * Applies the Room CRD from `crds/` and waits until it is established. The YAML goes through
 * client-node's typed loader: a plain parsed object would lose the `x-kubernetes-*` fields
 * (CEL rules, int-or-string) in the client's serializer.
 */
export async function applyRoomCrd(kc: KubeConfig): Promise<void> {
  await applyCrd(kc, loadYaml<V1CustomResourceDefinition>(readFileSync(CRD_FILE, 'utf8')));
}

/** Creates a namespace if it does not exist. */
export async function ensureNamespace(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  } catch (e) {
    if ((e as { code?: number }).code !== 409) throw e;
  }
}

export class Rooms {
  private readonly api: CustomObjectsApi;
  constructor(
    kc: KubeConfig,
    readonly namespace: string,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  create(name: string, spec: RoomSpec): Promise<RoomResource> {
    return this.api.createNamespacedCustomObject({
      group,
      version,
      namespace: this.namespace,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'Room', metadata: { name }, spec },
    }) as Promise<RoomResource>;
  }

  async get(name: string): Promise<RoomResource | undefined> {
    try {
      return (await this.api.getNamespacedCustomObject({
        group,
        version,
        namespace: this.namespace,
        plural,
        name,
      })) as RoomResource;
    } catch (e) {
      if ((e as { code?: number }).code === 404) return undefined;
      throw e;
    }
  }

  /** Read-modify-write of the spec, retried on conflicts; other errors are thrown at once. */
  async update(name: string, change: (spec: RoomSpec) => RoomSpec): Promise<RoomResource> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.get(name);
      if (!cur) throw new Error(`Room ${name} not found`);
      try {
        return (await this.api.replaceNamespacedCustomObject({
          group,
          version,
          namespace: this.namespace,
          plural,
          name,
          body: { ...cur, spec: change(structuredClone(cur.spec)) },
        })) as RoomResource;
      } catch (e) {
        if ((e as { code?: number }).code !== 409 || attempt > 20) throw e;
      }
    }
  }

  async delete(name: string): Promise<void> {
    await this.api.deleteNamespacedCustomObject({
      group,
      version,
      namespace: this.namespace,
      plural,
      name,
    });
  }

  /** Waits until the Room's Ready condition has this status (and optional reason) for its current generation. */
  waitReady(
    name: string,
    status: 'True' | 'False' = 'True',
    reason?: string,
    timeoutMs = 30_000,
  ): Promise<RoomResource> {
    let last: RoomResource | undefined;
    return waitFor(
      `Room ${name} Ready=${status}${reason ? ` (${reason})` : ''}`,
      async () => {
        const r = (last = await this.get(name));
        const c = r?.status?.conditions?.find((x) => x.type === 'Ready');
        const observed = r?.status?.observedGeneration === r?.metadata.generation;
        return r && c?.status === status && (!reason || c.reason === reason) && observed
          ? r
          : undefined;
      },
      { timeoutMs, intervalMs: 100 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}; last status: ${JSON.stringify(last?.status)}`);
    });
  }

  waitGone(name: string, timeoutMs = 30_000): Promise<boolean> {
    return waitFor(`Room ${name} gone`, async () => (await this.get(name)) === undefined, {
      timeoutMs,
      intervalMs: 100,
    });
  }
}
