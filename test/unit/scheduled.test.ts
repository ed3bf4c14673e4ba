import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRouterConfig } from "../../functions/src/scheduled/config";
import { DEFAULT_RETENTION, retentionPolicies } from "../../functions/src/scheduled/policies";
import { nextHealth, type HealthState, type ProbeResult } from "../../functions/src/scheduled/providerHealth";

const settings = { ewma_alpha: 0.3, error_window: 5, degraded_error_rate: 0.4, failures_to_down: 3, cooldown_ms: 60_000, slow_ms: 500 };
const ok = (latency = 10): ProbeResult => ({ ok: true, latency_ms: latency, error: null });
const fail = (error = "HTTP 503"): ProbeResult => ({ ok: false, latency_ms: 20, error });

describe("unit: scheduled", () => {
  describe("retention table", () => {
    it("when built with defaults, then it covers every store and releases holds rather than deleting them", () => {
      const policies = retentionPolicies();
      const names = policies.map((p) => p.name);
      assert.deepEqual(names, [
        "expired_holds",
        "routing_decisions",
        "acknowledged_alerts",
        "processed_events",
        "idempotency_keys",
        "provider_checks",
        "operation_queues",
        "notifications",
        "lancedb_versions",
      ]);
      assert.equal(new Set(names).size, names.length, "names are unique (they key the resume point)");
      const holds = policies.find((p) => p.name === "expired_holds");
      assert.equal(holds?.action, "release_hold");
      const alerts = policies.find((p) => p.name === "acknowledged_alerts");
      assert.ok(alerts?.store === "firestore" && alerts.where.some((w) => w.field === "acknowledged" && w.value === true));
    });

    it("when the audit retention is set, then an audit policy with that age is added", () => {
      const audit = retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 400 }).find((p) => p.name === "audit_logs");
      assert.equal(audit?.ageMs, 400 * 86_400_000);
    });
  });

  describe("firestore.indexes.json", () => {
    const file = require("../../firestore.indexes.json") as {
      indexes: Array<{ collectionGroup: string; fields: Array<{ fieldPath: string; order: string }> }>;
      fieldOverrides: Array<{ collectionGroup: string; fieldPath: string; ttl?: boolean }>;
    };

    it("when a retention policy filters on a condition, then a composite index (condition fields, then the timestamp) is declared", () => {
      for (const policy of retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 1 })) {
        if (policy.store !== "firestore" || policy.where.length === 0) continue;
        const wanted = [...policy.where.map((w) => w.field), policy.timestampField];
        const found = file.indexes.some(
          (index) => index.collectionGroup === policy.collection && index.fields.map((f) => f.fieldPath).join() === wanted.join() && index.fields.at(-1)?.order === "ASCENDING",
        );
        assert.ok(found, `${policy.name}: index on ${policy.collection} (${wanted.join(", ")})`);
      }
    });

    it("when a day's lag is acceptable, then native TTL is declared on expire_at; holds and alerts never get native TTL", () => {
      const ttl = file.fieldOverrides.filter((o) => o.ttl).map((o) => `${o.collectionGroup}.${o.fieldPath}`).sort();
      assert.deepEqual(ttl, ["idempotency_keys.expire_at", "model_provider_checks.expire_at", "processed_events.expire_at", "routing_decisions.expire_at"]);
    });
  });

  describe("nextHealth", () => {
    const now = new Date("2026-01-01T00:00:00Z");

    it("when probes fail up to the threshold, then degraded, then down with a cooldown; a success resets failures but not the cooldown", () => {
      let state: HealthState | undefined;
      const statuses: string[] = [];
      for (let i = 0; i < 3; i++) {
        state = nextHealth(state, "p", fail(), settings, now);
        statuses.push(state.status);
      }
      assert.deepEqual(statuses, ["degraded", "degraded", "down"]);
      assert.equal(state?.cooldown_until?.getTime(), now.getTime() + 60_000);
      assert.equal(state?.last_error, "HTTP 503");
      const later = new Date(now.getTime() + 1000);
      const recovered = nextHealth(state, "p", ok(), settings, later);
      assert.equal(recovered.consecutive_failures, 0);
      assert.notEqual(recovered.status, "down");
      assert.equal(recovered.cooldown_until?.getTime(), now.getTime() + 60_000);
    });

    it("for any sequence of probes, then the error rate is the failed share of the last window and the EWMA stays within the samples' range", () => {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 5000 })), { minLength: 1, maxLength: 40 }), (probes) => {
          let state: HealthState | undefined;
          for (const [success, latency] of probes) {
            state = nextHealth(state, "p", success ? ok(latency) : { ok: false, latency_ms: latency, error: "x" }, settings, now);
          }
          const window = probes.slice(-settings.error_window);
          const expected = window.filter(([success]) => !success).length / window.length;
          assert.ok(Math.abs((state?.error_rate ?? -1) - expected) < 0.001);
          const latencies = probes.map(([, latency]) => latency);
          assert.ok((state?.latency_ms ?? -1) >= Math.min(...latencies) - 0.1 && (state?.latency_ms ?? -1) <= Math.max(...latencies) + 0.1);
          let trailing = 0;
          for (let i = probes.length - 1; i >= 0 && !probes[i][0]; i--) trailing++;
          assert.equal(state?.consecutive_failures, trailing);
          assert.equal(state?.status === "down", trailing >= settings.failures_to_down);
        }),
      );
    });

    it("when the EWMA latency exceeds slow_ms while probes succeed, then degraded", () => {
      const state = nextHealth(nextHealth(undefined, "p", ok(100), settings, now), "p", ok(2000), settings, now);
      assert.equal(state.latency_ms, 0.3 * 2000 + 0.7 * 100);
      assert.equal(state.status, "degraded");
    });
  });

  describe("router configuration", () => {
    it("when a provider entry has an unknown field or an unsafe name, then it is rejected", () => {
      const provider = { name: "a", probe_url: "http://x/health", models: [{ id: "m", task_types: ["*"], cost_per_1k_tokens: 0 }] };
      assert.ok(parseRouterConfig({ providers: [provider] }).providers.length === 1);
      assert.throws(() => parseRouterConfig({ providers: [{ ...provider, api_key: "k" }] }), { name: "ZodError" });
      assert.throws(() => parseRouterConfig({ providers: [{ ...provider, name: "a/b" }] }), { name: "ZodError" });
    });

    it("when the MODEL_PROVIDERS default is parsed, then it is a valid configuration", () => {
      const { MODEL_PROVIDERS } = require("../../functions/src/config") as typeof import("../../functions/src/config");
      const json = (MODEL_PROVIDERS as unknown as { options: { default: string } }).options.default;
      assert.ok(parseRouterConfig({ providers: JSON.parse(json) as unknown }).providers.length >= 1);
    });
  });
});
