/**
 * Demo of the scheduled capability for `npm start`: a provider stand-in with
 * two providers, and `config/model_router` pointing the health check at it.
 * Switch a provider's behaviour while the suite runs:
 *
 *   curl -X PUT -d '{"mode":"error"}' http://127.0.0.1:PORT/beta/mode
 */
import path from "node:path";
import { onTeardown } from "./processes";
import { startProviderStandin } from "./provider-standin";
import { ROOT } from "./services";

export async function seedScheduledDemo(env: Record<string, string>, step: (text: string) => void): Promise<void> {
  const standin = await startProviderStandin();
  onTeardown(() => standin.close());
  process.env.FIRESTORE_EMULATOR_HOST = env.FIRESTORE_EMULATOR_HOST;
  const functionsDir = path.join(ROOT, "functions");
  const { initializeApp } = require(
    require.resolve("firebase-admin/app", { paths: [functionsDir] }),
  ) as typeof import("firebase-admin/app");
  const { getFirestore } = require(
    require.resolve("firebase-admin/firestore", { paths: [functionsDir] }),
  ) as typeof import("firebase-admin/firestore");
  const db = getFirestore(initializeApp({ projectId: env.GCLOUD_PROJECT }, "harness-demo-scheduled"));
  const provider = (name: string, cost: number) => ({
    name,
    probe_url: standin.probeUrl(name),
    models: [{ id: `${name}-chat`, task_types: ["*"], cost_per_1k_tokens: cost }],
  });
  await db
    .collection("config")
    .doc("model_router")
    .set({
      providers: [provider("alpha", 0.5), provider("beta", 1)],
      fallback_order: ["alpha", "beta"],
    });
  step(
    `demo: provider stand-in at ${standin.url} (alpha, beta); change one with: curl -X PUT -d '{"mode":"error"}' ${standin.url}/beta/mode`,
  );
}
