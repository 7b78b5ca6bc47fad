import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { PROTOCOL_VERSION } from '../protocol/version.js';

/** A Lua script read from `NAME-<numberOfKeys>.lua`, with its includes expanded. */
export interface ScriptSource {
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const INCLUDE_RE = /^--- @include "([^"]+)"\s*$/gm;

/**
 * Read every script next to this module. Includes (`--- @include "includes/x"`) are inlined once each.
 * @param dir folder holding the .lua files
 */
export function readScripts(dir = HERE): ScriptSource[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^(.+)-(\d+)\.lua$/.exec(file);
      if (!m) throw new Error(`script file ${file} must be named NAME-<numberOfKeys>.lua`);
      const seen = new Set<string>();
      const lua = readFileSync(join(dir, file), 'utf8').replace(INCLUDE_RE, (_, inc: string) => {
        if (seen.has(inc)) return '';
        seen.add(inc);
        return readFileSync(join(dir, `${inc}.lua`), 'utf8');
      });
      return { name: m[1]!, numberOfKeys: Number(m[2]), lua };
    });
}

/** The command name a script is registered under: versioned, so releases never call each other's scripts. */
export function commandName(script: string): string {
  return `${script}:v${PROTOCOL_VERSION}`;
}

/**
 * Register every script on a client as a custom command (EVALSHA with automatic fallback to EVAL).
 * @returns the client, for chaining
 */
export function defineScripts(redis: Redis, scripts: ScriptSource[] = cachedScripts()): Redis {
  for (const s of scripts) {
    if (!(commandName(s.name) in redis)) redis.defineCommand(commandName(s.name), { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
  return redis;
}

let cache: ScriptSource[] | undefined;
function cachedScripts(): ScriptSource[] {
  cache ??= readScripts();
  return cache;
}
