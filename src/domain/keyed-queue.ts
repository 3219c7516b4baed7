/**
 * The one keyed serial queue: tasks of one key run one at a time, in the order they were queued;
 * tasks of different keys run side by side. A key's entry is dropped when its last task settles,
 * so the queue holds only the keys with work.
 */
export class KeyedQueue {
  private readonly keys = new Map<string, { tail: Promise<unknown>; queued: number }>();

  /**
   * Queues `task` after the earlier tasks of `key`; resolves or rejects as the task does. A task
   * that fails does not hold back the key's later tasks.
   */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const entry = this.keys.get(key) ?? { tail: Promise.resolve(), queued: 0 };
    entry.queued++;
    this.keys.set(key, entry);
    // The tail never rejects (each task's end is caught below), so the task runs after it.
    const mine = entry.tail.then(task);
    entry.tail = mine.then(
      () => this.settled(key, entry),
      () => this.settled(key, entry),
    );
    return mine;
  }

  /** Keys with a task queued or running. */
  get size(): number {
    return this.keys.size;
  }

  /** Resolves when every task queued so far has settled. */
  async idle(): Promise<void> {
    await Promise.all([...this.keys.values()].map((e) => e.tail));
  }

  private settled(key: string, entry: { queued: number }): void {
    entry.queued--;
    if (entry.queued === 0 && this.keys.get(key) === entry) this.keys.delete(key);
  }
}
