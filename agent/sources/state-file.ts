import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../common/log.js';

/**
 * A small JSON document saved atomically (write a temp file, fsync, rename) and at most once per
 * interval. Sources mark it dirty on every delivered chunk, which costs a boolean; the snapshot is
 * taken and written only when the timer fires or on `close()`, so a flood of lines does not turn
 * into a flood of writes.
 */
export class JsonStateFile<T> {
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  /**
   * @param path where the document lives
   * @param snapshot returns the current document when a save happens
   * @param log component logger for save failures
   * @param intervalMs minimum time between two saves
   */
  constructor(
    readonly path: string,
    private readonly snapshot: () => T,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {}

  /**
   * Read the saved document.
   * @returns the parsed JSON, or undefined when there is none or it is unreadable (logged)
   */
  async load(): Promise<unknown> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, path: this.path }, 'cannot read state file');
      return undefined;
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      // A corrupt file must not stop the agent; starting without positions is the safe fallback.
      this.log.warn({ err, path: this.path }, 'state file is not valid JSON; ignoring it');
      return undefined;
    }
  }

  /** Note that the snapshot changed; a save follows within the interval. */
  markDirty(): void {
    this.dirty = true;
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.save();
      }, this.intervalMs);
    }
  }

  /**
   * Write now if anything changed; concurrent calls are serialized.
   * @returns when the write (if any) is done; failures are logged, not thrown
   */
  save(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const text = JSON.stringify(this.snapshot());
      const tmp = `${this.path}.tmp-${process.pid}`;
      try {
        await mkdir(dirname(this.path), { recursive: true });
        const fh = await open(tmp, 'w', 0o600);
        try {
          await fh.writeFile(text);
          // Without the sync a crash right after the rename can leave an empty file on ext4/xfs.
          await fh.datasync();
        } finally {
          await fh.close();
        }
        await rename(tmp, this.path);
      } catch (err) {
        this.dirty = true;
        this.log.error({ err, path: this.path }, 'cannot save state file');
        await unlink(tmp).catch(() => undefined);
      }
    });
    return this.writing;
  }

  /** Cancel the timer and write the last snapshot. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.save();
  }
}

/**
 * A file name for a jail's state that cannot escape the state directory.
 * @param jail jail name
 * @param kind `files` or `journal`
 */
export function stateFileName(jail: string, kind: string): string {
  return `${encodeURIComponent(jail).replace(/^\.+/, (m) => '%2E'.repeat(m.length))}.${kind}.json`;
}
