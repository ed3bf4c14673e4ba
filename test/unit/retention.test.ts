import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { DEFAULT_RETENTION, retentionPolicies } from "../../functions/src/retention/policies";

const ROOT = path.join(__dirname, "../..");

describe("unit: retention", () => {
  describe("retention table", () => {
    it("when built with defaults, then it covers every store and releases holds and expires lots rather than deleting them", () => {
      const policies = retentionPolicies();
      const names = policies.map((p) => p.name);
      assert.deepEqual(names, [
        "expired_holds",
        "expired_lots",
        "routing_decisions",
        "acknowledged_alerts",
        "processed_events",
        "idempotency_keys",
        "stripe_events",
        "provider_checks",
        "operation_queues",
        "notifications",
        "lancedb_versions",
      ]);
      assert.equal(new Set(names).size, names.length, "names are unique (they key the resume point)");
      const holds = policies.find((p) => p.name === "expired_holds");
      assert.equal(holds?.action, "release_hold");
      const lots = policies.find((p) => p.name === "expired_lots");
      assert.ok(lots?.store === "firestore" && lots.action === "expire_lot" && lots.collection === "credit_lots");
      const alerts = policies.find((p) => p.name === "acknowledged_alerts");
      assert.ok(
        alerts?.store === "firestore" && alerts.where.some((w) => w.field === "acknowledged" && w.value === true),
      );
    });

    it("when the audit retention is set, then an audit policy with that age is added", () => {
      const audit = retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 400 }).find((p) => p.name === "audit_logs");
      assert.equal(audit?.ageMs, 400 * 86_400_000);
    });
  });

  describe("firestore.indexes.json", () => {
    const file = require("../../firestore.indexes.json") as {
      indexes: Array<{ collectionGroup: string; fields: Array<{ fieldPath: string; order: string }> }>;
      fieldOverrides: Array<{ collectionGroup: string; fieldPath: string; ttl?: boolean; indexes?: unknown[] }>;
    };

    it("when a retention policy filters on a condition, then a composite index (condition fields, then the timestamp) is declared", () => {
      for (const policy of retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 1 })) {
        if (policy.store !== "firestore" || policy.where.length === 0) continue;
        const wanted = [...policy.where.map((w) => w.field), policy.timestampField];
        const found = file.indexes.some(
          (index) =>
            index.collectionGroup === policy.collection &&
            index.fields.map((f) => f.fieldPath).join() === wanted.join() &&
            index.fields.at(-1)?.order === "ASCENDING",
        );
        assert.ok(found, `${policy.name}: index on ${policy.collection} (${wanted.join(", ")})`);
      }
    });

    it("when a day's lag is acceptable, then native TTL is declared on expire_at; holds and alerts never get native TTL", () => {
      const ttl = file.fieldOverrides
        .filter((o) => o.ttl)
        .map((o) => `${o.collectionGroup}.${o.fieldPath}`)
        .sort();
      assert.deepEqual(ttl, [
        "idempotency_keys.expire_at",
        "model_provider_checks.expire_at",
        "processed_events.expire_at",
        "routing_decisions.expire_at",
        "stripe_events.expire_at",
      ]);
    });

    it("when the file is deployed, then firebase-tools' own validator accepts it", () => {
      const { FirestoreApi } = require("firebase-tools/lib/firestore/api") as {
        FirestoreApi: new () => { validateSpec(spec: unknown): void };
      };
      assert.doesNotThrow(() => new FirestoreApi().validateSpec(file));
    });

    it("when a stored map is never queried, then it is exempt from single-field indexes, and no query uses it", () => {
      const exempt = file.fieldOverrides
        .filter((o) => !o.ttl && o.indexes?.length === 0)
        .map((o) => `${o.collectionGroup}.${o.fieldPath}`)
        .sort();
      assert.deepEqual(exempt, [
        "audit_logs.after",
        "audit_logs.before",
        "credit_transactions.allocations",
        "credit_transactions.held_allocations",
        "credit_transactions.metadata",
        "idempotency_keys.response",
      ]);
      // An exempt field (or one inside it) cannot be filtered or ordered on deployed: no query in the functions
      // or the scripts run against a project may try (a literal field name as the query's first argument, in
      // any quotes). The bench runs on the emulator only, which has no indexes, and its credits scenario does.
      const sources = ["functions/src", "scripts"].flatMap((dir) =>
        readdirSync(path.join(ROOT, dir), { recursive: true, encoding: "utf8" })
          .filter((name) => name.endsWith(".ts") && !name.includes("node_modules"))
          .map((name) => readFileSync(path.join(ROOT, dir, name), "utf8")),
      );
      for (const field of new Set(exempt.map((name) => name.split(".")[1]))) {
        const query = new RegExp(`\\.(where|orderBy)\\(\\s*["'\`]${field}["'\`.]`);
        assert.ok(!sources.some((source) => query.test(source)), `a query on ${field}`);
      }
    });
  });
});
