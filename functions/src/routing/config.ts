/**
 * The model router's configuration: Firestore `config/model_router` when it
 * names providers, else the MODEL_PROVIDERS param's defaults. With neither,
 * there are no providers: routing and provider probes are off (logged once).
 */
import type { Firestore } from "firebase-admin/firestore";
import { logs } from "../shared/logs";
import { RouterConfig } from "./schemas";

export const ROUTER_CONFIG_PATH = { collection: "config", doc: "model_router" } as const;

/** Parses the configuration; throws a ZodError on an invalid one. */
export function parseRouterConfig(data: unknown): RouterConfig {
  return RouterConfig.parse(data);
}

/**
 * Reads the configuration document; an invalid document is logged and the
 * defaults are used, so one bad edit does not stop health checks.
 */
export async function loadRouterConfig(db: Firestore, defaultProvidersJson: string): Promise<RouterConfig> {
  const defaults = parseRouterConfig({
    providers: defaultProvidersJson === "" ? [] : (JSON.parse(defaultProvidersJson) as unknown),
  });
  const snapshot = await db.collection(ROUTER_CONFIG_PATH.collection).doc(ROUTER_CONFIG_PATH.doc).get();
  let config = defaults;
  if (snapshot.exists) {
    const parsed = RouterConfig.safeParse({ providers: defaults.providers, ...snapshot.data() });
    if (parsed.success) config = parsed.data;
    else
      logs.routerConfigInvalid(
        parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; "),
      );
  }
  if (config.providers.length === 0)
    logs.componentDisabled("model routing", "no providers in MODEL_PROVIDERS or config/model_router");
  return config;
}
