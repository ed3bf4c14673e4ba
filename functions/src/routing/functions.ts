/**
 * The routing capability's functions: scheduled `providerHealthCheck` (probes
 * providers and resets quotas, see provider-health.ts) and the admin callable
 * `acknowledgeAlert({alert_id})` (see alerts.ts).
 */
import { onSchedule } from "firebase-functions/v2/scheduler";
import { onFirstRead } from "../shared/lazy-export";

export const providerHealthCheck = onSchedule(
  { schedule: "every 5 minutes", timeoutSeconds: 120, retryCount: 0 },
  async (event) => {
    const { runScheduledHealthCheck } = await import("./health-runner");
    await runScheduledHealthCheck(event.scheduleTime);
  },
);

// Declared on first read: the callable wrapper and zod are not the schedule's to load at cold start.
export const acknowledgeAlert = onFirstRead(() => {
  const { callable } = require("../shared/callable") as typeof import("../shared/callable");
  const { AcknowledgeAlertInput } = require("./schemas") as typeof import("./schemas");
  return callable({
    name: "acknowledgeAlert",
    access: "admin",
    schema: AcknowledgeAlertInput,
    handler: async (input, caller) => {
      const [{ firestore }, alerts, { systemClock }, { logs }] = await Promise.all([
        import("../adapters/firebase"),
        import("./alerts"),
        import("../shared/time"),
        import("../shared/logs"),
      ]);
      const result = await alerts.acknowledgeAlert({ db: firestore(), clock: systemClock }, input, caller.uid);
      logs.alertAcknowledged(result.alert_id, caller.uid, result.changed);
      return result;
    },
  });
});
