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
import { declared } from "./shared/lazy-export";

setGlobalOptions({ region: REGION, maxInstances: 20 });

type Loader = () => unknown;

/**
 * A domain's `functions.ts`, required on first read; `(name)` is one of its exports, read lazily
 * (and declared then, if the domain wraps it in `onFirstRead`).
 */
function domain(load: () => Record<string, unknown>): (name: string) => Loader {
  return (name) => () => declared(load()[name]);
}

const health = domain(() => require("./health/functions") as Record<string, unknown>);
const credits = domain(() => require("./credits/functions") as Record<string, unknown>);
const mirror = domain(() => require("./mirror/functions") as Record<string, unknown>);
const audit = domain(() => require("./audit/functions") as Record<string, unknown>);
const embeddings = domain(() => require("./embeddings/functions") as Record<string, unknown>);
const retention = domain(() => require("./retention/functions") as Record<string, unknown>);
const routing = domain(() => require("./routing/functions") as Record<string, unknown>);
const jobs = domain(() => require("./jobs/functions") as Record<string, unknown>);
const sessions = domain(() => require("./sessions/functions") as Record<string, unknown>);
const notifications = domain(() => require("./notifications/functions") as Record<string, unknown>);
const payments = domain(() => require("./payments/functions") as Record<string, unknown>);

/** Deployed function name → its domain's `functions.ts`. */
const functions: Record<string, Loader> = {
  health: health("health"),
  getBalance: credits("getBalance"),
  spendCredits: credits("spendCredits"),
  listTransactions: credits("listTransactions"),
  listLots: credits("listLots"),
  setPlan: credits("setPlan"),
  grantAllowances: credits("grantAllowances"),
  grantCredits: credits("grantCredits"),
  refundCredits: credits("refundCredits"),
  adjustCredits: credits("adjustCredits"),
  meterUsage: credits("meterUsage"),
  applyOperationQueue: credits("applyOperationQueue"),
  onUserDeleted: credits("onUserDeleted"),
  mirrorUserBalance: mirror("mirrorUserBalance"),
  auditUsers: audit("auditUsers"),
  auditRouterAlerts: audit("auditRouterAlerts"),
  auditConfig: audit("auditConfig"),
  ingestKnowledge: embeddings("ingestKnowledge"),
  deleteKnowledge: embeddings("deleteKnowledge"),
  searchKnowledge: embeddings("searchKnowledge"),
  selectTools: embeddings("selectTools"),
  embeddingConsumer: embeddings("embeddingConsumer"),
  ttlCleanup: retention("ttlCleanup"),
  providerHealthCheck: routing("providerHealthCheck"),
  acknowledgeAlert: routing("acknowledgeAlert"),
  createJob: jobs("createJob"),
  cancelJob: jobs("cancelJob"),
  jobDispatcher: jobs("jobDispatcher"),
  jobResultsConsumer: jobs("jobResultsConsumer"),
  jobReport: jobs("jobReport"),
  jobsSweeper: jobs("jobsSweeper"),
  createSession: sessions("createSession"),
  listSessions: sessions("listSessions"),
  renameSession: sessions("renameSession"),
  deleteSession: sessions("deleteSession"),
  listNotifications: notifications("listNotifications"),
  markNotificationsSeen: notifications("markNotificationsSeen"),
  listCreditPacks: payments("listCreditPacks"),
  createCheckoutSession: payments("createCheckoutSession"),
  stripeWebhook: payments("stripeWebhook"),
  setAutoTopUp: payments("setAutoTopUp"),
  chargeAutoTopUp: payments("chargeAutoTopUp"),
};

for (const [name, load] of Object.entries(functions)) {
  Object.defineProperty(exports, name, { enumerable: true, get: load });
}
