/** The retention capability's function: scheduled `ttlCleanup` applies the retention policies (see runner.ts, policies.ts). */
import { onSchedule } from "firebase-functions/v2/scheduler";

export const ttlCleanup = onSchedule(
  { schedule: "every 60 minutes", timeoutSeconds: 540, memory: "512MiB", retryCount: 0 },
  async (event) => {
    const { runScheduledTtlCleanup } = await import("./runner");
    await runScheduledTtlCleanup(event.scheduleTime);
  },
);
