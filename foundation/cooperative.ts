/**
 * Long loops on the API's one thread (reading a bulk file of 100,000 rows, rendering as many
 * configurations) give way to other work now and then, so health checks and other callers are
 * answered meanwhile instead of after the whole loop.
 */

/** How long a loop may hold the thread before it gives way. */
const defaultSliceMs = 20;

/**
 * A function to await at each turn of a long loop: it resolves at once until the loop has held the
 * thread for `sliceMs`, then only after the event loop has run everything waiting.
 */
export function eventLoopTurns(sliceMs = defaultSliceMs): () => Promise<void> {
  let sliceStart = performance.now();
  return async () => {
    if (performance.now() - sliceStart < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
}
