import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { banId, NOTIFIER_GROUP, type ClusterKeys } from '../../common/protocol/keys.js';
import { decodeBan, decodeDecision, type Decision, IMPORTED_REASON } from '../../common/protocol/messages.js';
import type { NotifyAction } from '../../common/config/notify-actions.js';
import type { BanEvent, NotificationSender } from './event.js';
import { MatchRecorder } from './matches.js';
import { MailSender } from './mail.js';
import { WebhookSender, PermanentNotificationError } from './webhook.js';

type BanDecision = Extract<Decision, { op: 'ban' }>;
type Entry = [string, string[] | null];

/** One ban's notifications, until each of its actions has succeeded (or given up). */
interface Job {
  readonly id: string;
  readonly decision: BanDecision;
  /** Actions still to succeed. */
  remaining: NotifyAction[];
  event?: BanEvent;
  attempts: number;
  readonly firstAt: number;
  nextAt: number;
  running: boolean;
}

export interface NotifierOptions {
  readonly cluster: string;
  /** This coordinator's host name, shown in the mails. */
  readonly from: string;
  /** Pending notifications of a coordinator silent this long (it died) are taken over. */
  readonly claimIdleMs: number;
  /** Notifications sent at once at most. */
  readonly concurrency?: number;
  /** Bans waiting for their notifications in memory at most; past it the stream waits in Redis. */
  readonly maxQueued?: number;
  /** First retry after this long, doubling up to {@link NotifierOptions.retryMaxMs}. */
  readonly retryFirstMs?: number;
  readonly retryMaxMs?: number;
  /** A notification still failing this long after the ban is logged as lost and dropped. */
  readonly giveUpMs?: number;
}

/** Outcome of one action for one ban, for metrics. */
export type NotifyResult = 'sent' | 'failed' | 'dropped';

/**
 * Sends the notifications of cluster bans (mails, webhooks), once per ban for the whole cluster:
 * every coordinator reads the decisions stream through the `notifiers` consumer group, so each
 * ban entry goes to one of them. The entry is acknowledged when all its jail's actions have
 * succeeded; until then it stays pending in Redis and this coordinator retries with backoff, while
 * it keeps its pending entries fresh (XCLAIM to itself). A coordinator that dies stops doing that,
 * and after claim_idle another one takes them over (XAUTOCLAIM). Delivery is at least once: a
 * coordinator that dies between sending and acknowledging has the notification sent again.
 * Notifications run beside the counting, on their own connection: a slow or failing mail never
 * delays a ban.
 */
export class Notifier {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly jobs = new Map<string, Job>();
  private inFlight = 0;
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private readonly retryFirstMs: number;
  private readonly retryMaxMs: number;
  private readonly giveUpMs: number;
  private readonly senders = new WeakMap<NotifyAction, NotificationSender>();
  /** Called for every action's outcome (metrics). */
  onResult: ((jail: string, action: string, result: NotifyResult) => void) | undefined;

  /**
   * @param reader a connection for this notifier alone (it blocks in XREADGROUP)
   * @param writer a connection for everything else
   * @param actionsFor the notification actions of a jail under the current policy
   */
  constructor(
    private readonly reader: Redis,
    private readonly writer: Redis,
    private readonly keys: ClusterKeys,
    private readonly consumer: string,
    private readonly actionsFor: (jail: string) => readonly NotifyAction[],
    private readonly log: Logger,
    private readonly options: NotifierOptions,
  ) {
    this.concurrency = options.concurrency ?? 4;
    this.maxQueued = options.maxQueued ?? 1000;
    this.retryFirstMs = options.retryFirstMs ?? 5000;
    this.retryMaxMs = options.retryMaxMs ?? 600_000;
    this.giveUpMs = options.giveUpMs ?? 86_400_000;
  }

  /** Bans whose notifications are waiting or being sent by this coordinator. */
  get queued(): number {
    return this.jobs.size;
  }

  /** Create the group (from now: bans decided before notifications existed are not mailed) and start. */
  async start(): Promise<void> {
    await this.createGroup();
    this.running = true;
    this.loop = this.run();
  }

