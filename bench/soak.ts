/**
 * Soak: for `--minutes` (default 10), waves of users join one room through the SDK, ask for the
 * initial data, chat, raise and lower a hand, and leave (most with `REQ_LEAVE`, every
 * {@link SILENT_EVERY}th by just closing, which takes the grace path). A cycle is `--users`
 * distinct new user ids in waves of `--wave`, and every cycle brings new ones, so without
 * cleanup the buckets would grow with every wave; a share of each wave are users who come back
 * after their records were cleaned up. nats-server, `torii auth-callout` and `torii worker` run
 * as separate processes, the worker with a short retention period (`--retention`, 20 s) and grace
 * period (`--grace`, 2 s), so departed users are cleaned up many times over.
 *
 * The run pauses at the end of the warm-up (`--warm-up`, 20 % of the run by default, at least the delete markers'
 * lifetime) and stops at
 * the end; each time, once every departed user's retention period is over and the processes
 * have been without load for `--idle` (150 s) ("quiet"), it samples the resident memory of each
 * process and every bucket and stream: bytes, keys (subjects), consumers, and for buckets the
 * keys that hold a value and the delete markers. It also samples while the waves run, every
 * `--sample-every`. The target: quiet end within 10 % of quiet warm-up (see {@link flatChecks}).
 * Prints one JSON line.
 *
 *   npx tsx bench/soak.ts [--minutes 10] [--users 500] [--wave 100] [--retention 20s] [--grace 2s]
 *                         [--concurrency 20] [--warm-up 5m] [--sample-every 1m] [--idle 150s]
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { RoomClient } from '../src/client/index.js';
import { parseDuration } from '../src/runtime/config.js';
import { describeError } from '../src/protocol/errors.js';
import { RequestEvent } from '../src/protocol/events.js';
import { METRICS_PREFIX } from '../src/runtime/ops.js';
import { roomMaxConsumers } from '../src/infra/streams.js';
import { DELETE_MARKER_TTL_MS, scanBucket } from '../src/infra/kv.js';
import { Bucket, kvStreamName, roomStreamName, WORKER_STREAM } from '../src/protocol/subjects.js';
import { joinRoom } from '../test/helpers/callout.js';
import { spawnRole } from '../test/helpers/cli.js';
import { startNats } from '../test/helpers/nats.js';
import { freePort, isAlive } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { cpuSeconds, nowMs, pool, r2, report, rssKiB, summary } from './lib.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    users: { type: 'string', default: '500' },
    wave: { type: 'string', default: '100' },
    retention: { type: 'string', default: '20s' },
    grace: { type: 'string', default: '2s' },
    concurrency: { type: 'string', default: '20' },
    'warm-up': { type: 'string' },
    'sample-every': { type: 'string', default: '1m' },
    idle: { type: 'string', default: '150s' },
  },
});
const RUN_MS = Number(values.minutes) * 60_000;
const USERS = Number(values.users);
const WAVE = Number(values.wave);
const RETENTION_MS = parseDuration(values.retention);
const GRACE_MS = parseDuration(values.grace);
/** Users joining at once (each join is a callout round trip and a consumer create). */
const CONCURRENCY = Number(values.concurrency);
/**
 * Share of the run that is warm-up when `--warm-up` is not given; at least the delete markers'
 * lifetime, so that the markers of the warm-up's departures have begun to expire and the buckets
 * hold one marker lifetime's worth at both samples.
 */
const WARM_UP_SHARE = 0.2;
const WARM_UP_MS =
  values['warm-up'] !== undefined
    ? parseDuration(values['warm-up'])
    : Math.max(WARM_UP_SHARE * RUN_MS, DELETE_MARKER_TTL_MS);
const SAMPLE_EVERY_MS = parseDuration(values['sample-every']);
/**
 * Least time without load before a quiet sample. nats-server keeps a message block's subject
 * state in memory for 2 minutes after its last use and pools its buffers, and V8 and the Go
 * runtime give memory back some time after allocation stops: a sample 30 s after the load
 * measures what the last minutes cached (nats-server's live heap 40–110 MiB where it is 5 MiB
 * after 150 s), not what stays.
 */
