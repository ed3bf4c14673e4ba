/**
 * Warms the functions emulator's worker pool for `npm start`.
 *
 * The emulator runs each invocation in an idle worker process of that function, or spawns a new one
 * that loads the whole package (seconds on a busy 2-core machine). With invocations bounded (see
 * `parallel` in services.ts) a burst reuses at most that many workers per function; starting them here
 * means a client's first burst does not pay those cold starts.
 */
import { http } from "./net";

export interface WarmOptions {
  functionsBaseUrl: string;
  /** Callable functions to warm, by deployed name. */
  names: string[];
  /** Workers per function: the emulator's invocation bound. */
  workers: number;
  log: (text: string) => void;
}

export async function warmWorkers(options: WarmOptions): Promise<void> {
  const started = Date.now();
  for (const name of options.names) {
    // An unauthenticated call with an empty payload loads the function and is refused at once;
    // concurrent ones make the emulator start one worker each, which then stay idle for reuse.
    const answers = await Promise.all(
      Array.from({ length: options.workers }, () =>
        http(`${options.functionsBaseUrl}/${name}`, { method: "POST", body: { data: {} }, timeoutMs: 180_000 }).then(
          (answer) => answer.status,
          () => 0,
        ),
      ),
    );
    const loaded = answers.filter((status) => status > 0).length;
    options.log(
      `warmed ${name}: ${loaded}/${options.workers} workers (${((Date.now() - started) / 1000).toFixed(1)}s)`,
    );
  }
}
