/** HTTPS `health`, served at /api/health through the hosting rewrite. */
import { onRequest } from "firebase-functions/v2/https";
import { ENVIRONMENT, HEALTH_TIMEOUT_MS } from "../config";
import { logs } from "../shared/logs";
import { checkHealth } from "./check";

const VERSION: string = (require("../../package.json") as { version: string }).version;

export const health = onRequest({ cors: true, timeoutSeconds: 30 }, async (request, response) => {
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.set("Allow", "GET, HEAD").status(405).json({ error: "method-not-allowed" });
    return;
  }
  const { liveProbes } = await import("./probes");
  const report = await checkHealth({
    probes: liveProbes(),
    timeoutMs: HEALTH_TIMEOUT_MS.value(),
    environment: ENVIRONMENT.value(),
    version: VERSION,
  });
  logs.healthChecked({ status: report.status });
  for (const [name, detail] of Object.entries(report.details)) {
    if ("error" in detail) logs.componentDown(name, detail.error);
  }
  response
    .set("Cache-Control", "no-store")
    .status(report.status === "down" ? 503 : 200)
    .json(report);
});
