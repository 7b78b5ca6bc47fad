/**
 * Poll a condition until it holds or the time is up: tests wait for outcomes, never for fixed sleeps.
 * @param check the condition
 * @param timeoutMs give up after this long, with an error naming `what`
 * @param what what is awaited, for the error
 * @param everyMs pause between checks
 */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