  private async createGroup(): Promise<void> {
    try {
      await this.writer.xgroup('CREATE', this.keys.decisions, NOTIFIER_GROUP, '$', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    // What is not acknowledged stays pending: this consumer re-reads it on its next start, or
    // another coordinator claims it.
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, 3000).unref())]);
  }

  private async run(): Promise<void> {
    let cursor = '0';
    let lastTouch = Date.now();
    let lastClaim = 0;
    while (this.running) {
      try {
        const t = Date.now();
        if (t - lastTouch > this.options.claimIdleMs / 3) {
          lastTouch = t;
          await this.touchOwn();
        }
        if (t - lastClaim > this.options.claimIdleMs / 2) {
          lastClaim = t;
          await this.claimAbandoned();
        }
        if (this.jobs.size < this.maxQueued) {
          const reply = (await this.reader.xreadgroup(
            'GROUP', NOTIFIER_GROUP, this.consumer, 'COUNT', Math.min(100, this.maxQueued - this.jobs.size),
            'BLOCK', 1000, 'STREAMS', this.keys.decisions, cursor,
          )) as Array<[string, Entry[]]> | null;
          const entries = reply?.[0]?.[1] ?? [];
          // First this consumer's own pending entries (a previous run of it), then new ones.
          if (cursor !== '>') cursor = entries.length === 0 ? '>' : entries[entries.length - 1]![0];
          await this.take(entries);
        } else {
          await new Promise((r) => setTimeout(r, 500));
        }
        this.runDue();
      } catch (err) {
        if (!this.running) break;
        // The stream or group is gone (Redis restarted without its data, the keys were deleted): start over from now.
        if (String((err as Error).message).includes('NOGROUP')) await this.createGroup().catch(() => undefined);
        this.log.warn({ err: (err as Error).message }, 'reading decisions for notifications failed; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Keep this coordinator's pending entries from looking abandoned while it retries them. */
  private async touchOwn(): Promise<void> {
    const ids = [...this.jobs.keys()];
    for (let i = 0; i < ids.length; i += 500) {
      await this.writer.xclaim(this.keys.decisions, NOTIFIER_GROUP, this.consumer, 0, ...ids.slice(i, i + 500), 'JUSTID');
    }
  }

  /** Take over the notifications of a coordinator that stopped refreshing them (it died). */
  private async claimAbandoned(): Promise<void> {
    let start = '0-0';
    for (let rounds = 0; rounds < 10 && this.jobs.size < this.maxQueued; rounds++) {
      const [next, entries] = (await this.writer.xautoclaim(
        this.keys.decisions, NOTIFIER_GROUP, this.consumer, this.options.claimIdleMs, start, 'COUNT', Math.min(100, this.maxQueued - this.jobs.size),
      )) as [string, Entry[]];
      const live = entries.filter((e) => e !== null && !this.jobs.has(e[0]));
      if (live.length > 0) {
        this.log.warn({ count: live.length }, 'took over notifications of a coordinator that stopped');
        await this.take(live);
      }
      if (next === '0-0') break;
      start = next;
    }
  }

  /** Queue the bans of some entries; acknowledge at once what needs no notification. */
  private async take(entries: readonly Entry[]): Promise<void> {
    const acks: string[] = [];
    const t = Date.now();
    for (const [id, fields] of entries) {
      if (this.jobs.has(id)) continue;
      if (!fields) {
        // Trimmed from the stream before anyone notified it (stream_maxlen reached).
        this.log.warn({ id }, 'decision trimmed from the stream before its notification was sent');
        acks.push(id);
        continue;
      }
      const d = decodeDecision(fields);
      if (!d.ok) {
        this.log.warn({ id, reason: d.reason }, 'malformed decision skipped by the notifier');
        acks.push(id);
        continue;
      }
      // fail2ban does not mail the bans it restores at start; imported bans are restored ones.
      const restored = d.value.op === 'ban' && d.value.reason.startsWith(IMPORTED_REASON);
      const actions = d.value.op === 'ban' && !restored ? this.actionsFor(d.value.jail) : [];
      if (actions.length === 0) {
        acks.push(id);
        continue;
      }
      this.jobs.set(id, { id, decision: d.value as BanDecision, remaining: [...actions], attempts: 0, firstAt: t, nextAt: t, running: false });
    }
    if (acks.length > 0) await this.writer.xack(this.keys.decisions, NOTIFIER_GROUP, ...acks);
  }

  /** Start the jobs that are due, up to the concurrency. */
  private runDue(): void {
    const t = Date.now();
    for (const job of this.jobs.values()) {
      if (this.inFlight >= this.concurrency) return;
      if (job.running || job.nextAt > t) continue;
      job.running = true;
      this.inFlight++;
      this.attempt(job).catch((err: Error) => this.log.error({ err: err.message, id: job.id }, 'notification attempt failed unexpectedly')).finally(() => {
        job.running = false;
        this.inFlight--;
        if (this.running) this.runDue();
      });
    }
  }

  private async attempt(job: Job): Promise<void> {
    const d = job.decision;
    job.event ??= await this.buildEvent(d);
    const event = job.event;
    const outcomes = await Promise.all(job.remaining.map(async (action) => {
      try {
        await this.sender(action).send(event);
        this.log.info({ jail: d.jail, addr: d.addr, action: action.action, attempt: job.attempts + 1 }, `[${d.jail}] notified ${d.addr} (${action.action})`);
        this.onResult?.(d.jail, action.action, 'sent');
        return true;
      } catch (err) {
        if (err instanceof PermanentNotificationError) {
          this.log.error({ jail: d.jail, addr: d.addr, action: action.action, err: err.message }, 'notification refused; not retried');
          this.onResult?.(d.jail, action.action, 'dropped');
          return true;
        }
        this.log.warn({ jail: d.jail, addr: d.addr, action: action.action, attempt: job.attempts + 1, err: (err as Error).message }, 'notification failed; will retry');
        this.onResult?.(d.jail, action.action, 'failed');
        return false;
      }
    }));
    job.remaining = job.remaining.filter((_, i) => !outcomes[i]);
    job.attempts++;
    const t = Date.now();
    if (job.remaining.length > 0 && t - job.firstAt < this.giveUpMs) {
      job.nextAt = t + Math.min(this.retryMaxMs, this.retryFirstMs * 2 ** (job.attempts - 1));
      return;
    }
    if (job.remaining.length > 0) {
      this.log.error({ jail: d.jail, addr: d.addr, actions: job.remaining.map((a) => a.action), attempts: job.attempts }, 'notification given up');
      for (const a of job.remaining) this.onResult?.(d.jail, a.action, 'dropped');
    }
    await this.writer.xack(this.keys.decisions, NOTIFIER_GROUP, job.id);
    this.jobs.delete(job.id);
  }

  private sender(action: NotifyAction): NotificationSender {
    let s = this.senders.get(action);
    if (!s) this.senders.set(action, (s = action.kind === 'mail' ? new MailSender(action) : new WebhookSender(action)));
    return s;
  }

  /** The cluster's view of a ban: failures from its record, hosts and lines from the matched-line record. */
  private async buildEvent(d: BanDecision): Promise<BanEvent> {
    const [json, matches] = await Promise.all([
      this.writer.hget(this.keys.bans, banId(d.jail, d.addr)),
      MatchRecorder.read(this.writer, this.keys, d.jail, d.addr),
    ]);
    const record = json ? decodeBan(json) : undefined;
    // Failures after the decision (the address keeps trying) are not what banned it.
    // Coordinators append in the order they count, which across coordinators is not the failures' order.
    const before = matches.filter((m) => m.time <= d.since).sort((a, b) => a.time - b.time);
    const hosts = [...new Set(before.map((m) => m.host))].sort();
    return {
      cluster: this.options.cluster,
      jail: d.jail,
      addr: d.addr,
      since: d.since,
      until: d.until,
      reason: d.reason,
      origin: d.origin,
      failures: record?.ok && record.value.since === d.since ? record.value.failures : 0,
      hosts: hosts.length > 0 || d.origin.startsWith('cli:') ? hosts : [d.origin],
      matches: before,
      from: this.options.from,
    };
  }
}
