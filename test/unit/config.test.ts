import { Command, CommanderError } from 'commander';
import {
  configError,
  envNameForFlag,
  formatDuration,
  intParser,
  listParser,
  opt,
  parseDuration,
  portParser,
} from '../../src/runtime/config.js';
import { ConfigError } from '../../src/protocol/errors.js';

describe('config', () => {
  test('env names follow the flag', () => {
    expect(envNameForFlag('--keys-dir')).toBe('TORII_KEYS_DIR');
    expect(envNameForFlag('--presence-grace')).toBe('TORII_PRESENCE_GRACE');
  });

  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['7d', 604_800_000],
    ['1.5s', 1_500],
  ])('parseDuration(%s) = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(['', '10', 'h', '1x', '1h 30m', '-1s', '1hh'])('parseDuration refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow(/is not a duration/);
  });

  test('formatDuration round-trips', () => {
    for (const ms of [500, 30_000, 900_000, 3_600_000, 86_400_000, 1_500])
      expect(parseDuration(formatDuration(ms))).toBe(ms);
  });

  test('ports and integers', () => {
    expect(portParser(false)('4222')).toBe(4222);
    expect(portParser(true)('0')).toBe(0);
    expect(() => portParser(false)('0')).toThrow(/not a port/);
    expect(() => portParser(true)('65536')).toThrow(/not a port/);
    expect(() => portParser(true)('12ab')).toThrow(/not a port/);
    expect(intParser(1, 100)('50')).toBe(50);
    expect(() => intParser(1, 100)('101')).toThrow(/from 1 to 100/);
    expect(listParser(' a, ,b ,c')).toEqual(['a', 'b', 'c']);
  });

  test('configError names the flag and its env variable', () => {
    expect(() => configError('--keys-dir', 'missing')).toThrow(ConfigError);
    expect(() => configError('--keys-dir', 'missing')).toThrow(
      '--keys-dir (TORII_KEYS_DIR): missing',
    );
  });

  describe('precedence: default < TORII_* env < flag', () => {
    const saved = process.env.TORII_CONCURRENCY;
    afterEach(() => {
      if (saved === undefined) delete process.env.TORII_CONCURRENCY;
      else process.env.TORII_CONCURRENCY = saved;
    });
    const parse = (argv: string[]): number => {
      const cmd = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
      cmd.addOption(
        opt('--concurrency <n>', 'workers', { default: 50, parse: intParser(1, 1000) }),
      );
      cmd.parse(argv, { from: 'user' });
      return cmd.opts<{ concurrency: number }>().concurrency;
    };

    test('default', () => {
      delete process.env.TORII_CONCURRENCY;
      expect(parse([])).toBe(50);
    });
    test('env over default', () => {
      process.env.TORII_CONCURRENCY = '7';
      expect(parse([])).toBe(7);
    });
    test('flag over env', () => {
      process.env.TORII_CONCURRENCY = '7';
      expect(parse(['--concurrency', '9'])).toBe(9);
    });
    test('a bad env value names the variable', () => {
      process.env.TORII_CONCURRENCY = 'lots';
      expect(() => parse([])).toThrow(CommanderError);
      expect(() => parse([])).toThrow(/from env 'TORII_CONCURRENCY' is invalid/);
    });
  });
});
