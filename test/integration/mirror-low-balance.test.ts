/**
 * Low-balance notifications across a series of crossings, with hysteresis, on a
 * real ledger (Firestore) and the MongoDB wire server; each change is judged on
 * its own before/after pair, delivered in any order.
 */
import assert from "node:assert/strict";
import { MongoClient, MongoNetworkError } from "../../functions/node_modules/mongodb";
import { adjustCredits, grantCredits } from "../../functions/src/credits/operations";
import { observeBalance, policyFor, type BalancePoint } from "../../functions/src/mirror/low-balance";
import { notify, NOTIFICATIONS } from "../../functions/src/notifications/notifications";
import { db, ledgerOf } from "../support/credits";
import { seededRandom } from "../support/random";
import "../support/stores"; // its root hook releases the Firebase clients so mocha can exit
import { newUid, suite } from "../support/suite";

/** One users/{uid} change as the trigger sees it. */
interface Change {
  before: BalancePoint | undefined;
  after: BalancePoint;
}

/** Moves the user's available credits through `series` with real ledger changes; returns each change's before/after. */
async function history(uid: string, series: number[]): Promise<Change[]> {
  let current = 0;
  for (const [step, target] of series.entries()) {
    const input = { user_id: uid, reason: "low-balance test", idempotency_key: `${uid}-${step}` };
    if (target > current)
      await grantCredits({ db: db() }, "test", { ...input, amount: target - current, type: "grant" });
    else await adjustCredits({ db: db() }, "test", { ...input, amount: target - current });
    current = target;
  }
  const points = (await ledgerOf(uid)).map((entry) => ({
    available: Number(entry.balance_after) - Number(entry.held_after),
    version: Number(entry.ledger_version),
  }));
  return points.map((after, index) => ({ before: points[index - 1], after }));
}

describe("integration: low-balance notifications", function () {
  this.timeout(60_000);
  let client: MongoClient;
  before(async () => {
    client = await new MongoClient(suite.mongoUri, { serverSelectionTimeoutMS: 5000 }).connect();
  });
  after(() => client.close());

  const policy = policyFor(20); // re-arms at 25
  // available per ledger version: 100 → 19 (cross, v2) → 22 → 18 (hovering, no re-arm) → 30 (re-arm) → 10 (cross, v6) → 26 → 5 (cross, v8)
  const series = [100, 19, 22, 18, 30, 10, 26, 5];
  const crossings = (uid: string) => [2, 6, 8].map((version) => `low_balance:${uid}:v${version}`);

  const deps = (notifyFails = () => false) => ({
    db: db(),
    notify: async (input: Parameters<typeof notify>[1]) => {
      if (notifyFails()) throw new Error("mongo unavailable");
      return notify({ mongo: client.db("itest") }, input);
    },
  });
  const sent = async (uid: string) =>
    (await client.db("itest").collection(NOTIFICATIONS).find({ userId: uid, type: "low_balance" }).toArray())
      .map((doc) => doc.dedupeKey as string)
      .sort();

  it("when available crosses below the threshold three times with hysteresis, then exactly three notifications, none for hovering", async () => {
    const uid = newUid();
    let created = 0;
    for (const change of await history(uid, series))
      created += await observeBalance(deps(), uid, change.before, change.after, policy);
    assert.equal(created, 3);
    assert.deepEqual(await sent(uid), crossings(uid).sort());
  });

  it("when the changes are delivered shuffled, with duplicates and concurrently, then the same three crossings notify, once each", async () => {
    const uid = newUid();
    const changes = await history(uid, series);
    const random = seededRandom(Number(process.env.MIRROR_SEED ?? 7));
    const deliveries = changes.flatMap((change) => [change, change]);
    for (let i = deliveries.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [deliveries[i], deliveries[j]] = [deliveries[j], deliveries[i]];
    }
    await Promise.all(deliveries.map((change) => observeBalance(deps(), uid, change.before, change.after, policy)));
    assert.deepEqual(await sent(uid), crossings(uid).sort());
  });

  it("when the connection drops before or after the server applies the write, then notify retries and the notification is stored once", async () => {
    const uid = newUid();
    for (const lostReply of [false, true]) {
      let dropped = false;
      // The real database, whose next notification write loses its connection
      // before the request (lostReply false) or after the server applied it.
      const flaky = new Proxy(client.db("itest"), {
        get(target, property, receiver) {
          if (property !== "collection") return Reflect.get(target, property, receiver) as unknown;
          return (name: string) => {
            const collection = target.collection(name);
            return new Proxy(collection, {
              get(inner, key, innerReceiver) {
                if (key !== "updateOne" || dropped) return Reflect.get(inner, key, innerReceiver) as unknown;
                return async (...args: Parameters<typeof collection.updateOne>) => {
                  dropped = true;
                  if (lostReply) await inner.updateOne(...args);
                  throw new MongoNetworkError("connection reset by peer");
                };
              },
            });
          };
        },
      });
      const dedupeKey = `low_balance:${uid}:lost-${lostReply}`;
      const input = {
        userId: uid,
        type: "low_balance",
        toastMessage: "Low",
        urgency: "normal" as const,
        persistent: false,
        dedupeKey,
      };
      await notify({ mongo: flaky }, input);
      assert.ok(dropped, "the fault was injected");
      assert.equal(await client.db("itest").collection(NOTIFICATIONS).countDocuments({ dedupeKey }), 1);
    }
  });

  it("when a dip and the recovery arrive recovery first, then the dip still notifies once", async () => {
    const uid = newUid();
    const [, dip, recovery] = await history(uid, [100, 10, 100]);
    assert.equal(await observeBalance(deps(), uid, recovery.before, recovery.after, policy), 0);
    assert.equal(await observeBalance(deps(), uid, dip.before, dip.after, policy), 1);
    assert.equal(await observeBalance(deps(), uid, dip.before, dip.after, policy), 0, "a redelivery");
    assert.deepEqual(await sent(uid), [`low_balance:${uid}:v2`]);
  });

  it("when a write leaves the ledger version as it was (a console edit below the threshold), then it is no crossing", async () => {
    const uid = newUid();
    const [first] = await history(uid, [100]);
    assert.equal(
      await observeBalance(deps(), uid, first.after, { available: 3, version: first.after.version }, policy),
      0,
    );
    assert.deepEqual(await sent(uid), []);
  });

  it("when notifying failed, then the redelivery sends it (none lost, none doubled)", async () => {
    const uid = newUid();
    const [, dip] = await history(uid, [100, 5]);
    let fail = true;
    await assert.rejects(
      observeBalance(
        deps(() => fail),
        uid,
        dip.before,
        dip.after,
        policy,
      ),
      /mongo unavailable/,
    );
    fail = false;
    assert.equal(
      await observeBalance(
        deps(() => fail),
        uid,
        dip.before,
        dip.after,
        policy,
      ),
      1,
      "the redelivery sends the notification",
    );
    assert.equal(
      await observeBalance(
        deps(() => fail),
        uid,
        dip.before,
        dip.after,
        policy,
      ),
      0,
    );
    assert.deepEqual(await sent(uid), [`low_balance:${uid}:v2`]);
  });
});
