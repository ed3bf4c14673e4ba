/** Scheduled `providerHealthCheck`: probes providers and resets quotas (see providerHealth.ts). */
import { onSchedule } from "firebase-functions/v2/scheduler";

export const providerHealthCheck = onSchedule(
  { schedule: "every 5 minutes", timeoutSeconds: 120, retryCount: 0 },
  async (event) => {
    const { runScheduledHealthCheck } = await import("./run");
    await runScheduledHealthCheck(event.scheduleTime);
  },
);
