/**
 * Configuration: every flag has a default, can be set by a `TORII_*` environment variable, and is
 * overridden by the flag itself (defaults → env → flags). Values are parsed and validated when the
 * command starts; an error names the flag and the env variable so the user knows what to fix.
 */
import { InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../protocol/errors.js';
import { checkId, type IdKind } from '../protocol/ids.js';

/** Prefix of every environment variable Torii reads. */
export const ENV_PREFIX = 'TORII_';

/** `--keys-dir` → `TORII_KEYS_DIR`. */
export function envNameForFlag(flag: string): string {
  return ENV_PREFIX + flag.replace(/^--/, '').replace(/-/g, '_').toUpperCase();
}

/**
 * A commander option bound to its `TORII_*` environment variable.
 * @param flags commander flag syntax, e.g. `--ttl <duration>`
 * @param parse optional parser; it throws `InvalidArgumentError` with a reason on bad input
 */
export function opt<T>(
  flags: string,
  description: string,
  options: {
    default?: T;
    defaultDescription?: string;
    parse?: (value: string) => T;
    choices?: readonly string[];
  } = {},
): Option {
  const long = /--[a-z0-9-]+/.exec(flags)?.[0];
  if (!long) throw new Error(`option ${flags} has no long flag`);
  const o = new Option(flags, description).env(envNameForFlag(long));
  if (options.choices) o.choices(options.choices);
  if (options.parse) o.argParser(options.parse);
  if (options.default !== undefined) o.default(options.default, options.defaultDescription);
  return o;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses durations like `500ms`, `30s`, `15m`, `1h`, `7d`, `1h30m` into milliseconds.
 * A bare number is refused: the unit is part of the meaning.
 */
export function parseDuration(value: string): number {
  const text = value.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * (DURATION_UNITS_MS[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (text.length === 0 || matched !== text.length) {
    throw new InvalidArgumentError(
      `'${value}' is not a duration (examples: 500ms, 30s, 15m, 1h, 1h30m)`,
    );
  }
  return Math.round(total);
}

/** Formats milliseconds the way {@link parseDuration} reads them. */
export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0 && ms > 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/** A TCP port: 1–65535, or 0 when `allowZero` (meaning "off" or "any", as documented per flag). */
export function portParser(allowZero: boolean): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n > 65535 || (n === 0 && !allowZero)) {
      throw new InvalidArgumentError(`'${value}' is not a port (${allowZero ? '0' : '1'}–65535)`);
    }
    return n;
  };
}

/** An integer within [min, max]. */
export function intParser(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`'${value}' is not an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/** A room or user id (docs/protocol.md). */
export function idParser(kind: IdKind): (value: string) => string {
  return (value) => {
    try {
      return checkId(kind, value, kind);
    } catch (e) {
      throw new InvalidArgumentError(
        e instanceof Error ? e.message.replace(/^[^:]+: /, '') : String(e),
      );
    }
  };
}

/** A comma-separated list; empty items are dropped. */
export function listParser(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Throws a {@link ConfigError} naming `flag` and its env variable. */
export function configError(flag: string, reason: string): never {
  throw new ConfigError(`${flag} (${envNameForFlag(flag)}): ${reason}`, { flag });
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`), for flags that default to on. */
export function boolParser(value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new InvalidArgumentError(`'${value}' is not true or false`);
}
