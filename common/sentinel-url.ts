import { InvalidInputError } from './errors.js';
/**
 * `sentinel://` URLs: where to find a Redis primary through Redis Sentinel.
 *
 *   sentinel://[user:pass@]host1:port1,host2:port2,[2001:db8::5]:26379/mymaster?db=0
 *
 * WHATWG `URL` cannot hold a comma-separated host list, hence this small parser. The user and
 * password are the ones of the Redis data nodes (what `redis://` would carry); the sentinels' own
 * credentials, when they have any, come from `[redis] sentinel_username` / `sentinel_password_file`.
 */

/** One sentinel's address. */
export interface SentinelAddress {
  readonly host: string;
  readonly port: number;
}

/** A parsed `sentinel://` URL. */
export interface SentinelUrl {
  readonly sentinels: readonly SentinelAddress[];
  /** The monitored primary's name (`sentinel monitor NAME …`). */
  readonly name: string;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
}

const DEFAULT_SENTINEL_PORT = 26379;
const NAME_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * @param url a `sentinel://` URL
 * @returns its sentinels, primary name, database and data-node credentials
 * @throws Error saying what is wrong (the message never contains the password)
 */
export function parseSentinelUrl(url: string): SentinelUrl {
  const m = /^sentinel:\/\/(?:([^@/]*)@)?([^/?#]+)\/([^?#]*)(?:\?([^#]*))?$/.exec(url);
  if (!m) throw new InvalidInputError('expected sentinel://[user:pass@]host:port[,host:port…]/primary-name[?db=N]');
  const [, userinfo, hostList, rawName, query] = m;
  const name = decodeURIComponent(rawName ?? '');
  if (!NAME_RE.test(name)) throw new InvalidInputError(`primary name '${name.slice(0, 40)}' is missing or has characters outside [A-Za-z0-9_.:-]`);
  const sentinels = hostList!.split(',').map(parseHostPort);
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined && userinfo !== '') {
    const colon = userinfo.indexOf(':');
    username = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decodeURIComponent(userinfo.slice(colon + 1)) || undefined;
  }
  let db = 0;
  for (const pair of (query ?? '').split('&').filter(Boolean)) {
    const [k, v = ''] = pair.split('=');
    if (k === 'db') {
      db = Number(v);
      if (!Number.isInteger(db) || db < 0 || db > 15) throw new InvalidInputError(`db '${v.slice(0, 20)}' is not a database number 0-15`);
    } else {
      throw new InvalidInputError(`unknown parameter '${(k ?? '').slice(0, 40)}' (only db is understood)`);
    }
  }
  return { sentinels, name, db, ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function parseHostPort(text: string): SentinelAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) throw new InvalidInputError(`sentinel address '${text.slice(0, 80)}' is not host:port`);
  const port = m[3] === undefined ? DEFAULT_SENTINEL_PORT : Number(m[3]);
  if (port < 1 || port > 65535) throw new InvalidInputError(`sentinel port ${port} is out of range`);
  return { host: (m[1] ?? m[2])!, port };
}
