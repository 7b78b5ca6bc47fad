import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { now as localNow } from '../common/clock.js';

/**
 * The coordinators' one clock: Redis' own. Every coordinator measures its offset to Redis `TIME`
 * and decides on local time plus that offset, so two coordinators on hosts whose clocks disagree
 * still agree on windows and expiry. Failure times are placed on the same clock through the stream
 * entry id, which Redis stamps on arrival (see Aggregator.process).
 */
export class RedisClock {
  private offset = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    private readonly refreshMs = 10_000,
  ) {}

  /** Measure the offset now and keep it fresh. A failed measurement keeps the last offset. */
  async start(): Promise<void> {
    await this.measure();
    this.timer = setInterval(() => void this.measure(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** @returns Redis' time in epoch ms, estimated from the local clock and the measured offset */
  now(): number {
    return localNow() + this.offset;
  }

  private async measure(): Promise<void> {
    try {
      const before = localNow();
      const [sec, usec] = await this.redis.time();
      const after = localNow();
      const redisMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      const offset = redisMs - Math.round((before + after) / 2);
      if (Math.abs(offset - this.offset) > 1000) this.log.info({ offsetMs: offset }, 'clock offset to Redis');
      this.offset = offset;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'measuring the Redis clock failed');
    }
  }
}
