/**
 * Structured JSON logging (pino). Logs go to stderr so that commands which print results on
 * stdout (`torii token`, `torii nats-config`) stay pipeable; in Kubernetes both streams are
 * collected.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** Accepted `--log-level` values. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Default log level. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

/**
 * Creates the process logger.
 * @param role the role or command (`controller`, `auth-callout`, `dev`, …), added to every line
 */
export function createLogger(role: string, level: LogLevel = DEFAULT_LOG_LEVEL): Logger {
  return pino(
    {
      level,
      base: { role, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Never log a token, seed or password even if a caller passes one by mistake.
      redact: {
        paths: [
          'token',
          'password',
          'seed',
          'secret',
          '*.token',
          '*.password',
          '*.seed',
          '*.secret',
        ],
        censor: '[REDACTED]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
