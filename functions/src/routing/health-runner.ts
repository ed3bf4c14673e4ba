/**
 * One `providerHealthCheck` tick wired to the live adapters and params;
 * loaded by the schedule trigger at run time only.
 */
import { firestore } from "../adapters/firebase";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { MODEL_PROVIDERS, PROVIDER_PROBE_TIMEOUT_MS } from "../config";
import { runOnce } from "../shared/dedupe";
import { logs } from "../shared/logs";
import { systemClock } from "../shared/time";
import { notifyAdminsOfAlert } from "./alerts";
import { loadRouterConfig } from "./config";
import { httpProbe, runProviderHealthCheck } from "./provider-health";

/** One providerHealthCheck tick; a repeated delivery of the same tick is skipped. */
export async function runScheduledHealthCheck(scheduleTime: string): Promise<void> {
  const db = firestore();
  const outcome = await runOnce(
    db,
    "providerHealthCheck",
    scheduleTime,
    async () => {
      const result = await runProviderHealthCheck({
        db,
        clock: systemClock,
        config: await loadRouterConfig(db, MODEL_PROVIDERS.value()),
        probe: httpProbe,
        probeTimeoutMs: PROVIDER_PROBE_TIMEOUT_MS.value(),
        // Without MongoDB administrators learn of alerts from model_router_alerts alone.
        notifyAdmins: mongoConfigured() ? async (alert) => notifyAdminsOfAlert(await mongoDb(), alert) : undefined,
      });
      logs.quotasReset(result.quotas_reset);
    },
    { leaseMs: 150_000, retainDays: 1 },
  );
  if (outcome !== "done") logs.scheduleSkipped("providerHealthCheck", outcome);
}
