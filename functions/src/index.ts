/**
 * Entry point of the deployed package.
 *
 * Every function is exported through a lazy getter: Cloud Functions reads only
 * `exports[FUNCTION_TARGET]`, so an instance loads just its own function's
 * module (and the SDKs that module needs), while deploy discovery, which
 * enumerates all exports, still sees every function.
 */
import { setGlobalOptions } from "firebase-functions/v2/options";
import { REGION } from "./config";

setGlobalOptions({ region: REGION, maxInstances: 20 });

type Loader = () => unknown;

/** Function name → module that defines it. Names are the deployed function names. */
const functions: Record<string, Loader> = {
  health: () => require("./health/trigger").health,
  ttlCleanup: () => require("./scheduled/ttlTrigger").ttlCleanup,
  providerHealthCheck: () => require("./scheduled/healthTrigger").providerHealthCheck,
  acknowledgeAlert: () => require("./scheduled/alertsTrigger").acknowledgeAlert,
};

for (const [name, load] of Object.entries(functions)) {
  Object.defineProperty(exports, name, { enumerable: true, get: load });
}
