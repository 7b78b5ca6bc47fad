import type { WebhookAction } from '../../common/config/notify-actions.js';
import { FLEETBAN_VERSION } from '../../common/protocol/version.js';
import type { BanEvent, NotificationSender } from './event.js';

/** A webhook answered in a way that retrying cannot change (e.g. 404): logged and dropped. */
export class PermanentNotificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentNotificationError';
  }
}

/** @returns the JSON document POSTed for a ban */
export function webhookBody(action: WebhookAction, event: BanEvent): string {
  return JSON.stringify({
    event: 'ban',
    name: action.name,
    cluster: event.cluster,
    jail: event.jail,
    addr: event.addr,
    since: new Date(event.since).toISOString(),
    until: event.until === -1 ? null : new Date(event.until).toISOString(),
    reason: event.reason,
    origin: event.origin,
    failures: event.failures,
    hosts: event.hosts,
    lines: action.lines > 0 ? event.matches.slice(-action.lines).map((m) => ({ time: new Date(m.time).toISOString(), host: m.host, line: m.line })) : [],
    coordinator: event.from,
  });
}

/** POSTs each ban as JSON; anything but a 2xx answer fails the attempt (retried later by the notifier). */
export class WebhookSender implements NotificationSender {
  constructor(private readonly action: WebhookAction) {}

  async send(event: BanEvent): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.action.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': `fleetban/${FLEETBAN_VERSION}` },
        body: webhookBody(this.action, event),
        signal: AbortSignal.timeout(this.action.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      const e = err as Error & { cause?: Error };
      throw new Error(`POST ${redact(this.action.url)} failed: ${e.cause?.message ?? e.message}`);
    }
    // The body is not needed; reading it frees the connection.
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return;
    const message = `POST ${redact(this.action.url)} answered ${res.status} ${res.statusText}`;
    // 4xx other than timeout/rate limit: the same request will be refused again.
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new PermanentNotificationError(message);
    throw new Error(message);
  }
}

/** The URL without credentials or query (tokens often live there), for logs. */
function redact(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}
