/**
 * Finds the external programs Torii runs (nats-server for `torii dev`; etcd and kube-apiserver
 * for tests). Order: an explicit `TORII_<NAME>` path, then PATH, then the project's `.tools/bin`,
 * then the tools cache `~/.cache/torii/tools` filled by `scripts/install-tools.sh`.
 */
import { accessSync, constants, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ToolError } from '../protocol/errors.js';
import { ENV_PREFIX } from '../runtime/config.js';
import { PROJECT_ROOT } from '../runtime/version.js';

/** Default tools cache; overridden by `TORII_TOOLS_CACHE`. */
function toolsCacheDir(): string {
  return process.env.TORII_TOOLS_CACHE ?? path.join(os.homedir(), '.cache', 'torii', 'tools');
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `nats-server` → `TORII_NATS_SERVER`. */
const toolEnvName = (name: string): string => ENV_PREFIX + name.replace(/-/g, '_').toUpperCase();

/**
 * Returns the path of an executable or throws a {@link ToolError} that says how to get it.
 * @param name binary name, e.g. `nats-server`
 */
export function findTool(name: string): string {
  const envName = toolEnvName(name);
  const explicit = process.env[envName];
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new ToolError(`${envName}=${explicit} is not an executable file`);
  }
  const candidates = [
    ...(process.env.PATH ?? '')
      .split(path.delimiter)
      .filter(Boolean)
      .map((d) => path.join(d, name)),
    path.join(PROJECT_ROOT, '.tools', 'bin', name),
  ];
  const cache = toolsCacheDir();
  try {
    for (const d of readdirSync(cache).sort().reverse()) candidates.push(path.join(cache, d, name));
  } catch {
    // no cache yet
  }
  const found = candidates.find(isExecutable);
  if (found) return found;
  throw new ToolError(
    `${name} not found: set ${envName}, put it on PATH, or run 'scripts/install-tools.sh' (installs into ${cache})`,
  );
}
