import { KeyedQueue } from '../../src/domain/keyed-queue.js';

/** A task that finishes when told to, recording when it started and ended. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return {
    open,
    task: async (): Promise<string> => {
      log.push(`${name} start`);
      await opened;
      log.push(`${name} end`);
      return name;
    },
  };
}

describe('KeyedQueue: one task at a time per key', () => {
  test('one key runs in order, one at a time; another key runs meanwhile', async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    const a1 = gate(log, 'a1');
    const a2 = gate(log, 'a2');
    const b1 = gate(log, 'b1');
    const pa1 = q.run('a', a1.task);
    const pa2 = q.run('a', a2.task);
    const pb1 = q.run('b', b1.task);
    await Promise.resolve();
    await Promise.resolve();
    expect(log).toEqual(['a1 start', 'b1 start']);
    expect(q.size).toBe(2);
    b1.open();
    await expect(pb1).resolves.toBe('b1');
    a1.open();
    await expect(pa1).resolves.toBe('a1');
    a2.open();
    await expect(pa2).resolves.toBe('a2');
    expect(log).toEqual(['a1 start', 'b1 start', 'b1 end', 'a1 end', 'a2 start', 'a2 end']);
    await q.idle();
    expect(q.size).toBe(0);
  });

  test('a failure rejects its own task only; the key goes on', async () => {
    const q = new KeyedQueue();
    const failed = q.run('a', () => Promise.reject(new Error('boom')));
    const next = q.run('a', () => Promise.resolve(2));
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBe(2);
    await q.idle();
    expect(q.size).toBe(0);
  });
});
