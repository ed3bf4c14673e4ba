/**
 * The deploy manifest of every exported function, as firebase-tools reads it
 * at deploy time (`__endpoint`). A function that is added, removed, or whose
 * trigger, region or options change must change this table too.
 */
import assert from "node:assert/strict";
import path from "node:path";

interface Endpoint {
  platform: string;
  region: string[];
  timeoutSeconds?: number | null;
  maxInstances?: number | null;
  httpsTrigger?: Record<string, unknown>;
  callableTrigger?: Record<string, unknown>;
  eventTrigger?: {
    eventType: string;
    eventFilters?: Record<string, string>;
    eventFilterPathPatterns?: Record<string, string>;
    retry?: boolean;
  };
  scheduleTrigger?: { schedule: string };
  secretEnvironmentVariables?: Array<{ key: string }>;
}

type Expected =
  | { kind: "https" }
  | { kind: "callable" }
  | { kind: "event"; eventType: string; filter?: Record<string, string>; retry?: boolean }
  | { kind: "schedule"; schedule: string };

const EXPECTED: Record<string, Expected & { timeoutSeconds?: number; secrets?: string[] }> = {
  health: { kind: "https", timeoutSeconds: 30 },
  getBalance: { kind: "callable" },
  spendCredits: { kind: "callable" },
  listTransactions: { kind: "callable" },
  listLots: { kind: "callable" },
  setPlan: { kind: "callable" },
  grantAllowances: { kind: "schedule", schedule: "every 60 minutes", timeoutSeconds: 540 },
  grantCredits: { kind: "callable" },
  refundCredits: { kind: "callable" },
  adjustCredits: { kind: "callable" },
  meterUsage: { kind: "https", timeoutSeconds: 30, secrets: ["METERING_API_KEY"] },
  applyOperationQueue: {
    kind: "event",
    eventType: "google.firebase.database.ref.v1.written",
    filter: { ref: "operation_queues/{uid}/{opId}", instance: "*" },
    retry: true,
  },
  onUserDeleted: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.deleted",
    filter: { document: "users/{uid}", database: "(default)", namespace: "(default)" },
    retry: true,
    timeoutSeconds: 120,
  },
  mirrorUserBalance: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.written",
    filter: { document: "users/{uid}", database: "(default)", namespace: "(default)" },
    retry: true,
  },
  auditUsers: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.written",
    filter: { document: "users/{uid}", database: "(default)", namespace: "(default)" },
    retry: true,
  },
  auditRouterAlerts: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.written",
    filter: { document: "model_router_alerts/{alertId}", database: "(default)", namespace: "(default)" },
    retry: true,
  },
  auditConfig: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.written",
    filter: { document: "config/{configId}", database: "(default)", namespace: "(default)" },
    retry: true,
  },
  ingestKnowledge: { kind: "callable" },
  deleteKnowledge: { kind: "callable", timeoutSeconds: 60 },
  searchKnowledge: { kind: "callable", timeoutSeconds: 60, secrets: ["EMBEDDING_API_KEY"] },
  selectTools: { kind: "callable", timeoutSeconds: 60, secrets: ["EMBEDDING_API_KEY"] },
  embeddingConsumer: {
    kind: "event",
    eventType: "google.cloud.pubsub.topic.v1.messagePublished",
    filter: { topic: "embedding-requests" },
    retry: true,
    timeoutSeconds: 540,
    secrets: ["EMBEDDING_API_KEY"],
  },
  ttlCleanup: { kind: "schedule", schedule: "every 60 minutes", timeoutSeconds: 540 },
  providerHealthCheck: { kind: "schedule", schedule: "every 5 minutes", timeoutSeconds: 120 },
  acknowledgeAlert: { kind: "callable" },
  createJob: { kind: "callable" },
  cancelJob: { kind: "callable" },
  jobDispatcher: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.created",
    filter: { database: "(default)", namespace: "(default)", document: "jobs/{jobId}" },
    retry: false,
    timeoutSeconds: 60,
  },
  jobResultsConsumer: {
    kind: "event",
    eventType: "google.cloud.pubsub.topic.v1.messagePublished",
    filter: { topic: "job-results" },
    retry: true,
    timeoutSeconds: 60,
  },
  jobReport: { kind: "https", timeoutSeconds: 30, secrets: ["WORKER_API_KEY"] },
  jobsSweeper: { kind: "schedule", schedule: "every 1 minutes", timeoutSeconds: 120 },
  createSession: { kind: "callable" },
  listSessions: { kind: "callable" },
  renameSession: { kind: "callable" },
  deleteSession: { kind: "callable" },
  listNotifications: { kind: "callable" },
  markNotificationsSeen: { kind: "callable" },
  listCreditPacks: { kind: "callable" },
  createCheckoutSession: { kind: "callable", secrets: ["STRIPE_SECRET_KEY"] },
  stripeWebhook: { kind: "https", timeoutSeconds: 60, secrets: ["STRIPE_WEBHOOK_SECRET"] },
  setAutoTopUp: { kind: "callable" },
  chargeAutoTopUp: {
    kind: "event",
    eventType: "google.cloud.firestore.document.v1.created",
    filter: { database: "(default)", namespace: "(default)", document: "topups/{topupId}" },
    retry: true,
    timeoutSeconds: 60,
    secrets: ["STRIPE_SECRET_KEY"],
  },
};

describe("unit: deploy manifest of every exported function", () => {
  const lib = path.join(__dirname, "..", "..", "functions", "lib", "index.js");
  const exported = require(lib) as Record<string, { __endpoint?: Endpoint }>;

  it("exports exactly the functions in the table", () => {
    assert.deepEqual(Object.keys(exported).sort(), Object.keys(EXPECTED).sort());
  });

  for (const [name, expected] of Object.entries(EXPECTED)) {
    it(`${name}: ${expected.kind} trigger, gcfv2 in us-central1, max 20 instances`, () => {
      const endpoint = exported[name]?.__endpoint;
      assert.ok(endpoint, `${name} has no __endpoint`);
      assert.equal(endpoint.platform, "gcfv2");
      assert.deepEqual(endpoint.region, ["us-central1"]);
      assert.equal(endpoint.maxInstances, 20);
      if (expected.timeoutSeconds !== undefined) assert.equal(endpoint.timeoutSeconds, expected.timeoutSeconds);
      assert.deepEqual(
        (endpoint.secretEnvironmentVariables ?? []).map((secret) => secret.key).sort(),
        (expected.secrets ?? []).sort(),
        "secrets are attached only where needed",
      );
      switch (expected.kind) {
        case "https":
          assert.ok(endpoint.httpsTrigger && !endpoint.callableTrigger);
          break;
        case "callable":
          assert.ok(endpoint.callableTrigger);
          break;
        case "event":
          assert.equal(endpoint.eventTrigger?.eventType, expected.eventType);
          if (expected.filter) {
            assert.deepEqual(
              { ...endpoint.eventTrigger?.eventFilters, ...endpoint.eventTrigger?.eventFilterPathPatterns },
              expected.filter,
            );
          }
          if (expected.retry !== undefined) assert.equal(endpoint.eventTrigger?.retry, expected.retry);
          break;
        case "schedule":
          assert.equal(endpoint.scheduleTrigger?.schedule, expected.schedule);
          break;
      }
    });
  }
});