const IDLE_MS = parseDuration(values.idle);
for (const [flag, n] of Object.entries({
  minutes: RUN_MS,
  users: USERS,
  wave: WAVE,
  concurrency: CONCURRENCY,
}))
  if (!(n > 0)) throw new Error(`--${flag}: a positive number`);
if (!(WARM_UP_MS < RUN_MS)) throw new Error('--warm-up: shorter than --minutes');

const ROOM = 'soak';
/**
 * Seats of the room: a wave, plus the users of the wave before who closed without a leave and
 * are away for the grace period. The room stream allows 2 × seats consumers, which must also hold
 * the consumers that departed users keep for the retention period.
 */
const ROOM_SEATS = 1_000;
/**
 * Messages the room stream keeps. A new user's consumer starts at the beginning of the history,
 * so a join costs the history: with the default (100,000 messages, 32 MiB) every join of a long
 * run would take longer than the one before, until the limit. A limit the run reaches within
 * its first minute keeps a join's cost, and the stream's size, the same after warm-up.
 */
const ROOM_HISTORY_MESSAGES = 2_000;
/** Every SILENT_EVERY-th user closes without `REQ_LEAVE`: away, then left after the grace. */
const SILENT_EVERY = 4;
/** Every DEVICE_EVERY-th user names a device: a consumer of its own and a device list record. */
const DEVICE_EVERY = 2;
const DEVICE_ID = 'laptop';
/** Share of each wave that are users coming back after their records were cleaned up. */
const RETURN_SHARE = 0.1;
/**
 * Time past grace + retention after which a departed user's records must be gone, in
 * milliseconds: the worker's sweep runs every 500 ms and cleans up 32 users at once.
 */
const CLEANUP_MARGIN_MS = 5_000;
/** Longest wait for a quiet point beyond grace + retention + margin, in milliseconds. */
const QUIET_TIMEOUT_MS = 60_000;
/** Interval of the checks for a quiet point, in milliseconds. */
const QUIET_POLL_MS = 2_000;
/** Flat: the end within this share of the warm-up value, or within the absolute tolerance. */
const REL_TOLERANCE = 0.1;
/**
 * Absolute tolerance of counts (keys, consumers, messages) that are zero or a handful at a quiet
 * point, where 10 % would fail on a single record: ±2.
 */
const ABS_TOLERANCE_COUNT = 2;
/** The same for bytes: about three records of the largest kind a user has (presence, ~300 B). */
const ABS_TOLERANCE_BYTES = 1_024;
/** Distinct warnings counted by message per role; the rest count as `(other)`. */
const MAX_LOG_MESSAGES = 10;
/** Longest wait for a role to exit after SIGTERM, in milliseconds. */
const STOP_TIMEOUT_MS = 15_000;
/** pino's level of `warn`: lines at or above it are counted. */
const PINO_WARN = 40;

/** One user of a wave. */
interface Visitor {
  userId: string;
  deviceId?: string;
  silent: boolean;
}

/** A store's state: a bucket (with live/markers) or a stream. */
interface StoreSample {
  bytes: number;
  messages: number;
  /** Subjects in the stream: a bucket's keys, with those whose last message is a marker. */
  keys: number;
  consumers: number;
  /** Keys that hold a value (buckets only). */
  live?: number;
  /** Subject and value bytes of those keys. */
  liveBytes?: number;
  /** Keys whose last message is a delete marker (they expire after an hour). */
  markers?: number;
  /** Live keys by their first token (`members`, `hands`, … of `torii_room_state`). */
  liveByKind?: Record<string, number>;
}

interface Sample {
  /** Seconds since the roles were ready. */
  atS: number;
  /** Distinct users who joined so far (returning users counted once). */
  users: number;
  rssMiB: Record<string, number>;
  /** Heap in use, MiB: V8's of the Node roles (their `/metrics`), Go's live heap of nats-server. */
  heapMiB: Record<string, number>;
  /** CPU seconds each process has used since it started. */
  cpuS: Record<string, number>;
  /** The machine's 1-minute load average: other work on the two cores shows here. */
  load: number;
  stores: Record<string, StoreSample>;
}

