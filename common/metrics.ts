import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { ConfigError } from './errors.js';
import { InvalidInputError } from './errors.js';

/** A listening metrics endpoint. */
export interface MetricsServer {
  /** The address actually bound, `host:port` (the port is chosen by the kernel when 0 was asked). */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Parse `[agent] metrics` / `[coordinator] metrics`: `host:port`, `[v6]:port` or a bare port
 * (127.0.0.1). Empty means off.
 * @returns host and port, or undefined when off
 * @throws Error saying what is wrong
 */
export function parseListen(text: string | undefined): { host: string; port: number } | undefined {
  const t = (text ?? '').trim();
  if (t === '') return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(t) ?? /^()()(\d{1,5})$/.exec(t);
  if (!m) throw new InvalidInputError(`'${t}' is not host:port, [ipv6]:port or a port`);
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidInputError(`port ${port} is over 65535`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

/**
 * A fresh registry with the process' standard metrics (CPU, memory, event-loop lag, file
 * descriptors): `fleetban up` runs an agent and a coordinator in one process, each with its own.
 */
export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Serve a registry in the Prometheus text format on `GET /metrics`.
 * @param listen `host:port` as in the configuration
 * @throws ConfigError when the address cannot be used
 */
export async function startMetricsServer(listen: { host: string; port: number }, registry: Registry, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('fleetban: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => {
        log.warn({ err: err.message }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      },
    );
  });
  // A scraper that hangs must not hold sockets for ever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConfigError(`metrics: cannot listen on ${listen.host}:${listen.port}: ${err.message}`)));
    server.listen(listen.port, listen.host, () => resolve());
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : `${listen.host}:${listen.port}`;
  log.info({ address }, `metrics on http://${address}/metrics`);
  return {
    address,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
