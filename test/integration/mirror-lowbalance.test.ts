/** Low-balance notifications across a series of crossings, with hysteresis, on Firestore and the MongoDB wire server. */
import assert from "node:assert/strict";
import { MongoClient } from "../../functions/node_modules/mongodb";
import { observeBalance, policyFor } from "../../functions/src/mirror/lowbalance";
import { notify, NOTIFICATIONS } from "../../functions/src/notifications/notify";
import { db } from "../support/credits";
import { newUid, suite } from "../support/suite";

describe("integration: low-balance notifications", () => {
  let client: MongoClient;
  before(async () => {
    client = await new MongoClient(suite.mongoUri, { serverSelectionTimeoutMS: 5000 }).connect();
  });
  after(() => client.close());

  const count = (uid: string) => client.db("itest").collection(NOTIFICATIONS).countDocuments({ userId: uid, type: "low_balance" });

  it("when available crosses below the threshold three times with hysteresis, then exactly three notifications, none for hovering", async () => {
    const uid = newUid();
    const policy = policyFor(20); // re-arms at 25
    const mongo = client.db("itest");
    const deps = { db: db(), notify: (input: Parameters<typeof notify>[1]) => notify({ mongo }, input) };
    // available per ledger version: 100 → 19 (cross 1) → 22 → 18 (hovering, no re-arm) → 30 (re-arm) → 10 (cross 2) → 26 → 5 (cross 3)
    const series = [100, 19, 22, 18, 30, 10, 26, 5];
    let sent = 0;
    for (const [index, available] of series.entries()) sent += await observeBalance(deps, uid, available, index + 1, policy);
    assert.equal(sent, 3);
    assert.equal(await count(uid), 3);
  });

  it("when the same and older versions are delivered again, out of order, then no further notification", async () => {
    const uid = newUid();
    const policy = policyFor(20);
    const mongo = client.db("itest");
    const deps = { db: db(), notify: (input: Parameters<typeof notify>[1]) => notify({ mongo }, input) };
    await observeBalance(deps, uid, 100, 1, policy);
    await observeBalance(deps, uid, 10, 2, policy);
    for (const [available, version] of [[10, 2], [100, 1], [10, 2], [100, 1]]) await observeBalance(deps, uid, available, version, policy);
    await Promise.all([observeBalance(deps, uid, 10, 2, policy), observeBalance(deps, uid, 10, 2, policy)]);
    assert.equal(await count(uid), 1);
  });

  it("when notifying failed after the crossing was counted, then the next delivery sends it (none lost, none doubled)", async () => {
    const uid = newUid();
    const policy = policyFor(20);
    const mongo = client.db("itest");
    let fail = true;
    const deps = {
      db: db(),
      notify: async (input: Parameters<typeof notify>[1]) => {
        if (fail) throw new Error("mongo unavailable");
        return notify({ mongo }, input);
      },
    };
    await observeBalance(deps, uid, 100, 1, policy);
    await assert.rejects(observeBalance(deps, uid, 5, 2, policy), /mongo unavailable/);
    fail = false;
    assert.equal(await observeBalance(deps, uid, 5, 2, policy), 1, "the redelivery sends the pending notification");
    assert.equal(await observeBalance(deps, uid, 5, 2, policy), 0);
    assert.equal(await count(uid), 1);
  });
});
