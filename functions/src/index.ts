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

/** Function name → its domain's `functions.ts`. Names are the deployed function names. */
const functions: Record<string, Loader> = {
  health: () => require("./health/functions").health,
  getBalance: () => require("./credits/functions").getBalance,
  spendCredits: () => require("./credits/functions").spendCredits,
  listTransactions: () => require("./credits/functions").listTransactions,
  grantCredits: () => require("./credits/functions").grantCredits,
  refundCredits: () => require("./credits/functions").refundCredits,
  adjustCredits: () => require("./credits/functions").adjustCredits,
  meterUsage: () => require("./credits/functions").meterUsage,
  applyOperationQueue: () => require("./credits/functions").applyOperationQueue,
  onUserDeleted: () => require("./credits/functions").onUserDeleted,
  mirrorUserBalance: () => require("./mirror/functions").mirrorUserBalance,
  auditUsers: () => require("./audit/functions").auditUsers,
  auditRouterAlerts: () => require("./audit/functions").auditRouterAlerts,
  auditConfig: () => require("./audit/functions").auditConfig,
  ingestKnowledge: () => require("./embeddings/functions").ingestKnowledge,
  deleteKnowledge: () => require("./embeddings/functions").deleteKnowledge,
  searchKnowledge: () => require("./embeddings/functions").searchKnowledge,
  selectTools: () => require("./embeddings/functions").selectTools,
  embeddingConsumer: () => require("./embeddings/functions").embeddingConsumer,
  ttlCleanup: () => require("./retention/functions").ttlCleanup,
  providerHealthCheck: () => require("./routing/functions").providerHealthCheck,
  acknowledgeAlert: () => require("./routing/functions").acknowledgeAlert,
  createJob: () => require("./jobs/functions").createJob,
  cancelJob: () => require("./jobs/functions").cancelJob,
  jobDispatcher: () => require("./jobs/functions").jobDispatcher,
  jobResultsConsumer: () => require("./jobs/functions").jobResultsConsumer,
  jobReport: () => require("./jobs/functions").jobReport,
  jobsSweeper: () => require("./jobs/functions").jobsSweeper,
  createSession: () => require("./sessions/functions").createSession,
  listSessions: () => require("./sessions/functions").listSessions,
  renameSession: () => require("./sessions/functions").renameSession,
  deleteSession: () => require("./sessions/functions").deleteSession,
  listNotifications: () => require("./notifications/functions").listNotifications,
  markNotificationsSeen: () => require("./notifications/functions").markNotificationsSeen,
};

for (const [name, load] of Object.entries(functions)) {
  Object.defineProperty(exports, name, { enumerable: true, get: load });
}
