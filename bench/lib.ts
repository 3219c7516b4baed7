/** Shared helpers of the benchmarks: timing, percentiles, machine description, JSON output. */
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Milliseconds since an arbitrary origin, sub-millisecond precision. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** The p-th percentile (0–100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

/** Rounds to 2 decimals for readable JSON. */
export const r2 = (n: number): number => Math.round(n * 100) / 100;

/** Latency summary in milliseconds. */
export function summary(latencies: number[]): {
  p50: number;
  p90: number;
  p99: number;
  max: number;
} {
  return {
    p50: r2(percentile(latencies, 50)),
    p90: r2(percentile(latencies, 90)),
    p99: r2(percentile(latencies, 99)),
    // not Math.max(...): a fan-out run has hundreds of thousands of samples
    max: r2(latencies.reduce((a, b) => (b > a ? b : a), -Infinity)),
  };
}

/** Where the numbers came from. */
export function machine(): { cpus: number; cpuModel: string; memGiB: number; node: string } {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  };
}

/** Runs `task(i)` for i in [0, n) with at most `concurrency` at once; returns per-task latency (ms) and total time. */
export async function pool(
  n: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<{ latencies: number[]; elapsedMs: number; errors: number }> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const start = nowMs();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        const t0 = nowMs();
        try {
          await task(i);
          latencies.push(nowMs() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { latencies, elapsedMs: nowMs() - start, errors };
}

/** Starts `task(i)` at a fixed rate (per second) for n tasks; returns latencies. */
export async function paced(
  n: number,
  perSecond: number,
  task: (i: number) => Promise<void>,
): Promise<{ latencies: number[]; elapsedMs: number; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const start = nowMs();
  const running: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / perSecond;
    const wait = due - nowMs();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t0 = nowMs();
    running.push(
      task(i).then(
        () => void latencies.push(nowMs() - t0),
        () => void errors++,
      ),
    );
  }
  await Promise.all(running);
  return { latencies, elapsedMs: nowMs() - start, errors };
}

/** Prints the one JSON line of a benchmark. */
export function report(result: Record<string, unknown>): void {
  process.stdout.write(
    JSON.stringify({ date: new Date().toISOString(), machine: machine(), ...result }) + '\n',
  );
}

/** Resident memory of a process in KiB (`VmRSS`); NaN without a pid or a reading. */
export function rssKiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** CPU seconds (user + system) a process has used so far; this process when pid is omitted. */
export function cpuSeconds(pid?: number): number {
  if (pid === undefined) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** Measures CPU seconds used by each named process while `fn` runs. */
export async function withCpu<T>(
  pids: Record<string, number | undefined>,
  fn: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const result = await fn();
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [k, r2(cpuSeconds(pid) - (before[k] as number))]),
  );
  return { result, cpu };
}
