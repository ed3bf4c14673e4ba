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
  getBalance: () => require("./credits/callables").getBalance,
  spendCredits: () => require("./credits/callables").spendCredits,
  listTransactions: () => require("./credits/callables").listTransactions,
  grantCredits: () => require("./credits/callables").grantCredits,
  refundCredits: () => require("./credits/callables").refundCredits,
  adjustCredits: () => require("./credits/callables").adjustCredits,
  meterUsage: () => require("./credits/meter").meterUsage,
  applyOperationQueue: () => require("./credits/queue-trigger").applyOperationQueue,
  onUserDeleted: () => require("./credits/closure-trigger").onUserDeleted,
  mirrorUserBalance: () => require("./mirror/triggers").mirrorUserBalance,
  auditUsers: () => require("./audit/triggers").auditUsers,
  auditRouterAlerts: () => require("./audit/triggers").auditRouterAlerts,
  auditConfig: () => require("./audit/triggers").auditConfig,
  ingestKnowledge: () => require("./embeddings/triggers").ingestKnowledge,
  deleteKnowledge: () => require("./embeddings/triggers").deleteKnowledge,
  searchKnowledge: () => require("./embeddings/triggers").searchKnowledge,
  selectTools: () => require("./embeddings/triggers").selectTools,
  embeddingConsumer: () => require("./embeddings/triggers").embeddingConsumer,
  ttlCleanup: () => require("./retention/functions").ttlCleanup,
  providerHealthCheck: () => require("./routing/functions").providerHealthCheck,
  acknowledgeAlert: () => require("./routing/functions").acknowledgeAlert,
  createJob: () => require("./jobs/triggers").createJob,
  cancelJob: () => require("./jobs/triggers").cancelJob,
  jobDispatcher: () => require("./jobs/triggers").jobDispatcher,
  jobResultsConsumer: () => require("./jobs/triggers").jobResultsConsumer,
  jobReport: () => require("./jobs/triggers").jobReport,
  jobsSweeper: () => require("./jobs/triggers").jobsSweeper,
  createSession: () => require("./sessions/callables").createSession,
  listSessions: () => require("./sessions/callables").listSessions,
  renameSession: () => require("./sessions/callables").renameSession,
  deleteSession: () => require("./sessions/callables").deleteSession,
  listNotifications: () => require("./notifications/functions").listNotifications,
  markNotificationsSeen: () => require("./notifications/functions").markNotificationsSeen,
};

for (const [name, load] of Object.entries(functions)) {
  Object.defineProperty(exports, name, { enumerable: true, get: load });
}