/** A sample taken while the waves run: the stores in brief, and latencies since the last one. */
interface BusySample extends Omit<Sample, 'stores'> {
  stores: Record<string, Pick<StoreSample, 'bytes' | 'keys' | 'live' | 'consumers'>>;
  joinMs: ReturnType<typeof summary>;
  initialDataMs: ReturnType<typeof summary>;
}

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number | undefined): number {
  return r2(rssKiB(pid) / 1024);
}

/**
 * Live Go heap of nats-server (`HeapAlloc` on its profiling port, right after the garbage
 * collection that `gc=1` asks for), in MiB: the Go runtime gives freed memory back to the system
 * minutes later, if at all, so resident memory alone does not tell a leak from garbage.
 */
async function natsHeapMiB(profPort: number): Promise<number> {
  const url = `http://127.0.0.1:${profPort}/debug/pprof/heap?debug=1&gc=1`;
  const text = await (await fetch(url)).text();
  const m = /^# HeapAlloc = (\d+)$/m.exec(text);
  return m ? r2(Number(m[1]) / 2 ** 20) : NaN;
}

/** V8 heap in use of a role, from its Prometheus metrics, in MiB. */
async function heapMiB(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const re = new RegExp(`^${METRICS_PREFIX}nodejs_heap_size_used_bytes (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? r2(Number(m[1]) / 2 ** 20) : NaN;
}

/** Values and delete markers of a bucket (read without a consumer, so counts stay true). */
async function bucketContent(
  jsm: JetStreamManager,
  bucket: Bucket,
): Promise<Required<Pick<StoreSample, 'live' | 'liveBytes' | 'markers' | 'liveByKind'>>> {
  const out = { live: 0, liveBytes: 0, markers: 0, liveByKind: {} as Record<string, number> };
  for await (const { key, deleted, msg } of scanBucket(jsm, bucket)) {
    if (deleted) {
      out.markers++;
      continue;
    }
    const dot = key.indexOf('.');
    const kind = dot < 0 ? key : key.slice(0, dot);
    out.live++;
    out.liveBytes += msg.subject.length + msg.data.length;
    out.liveByKind[kind] = (out.liveByKind[kind] ?? 0) + 1;
  }
  return out;
}

/** A stream's size as its info says. */
async function streamSample(jsm: JetStreamManager, name: string): Promise<StoreSample> {
  const s = (await jsm.streams.info(name)).state;
  return {
    bytes: s.bytes,
    messages: s.messages,
    keys: s.num_subjects ?? 0,
    consumers: s.consumer_count,
  };
}

/** Every bucket and stream of the run. */
async function stores(jsm: JetStreamManager): Promise<Record<string, StoreSample>> {
  const out: Record<string, StoreSample> = {};
  for (const bucket of Object.values(Bucket)) {
    const name = kvStreamName(bucket);
    out[name] = { ...(await streamSample(jsm, name)), ...(await bucketContent(jsm, bucket)) };
  }
  for (const name of [WORKER_STREAM, roomStreamName(ROOM)])
    out[name] = await streamSample(jsm, name);
  return out;
}

/** Counts the warnings and errors a role logs (pino JSON lines), by message. */
class LogTally {
  readonly counts: Record<string, number> = {};
  private rest = '';

  constructor(proc: ChildProcess) {
    // Read both pipes to the end: a pipe nobody reads fills, and the role then blocks on a write.
    for (const stream of [proc.stdout, proc.stderr])
      stream?.on('data', (b: Buffer) => this.feed(b.toString()));
  }

  private feed(text: string): void {
    const lines = (this.rest + text).split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      let msg = line.slice(0, 200);
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string; err?: string };
        if ((j.level ?? PINO_WARN) < PINO_WARN) continue;
        msg = `${j.msg ?? ''}${j.err ? `: ${j.err.slice(0, 120)}` : ''}`;
      } catch {
        // not JSON (a stack trace): counted as it is
      }
      if (msg in this.counts || Object.keys(this.counts).length < MAX_LOG_MESSAGES)
        this.counts[msg] = (this.counts[msg] ?? 0) + 1;
      else this.counts['(other)'] = (this.counts['(other)'] ?? 0) + 1;
    }
  }
}

/** Errors of one step of a visit, with the first message seen. */
class Errors {
  readonly byStep: Record<string, { count: number; first: string }> = {};

  async step<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      const s = (this.byStep[name] ??= { count: 0, first: describeError(e).slice(0, 200) });
      s.count++;
      return undefined;
    }
  }

  get total(): number {
    return Object.values(this.byStep).reduce((n, s) => n + s.count, 0);
  }
}

/** One check of {@link flatChecks}. */
interface Check {
  metric: string;
  warm: number;
  end: number;
  /** end / warm-up; null when the warm-up value is 0. */
  ratio: number | null;
  /** Within the tolerance either way. */
  ok: boolean;
  /** Above the warm-up value by more than the tolerance. */
  grew: boolean;
}

/**
 * The flatness test, quiet warm-up against quiet end: resident memory of every process; for every
 * bucket its live keys and their bytes, its consumers, and its bytes and keys with the delete
 * markers (which expire after {@link DELETE_MARKER_TTL_MS}); for the streams their bytes,
 * messages, subjects and consumers.
 */
function flatChecks(warm: Sample, end: Sample): Check[] {
  const checks: Check[] = [];
  const add = (metric: string, w: number, e: number, abs: number): void => {
    const tolerance = Math.max(REL_TOLERANCE * Math.abs(w), abs);
    const ok = Math.abs(e - w) <= tolerance;
    const grew = !(e - w <= tolerance); // NaN (a process gone) counts as grown
    checks.push({ metric, warm: w, end: e, ratio: w === 0 ? null : r2(e / w), ok, grew });
  };
  for (const [role, w] of Object.entries(warm.rssMiB))
    add(`rssMiB.${role}`, w, end.rssMiB[role] ?? NaN, 0);
  for (const [name, w] of Object.entries(warm.stores)) {
    const e = end.stores[name];
    if (!e) continue;
    add(`${name}.consumers`, w.consumers, e.consumers, ABS_TOLERANCE_COUNT);
    if (w.live !== undefined) {
      add(`${name}.live`, w.live, e.live ?? NaN, ABS_TOLERANCE_COUNT);
      add(`${name}.liveBytes`, w.liveBytes ?? 0, e.liveBytes ?? NaN, ABS_TOLERANCE_BYTES);
      add(`${name}.bytes`, w.bytes, e.bytes, ABS_TOLERANCE_BYTES);
      add(`${name}.keys`, w.keys, e.keys, ABS_TOLERANCE_COUNT);
    } else {
      add(`${name}.bytes`, w.bytes, e.bytes, ABS_TOLERANCE_BYTES);
      add(`${name}.messages`, w.messages, e.messages, ABS_TOLERANCE_COUNT);
      add(`${name}.keys`, w.keys, e.keys, ABS_TOLERANCE_COUNT);
    }
  }
  return checks;
}

/** Sends SIGTERM and waits for the exit; SIGKILL after {@link STOP_TIMEOUT_MS}. */
async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const profPort = await freePort();
  const server = await startNats({ rewrite: (c) => `${c}\nprof_port: ${profPort}\n` });
  const svc = await server.connectService();
  const jsm = await jetstreamManager(svc);
  const room = await publishRoom(svc, ROOM, {
    maxParticipants: ROOM_SEATS,
    history: { maxMessages: ROOM_HISTORY_MESSAGES },
  });
  const common = ['--nats-url', server.url, '--keys-dir', server.keys.dir];
  const callout = await spawnRole(['auth-callout', ...common]);
  const worker = await spawnRole([
    'worker',
    ...common,
    '--presence-grace',
    values.grace,
    '--consumer-retention',
    values.retention,
  ]);
  const logs = { callout: new LogTally(callout.proc), worker: new LogTally(worker.proc) };
  const pids = { callout: callout.proc.pid, worker: worker.proc.pid, nats: server.process.pid };
  const ports = { callout: callout.port, worker: worker.port };
  const t0 = nowMs();
  const errors = new Errors();
  let distinct = 0;
  let visits = 0;
  let waves = 0;
  let returned = 0;

  const sample = async (): Promise<Sample> => ({
    atS: Math.round((nowMs() - t0) / 1000),
    users: distinct,
    rssMiB: Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssMiB(pid)])),
    heapMiB: {
      ...(Object.fromEntries(
        await Promise.all(Object.entries(ports).map(async ([k, p]) => [k, await heapMiB(p)])),
      ) as Record<string, number>),
      nats: await natsHeapMiB(profPort),
    },
    cpuS: Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, r2(cpuSeconds(pid))])),
    load: r2(os.loadavg()[0] ?? NaN),
    stores: await stores(jsm),
  });

  /**
   * Waits until every departed user's grace and retention periods are over and their records and
   * consumers are gone (or {@link QUIET_TIMEOUT_MS} more passed), and at least `--idle` has passed
   * since the last wave; returns how long it took.
   */
  const quiet = async (): Promise<{ waitedS: number; settled: boolean }> => {
    const start = nowMs();
    await sleep(GRACE_MS + RETENTION_MS + CLEANUP_MARGIN_MS);
    const deadline = nowMs() + QUIET_TIMEOUT_MS;
    let settled = false;
    while (!settled && nowMs() < deadline) {
      const presence = await bucketContent(jsm, Bucket.Presence);
      const roomStream = (await jsm.streams.info(roomStreamName(ROOM))).state;
      settled = presence.live === 0 && roomStream.consumer_count === 0;
      if (!settled) await sleep(QUIET_POLL_MS);
    }
    const idle = start + IDLE_MS - nowMs();
    if (idle > 0) await sleep(idle);
    return { waitedS: Math.round((nowMs() - start) / 1000), settled };
  };

  // Users who left, oldest first, for the returning share of later waves.
  const departed: { v: Visitor; leftAt: number }[] = [];
  let fresh = 0;
  const nextWave = (): Visitor[] => {
    const out: Visitor[] = [];
    const cleanedBefore = Date.now() - (GRACE_MS + RETENTION_MS + CLEANUP_MARGIN_MS);
    const back = Math.floor(RETURN_SHARE * WAVE);
    while (out.length < back && departed.length > 0 && departed[0]!.leftAt < cleanedBefore) {
      out.push(departed.shift()!.v);
      returned++;
    }
    while (out.length < WAVE) {
      // A cycle is USERS new ids; the next cycle's ids are new again.
      const cycle = Math.floor(fresh / USERS);
      const n = fresh++;
      out.push({
        userId: `c${cycle}-u${n % USERS}`,
        ...(n % DEVICE_EVERY === 0 ? { deviceId: DEVICE_ID } : {}),
        silent: n % SILENT_EVERY === SILENT_EVERY - 1,
      });
      distinct++;
    }
    return out;
  };

  // Latencies since the last sample, in milliseconds.
  let joinMs: number[] = [];
  let initialMs: number[] = [];
  let waveMs = 0;
  const wave = async (): Promise<void> => {
    const began = nowMs();
    const visitors = nextWave();
    const inRoom: ({ c: RoomClient; v: Visitor } | undefined)[] = [];
    await pool(visitors.length, CONCURRENCY, async (i) => {
      const v = visitors[i]!;
      const tJoin = nowMs();
      const c = await errors.step('join', () =>
        joinRoom(
          server.url,
          server.keys,
          ROOM,
          v.userId,
          v.deviceId ? { deviceId: v.deviceId } : {},
        ),
      );
      if (!c) return;
      joinMs.push(nowMs() - tJoin);
      inRoom[i] = { c, v };
      visits++;
      const tInitial = nowMs();
      if (await errors.step('initialData', () => c.request(RequestEvent.InitialData)))
        initialMs.push(nowMs() - tInitial);
      await errors.step('chat', () => c.chat('hello'));
      await errors.step('raiseHand', () =>
        c.request(RequestEvent.RaiseHand, { note: 'a question' }),
      );
      await errors.step('lowerHand', () => c.request(RequestEvent.LowerHand));
    });
    const joined = inRoom.filter((x) => x !== undefined);
    await Promise.all(
      joined.map(({ c, v }) =>
        errors.step('leave', () => c.close(v.silent ? { leave: false } : {})),
      ),
    );
    const leftAt = Date.now();
    // In the wave's order, so that those who come back mix users with and without a device.
    for (const { v } of joined) departed.push({ v, leftAt });
    waves++;
    waveMs += nowMs() - began;
  };

  const busy: BusySample[] = [];
  const runUntil = async (until: number): Promise<void> => {
    let nextSample = nowMs() + SAMPLE_EVERY_MS;
    while (nowMs() < until) {
      await wave();
      if (nowMs() >= nextSample) {
        const { stores: all, ...rest } = await sample();
        busy.push({
          ...rest,
          stores: Object.fromEntries(
            Object.entries(all).map(([name, { bytes, keys, live, consumers }]) => [
              name,
              { bytes, keys, ...(live !== undefined ? { live } : {}), consumers },
            ]),
          ),
          joinMs: summary(joinMs),
          initialDataMs: summary(initialMs),
        });
        joinMs = [];
        initialMs = [];
        nextSample += SAMPLE_EVERY_MS;
      }
    }
  };

  const start = await sample();
  await runUntil(t0 + WARM_UP_MS);
  const paused = nowMs();
  const warmQuiet = await quiet();
  const warm = await sample();
  // The pause is not run time: the waves go on for --minutes in all.
  await runUntil(t0 + RUN_MS + (nowMs() - paused));
  const endQuiet = await quiet();
  const end = await sample();

  const checks = flatChecks(warm, end);
  report({
    bench: 'soak',
    minutes: RUN_MS / 60_000,
    settings: {
      users: USERS,
      wave: WAVE,
      concurrency: CONCURRENCY,
      retention: values.retention,
      grace: values.grace,
      warmUpS: WARM_UP_MS / 1000,
      seats: room.maxParticipants,
      maxConsumers: roomMaxConsumers(room),
      roomHistory: room.history,
      silentEvery: SILENT_EVERY,
      deviceEvery: DEVICE_EVERY,
      returnShare: RETURN_SHARE,
    },
    waves,
    // Time the waves ran, without the pause after the warm-up.
    waveSeconds: Math.round(waveMs / 1000),
    visits,
    distinctUsers: distinct,
    returningVisits: returned,
    errors: { total: errors.total, ...errors.byStep },
    logs: { callout: logs.callout.counts, worker: logs.worker.counts },
    quiet: { warmUp: warmQuiet, end: endQuiet },
    start,
    warmUp: warm,
    busy,
    end,
    growth: Object.fromEntries(checks.map((c) => [c.metric, c.ratio])),
    // Not part of the verdict (the target is resident memory), but what tells a leak from a
    // heap that V8 grew under load and has not given back.
    heapGrowth: Object.fromEntries(
      Object.entries(warm.heapMiB).map(([k, w]) => [k, r2((end.heapMiB[k] ?? NaN) / w)]),
    ),
    notFlat: checks.filter((c) => !c.ok),
    grew: checks.filter((c) => c.grew).map((c) => c.metric),
    // Settled: every departed user's records and consumers were gone at both quiet points.
    flat: checks.every((c) => c.ok) && warmQuiet.settled && endQuiet.settled,
    bounded: checks.every((c) => !c.grew) && warmQuiet.settled && endQuiet.settled,
    target: {
      tolerance: REL_TOLERANCE,
      absCount: ABS_TOLERANCE_COUNT,
      absBytes: ABS_TOLERANCE_BYTES,
    },
  });

  await stopProcess(worker.proc);
  await stopProcess(callout.proc);
  await svc.close();
  await server.destroy();
  const left = Object.values(pids).filter((pid) => pid !== undefined && isAlive(pid));
  if (left.length > 0) throw new Error(`processes still running: ${left.join(', ')}`);
}

// Ctrl-C or a kill: exit, and test/helpers/procs.ts's exit hook kills every server and role this
// run started (SIGKILL) and removes their temp folders. The same hook runs after an error.
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)
  process.once(signal, () => process.exit(code));

await main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`soak failed: ${describeError(e)}\n`);
    process.exit(1);
  },
);
