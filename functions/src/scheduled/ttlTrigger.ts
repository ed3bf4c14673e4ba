/** Scheduled `ttlCleanup`: applies the retention policies (see ttl.ts, policies.ts). */
import { onSchedule } from "firebase-functions/v2/scheduler";

export const ttlCleanup = onSchedule(
  { schedule: "every 60 minutes", timeoutSeconds: 540, memory: "512MiB", retryCount: 0 },
  async (event) => {
    const { runScheduledTtlCleanup } = await import("./run");
    await runScheduledTtlCleanup(event.scheduleTime);
  },
);
