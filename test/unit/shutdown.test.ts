import { Shutdown } from '../../src/runtime/shutdown.js';
import { silentLogger } from '../../src/runtime/logger.js';
import {
  ToriiError,
  ValidationError,
  ConfigError,
  ErrorCode,
  describeError,
} from '../../src/protocol/errors.js';

describe('Shutdown', () => {
  test('runs hooks once, last registered first, and survives a failing or hanging hook', async () => {
    const order: string[] = [];
    const s = new Shutdown(silentLogger(), 50);
    s.add('nats', () => {
      order.push('nats');
    });
    s.add('hangs', () => new Promise<void>(() => undefined));
    s.add('fails', () => {
      order.push('fails');
      throw new Error('boom');
    });
    s.add('workers', async () => {
      await Promise.resolve();
      order.push('workers');
    });
    expect(s.started).toBe(false);
    const a = s.run('test');
    const b = s.run('again');
    expect(a).toBe(b);
    await a;
    expect(s.started).toBe(true);
    expect(order).toEqual(['workers', 'fails', 'nats']);
  });
});

describe('errors', () => {
  test('typed hierarchy with codes and causes; toJSON never leaks the cause', () => {
    const cause = new Error('socket closed');
    const e = new ToriiError(ErrorCode.Internal, 'cannot reach NATS', { cause });
    expect(e.cause).toBe(cause);
    expect(e.name).toBe('ToriiError');
    expect(e.toJSON()).toEqual({ code: 'INTERNAL', message: 'cannot reach NATS' });
    const v = new ValidationError('bad', { field: 'sub' });
    expect(v).toBeInstanceOf(ToriiError);
    expect([v.code, v.field, v.name]).toEqual(['BAD_REQUEST', 'sub', 'ValidationError']);
    const c = new ConfigError('x', { flag: '--keys-dir' });
    expect([c.code, c.flag]).toEqual(['CONFIG', '--keys-dir']);
    expect(describeError('plain')).toBe('plain');
  });
});
