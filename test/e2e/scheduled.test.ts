import assert from "node:assert/strict";
import { notificationId } from "../../functions/src/notifications/notifications";
import { startProviderStandin, type ProviderStandin } from "../../scripts/harness/provider-standin";
import { callFunction, fireSchedule, newUid, suite, waitFor } from "../support/suite";
import { closeMongo, firestore, mongo } from "../support/stores";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

describe("e2e: scheduled functions through the functions emulator", function () {
  this.timeout(120_000);
  const db = firestore();
  let standin: ProviderStandin;

  before(async () => {
    standin = await startProviderStandin();
  });
  after(async () => {
    await db.collection("config").doc("model_router").delete();
    await standin.close();
    await closeMongo();
  });

  it("when the ttlCleanup schedule fires, then expired data goes, fresh data stays, and an expired hold is released with its ledger entry", async () => {
    const now = Date.now();
    const uid = newUid("e2e-ttl");
    const oldDecision = db.collection("routing_decisions").doc(`${uid}-old`);
    const freshDecision = db.collection("routing_decisions").doc(`${uid}-fresh`);
    await oldDecision.set({ job_id: uid, timestamp: new Date(now - 31 * DAY) });
    await freshDecision.set({ job_id: uid, timestamp: new Date(now - 29 * DAY) });
    await db.collection("users").doc(uid).set({ credits_balance: 50, credits_held: 10, ledger_version: 1 });
    const hold = db.collection("credit_holds").doc(`${uid}-hold`);
    await hold.set({
      user_id: uid,
      amount: 10,
      status: "open",
      expires_at: new Date(now - MINUTE),
      job_id: "j",
      created_at: new Date(now - DAY),
    });

    const { status } = await fireSchedule(suite.functionsOrigin, "ttlCleanup");
    assert.equal(status, 200);

    assert.equal((await oldDecision.get()).exists, false);
    assert.equal((await freshDecision.get()).exists, true);
    assert.equal((await hold.get()).get("status"), "expired");
    const user = (await db.collection("users").doc(uid).get()).data() ?? {};
    assert.equal(user.credits_held, 0);
    assert.equal(user.ledger_version, 2);
    const ledger = await db.collection("credit_transactions").where("user_id", "==", uid).get();
    assert.deepEqual(
      ledger.docs.map((doc): unknown[] => [doc.get("type"), doc.get("idempotency_key")]),
      [["expire", `expire:${uid}-hold`]],
    );
  });

  it("when providerHealthCheck fires and a configured provider fails, then its health is down, one critical alert is raised, and admins are notified", async () => {
    const provider = newUid("e2e-prov");
    await db
      .collection("config")
      .doc("model_router")
      .set({
        providers: [
          {
            name: provider,
            probe_url: standin.probeUrl(provider),
            models: [{ id: "m", task_types: ["*"], cost_per_1k_tokens: 1 }],
          },
        ],
        failures_to_down: 1,
        probe_timeout_ms: 2000,
      });
    standin.set(provider, "error");

    const { status } = await fireSchedule(suite.functionsOrigin, "providerHealthCheck");
    assert.equal(status, 200);
    assert.ok(standin.hits(provider) >= 1, "the function probed the stand-in");

    const health = (await db.collection("model_provider_health").doc(provider).get()).data() ?? {};
    assert.equal(health.status, "down");
    assert.equal(health.last_error, "HTTP 503");
    const alerts = await db.collection("model_router_alerts").where("provider", "==", provider).get();
    assert.equal(alerts.size, 1);
    assert.equal(alerts.docs[0].get("severity"), "critical");
    const alertId = alerts.docs[0].id;
    const notification = (await waitFor("admin notification", async () =>
      (await mongo()).collection("notifications").findOne({ _id: notificationId(`alert:${alertId}`) }),
    )) as unknown as { userId: string };
    assert.equal(notification.userId, "admins");

    // A second tick while it stays down raises no further alert.
    assert.equal((await fireSchedule(suite.functionsOrigin, "providerHealthCheck")).status, 200);
    assert.equal((await db.collection("model_router_alerts").where("provider", "==", provider).get()).size, 1);

    // acknowledgeAlert: admins only, validated input, unknown ids are not found, then it acknowledges.
    const admin = { uid: newUid("admin"), claims: { admin: true } };
    const denied = await callFunction("acknowledgeAlert", { alert_id: alertId }, { uid: newUid("user") });
    assert.equal(denied.error?.status, "PERMISSION_DENIED");
    const invalid = await callFunction("acknowledgeAlert", { alert_id: alertId, acknowledged: false }, admin);
    assert.equal(invalid.error?.status, "INVALID_ARGUMENT");
    const missing = await callFunction("acknowledgeAlert", { alert_id: newUid("nope") }, admin);
    assert.equal(missing.error?.status, "NOT_FOUND");
    assert.equal(
      (await db.collection("model_router_alerts").doc(alertId).get()).get("acknowledged"),
      false,
      "refused calls wrote nothing",
    );

    const done = await callFunction<{ acknowledged: boolean; changed: boolean }>(
      "acknowledgeAlert",
      { alert_id: alertId },
      admin,
    );
    assert.deepEqual(done.result, { alert_id: alertId, acknowledged: true, changed: true });
    const acknowledged = (await db.collection("model_router_alerts").doc(alertId).get()).data() ?? {};
    assert.equal(acknowledged.acknowledged, true);
    assert.equal(acknowledged.acknowledged_by, admin.uid);
    const again = await callFunction<{ changed: boolean }>("acknowledgeAlert", { alert_id: alertId }, admin);
    assert.equal(again.result?.changed, false);
  });
});
