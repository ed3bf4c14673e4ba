/**
 * The spend callable's Redis work folded around the ledger transaction (credits/spend.ts): the rate limit
 * and the user lock's first try are one script, the release and the balance cache fill one pipeline.
 * Real redis-server and Firestore emulator; a gateway to nowhere for "Redis down".
 */
import assert from "node:assert/strict";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { IdempotencyKeyReused, RateLimited } from "../../functions/src/credits/errors";
import { forgetCommitted, NotRemembered, recallCommitted } from "../../functions/src/credits/committed-state";
import { grantCredits, spendCredits } from "../../functions/src/credits/operations";
import { configureAutoTopUp, TOPUPS, topUpId } from "../../functions/src/credits/topup";
import { RateLimiter, rateKeyOf } from "../../functions/src/credits/rate-limit";
import { spendAsUser } from "../../functions/src/credits/spend";
import { lastHolderKeyOf, lockKeyOf, THIS_INSTANCE, withUserLock } from "../../functions/src/credits/user-lock";
import { balanceKey } from "../../functions/src/mirror/cache";
import { assertLedgerInvariants, assertRememberedAsStored, db, fund, grantLot, ledgerOf } from "../support/credits";
import {
  downRedisGateway as downGateway,
  liveRedisGateway as liveGateway,
  otherInstanceFirestore,
  unwatchedFirestore,
} from "../support/stores";
import { watchRpcs } from "../support/rpcs";
import { newUid, suite, waitFor } from "../support/suite";

const spendInput = (key: string) => ({ feature: "chat.message", quantity: 1, idempotency_key: key });

describe("integration: the spend path's folded Redis round trips", function () {
  this.timeout(60_000);
  let redis: RedisGateway;

  beforeEach(() => {
    redis = liveGateway();
  });
  afterEach(async () => {
    await redis.close();
  });

  it("when another instance released the user's lock last, then the spend reads before it commits; once this one has, it reads nothing", async () => {
    const uid = newUid("holder");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 100, windowMs: 60_000, fallbackLimit: 100 });
    const spendHere = (key: string) =>
      watchRpcs(db(), () => spendAsUser({ db: db(), redis, limiter }, uid, spendInput(key)));
    await spendHere("a");
    await waitFor(
      "this instance named as the last holder",
      async () => (await redis.run((client) => client.get(lastHolderKeyOf(uid)))) === THIS_INSTANCE,
    );
    // A grant on another instance; its lock's release names that instance (this process is one, so set here).
    await fund(uid, 5, otherInstanceFirestore());
    await redis.run((client) => client.set(lastHolderKeyOf(uid), "another-instance", "PX", 60_000));
    const { sent: afterOther } = await spendHere("b");
    assert.deepEqual(
      afterOther.filter((method) => method !== "runQuery"),
      ["batchGetDocuments", "commit"],
      "no commit from what this instance remembered (it would fail): the spend reads first",
    );
    const { sent: next } = await spendHere("c");
    assert.deepEqual(next, ["commit"], "this instance held the lock last: it reads nothing");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 102);
  });

  it("when a spend succeeds, then the lock is released and the cache holds its version; over the limit, then the spend is refused, writes nothing and takes no lock", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 2, windowMs: 60_000, fallbackLimit: 2 });
    const deps = { db: db(), redis, limiter };

    const first = await spendAsUser(deps, uid, spendInput("a"));
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released");
    const cached = JSON.parse((await redis.run((client) => client.get(balanceKey(uid)))) ?? "null") as {
      version: number;
      available: number;
    };
    assert.deepEqual([cached.version, cached.available], [first.version, first.available]);

    await spendAsUser(deps, uid, spendInput("b"));
    const entriesBefore = (await ledgerOf(uid)).length;
    await refusedWithoutUnhandledRejections(spendAsUser(deps, uid, spendInput("c")));
    assert.equal((await ledgerOf(uid)).length, entriesBefore, "a refused spend writes nothing");
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "a refused spend takes no lock");
    await assertLedgerInvariants(uid);
  });

  it("when another holder has the user's lock, then the spend waits for it without counting against the limit again, and runs once it is released", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 100, windowMs: 60_000, fallbackLimit: 100 });
    await redis.run((client) => client.set(lockKeyOf(uid), "someone-else", "PX", 30_000));

    // The spend's transaction starts while the lock is tried (lockedCreditTransaction): it must not read before
    // it holds the lock. Its reads are batchGetDocuments; this test's own (ledgerOf) are queries.
    const sent: string[] = [];
    let answer: Awaited<ReturnType<typeof spendAsUser>> | undefined;
    const spending = watchRpcs(
      db(),
      async () => (answer = await spendAsUser({ db: db(), redis, limiter }, uid, spendInput("held"))),
      { sent },
    );
    // The first script ran (the limit counted once) and found the lock held: nothing spent yet.
    await waitFor("the gate's first try", async () => (await redis.run((c) => c.get(rateKeyOf("spend", uid)))) === "1");
    assert.equal((await ledgerOf(uid)).length, 1, "only the grant while the lock is held");
    assert.equal(await redis.run((client) => client.get(lockKeyOf(uid))), "someone-else");
    assert.deepEqual(
      sent.filter((method) => method !== "runQuery"),
      [],
      "nothing read or written while another holds the lock",
    );

    await redis.run((client) => client.del(lockKeyOf(uid)));
    await spending;
    const result = answer!;
    assert.equal(result.replayed, false);
    assert.equal(
      await redis.run((client) => client.get(rateKeyOf("spend", uid))),
      "1",
      "the retries took the lock alone",
    );
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.entries, 2);
  });

  it("when a spend is replayed, then it answers the first result and does not put that older state into the cache", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 100, windowMs: 60_000, fallbackLimit: 100 });
    const deps = { db: db(), redis, limiter };
    const first = await spendAsUser(deps, uid, spendInput("once"));
    const second = await spendAsUser(deps, uid, spendInput("twice"));
    const replay = await spendAsUser(deps, uid, spendInput("once"));
    assert.deepEqual([replay.replayed, replay.version], [true, first.version]);
    const cached = JSON.parse((await redis.run((client) => client.get(balanceKey(uid)))) ?? "null") as {
      version: number;
    };
    assert.equal(cached.version, second.version);
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released after a replay");
  });

  it("when Redis holds the lock's release back, then the work's result comes back without waiting for it, and the lock is released once Redis applies it", async () => {
    const uid = newUid("path");
    // A command timeout far beyond the test's: waiting for the release's reply would hang until mocha fails it.
    const patient = new RedisGateway({
      url: suite.redisUrl,
      commandTimeoutMs: 120_000,
      connectWaitMs: 2_000,
      breaker: { failureThreshold: 1000, cooldownMs: 10 },
    });
    try {
      const result = await withUserLock(patient, uid, async (locked) => {
        await locked;
        // Taken; from here Redis holds back every script (CLIENT PAUSE WRITE), so the release waits in Redis.
        assert.ok(await redis.run((client) => client.get(lockKeyOf(uid))));
        await redis.run((client) => client.call("CLIENT", "PAUSE", "30000", "WRITE"));
        return "done";
      });
      assert.equal(result, "done");
      assert.ok(await redis.run((client) => client.get(lockKeyOf(uid))), "the release is still held back in Redis");
      await redis.run((client) => client.call("CLIENT", "UNPAUSE"));
      await waitFor("the release applied", async () => (await redis.run((c) => c.exists(lockKeyOf(uid)))) === 0);
    } finally {
      await redis.run((client) => client.call("CLIENT", "UNPAUSE"));
      await patient.close();
    }
    // Nothing to send on: refused at once, and nothing is asked of Redis.
    const down = downGateway();
    let asked = false;
    assert.equal(
      down.send(async () => {
        asked = true;
      }),
      false,
    );
    assert.equal(asked, false);
  });

  it("when Redis is down, then spends run unlocked on Firestore alone and the per-instance fallback limit refuses past its bound", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const down = downGateway();
    try {
      const limiter = new RateLimiter(down, { limit: 100, windowMs: 60_000, fallbackLimit: 2 });
      const deps = { db: db(), redis: down, limiter };
      await spendAsUser(deps, uid, spendInput("d1"));
      await spendAsUser(deps, uid, spendInput("d2"));
      await refusedWithoutUnhandledRejections(spendAsUser(deps, uid, spendInput("d3")));
      const state = await assertLedgerInvariants(uid);
      assert.equal(state.entries, 3, "the grant and the two spends the fallback allowed");
    } finally {
      await down.close();
    }
  });
});

/**
 * Asserts `spending` is refused as rate limited, and that no promise was rejected unhandled meanwhile: the
 * refusal comes while the transaction waits for the lock (user-lock.ts), and an unhandled rejection ends a
 * Cloud Functions instance.
 */
async function refusedWithoutUnhandledRejections(spending: Promise<unknown>): Promise<void> {
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", record);
  try {
    await assert.rejects(spending, (error: unknown) => {
      assert.ok(error instanceof RateLimited, String(error));
      return true;
    });
    // Node reports an unhandled rejection after the microtasks of the turn it happened in.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off("unhandledRejection", record);
  }
  assert.deepEqual(unhandled, [], "no rejection left unhandled");
}

describe("integration: a spend reads the lots its instance saw last with the account", function () {
  this.timeout(60_000);
  const spend = (uid: string, key: string) => spendCredits({ db: db() }, uid, spendInput(key));

  it("when nothing changed since this instance's last spend of the user but it does not hold their documents, then the next spend reads its lots in the account's getAll: no burn-order query", async () => {
    const uid = newUid("hint");
    for (let lot = 0; lot < 3; lot++)
      await grantLot(uid, 10, { expires_at: new Date(Date.now() + (10 + lot) * 86_400_000).toISOString() });
    const { sent: first } = await watchRpcs(db(), () => spend(uid, "h1"));
    assert.ok(first.includes("runQuery"), `a first spend queries the burn order: ${first.join(", ")}`);
    // As after a spend that ran as a transaction: the hint of the lots is kept, the documents are not.
    forgetCommitted(db(), uid);
    const { sent: second } = await watchRpcs(db(), () => spend(uid, "h2"));
    assert.deepEqual(second, ["batchGetDocuments", "commit"]);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 28);
  });

  it("when a lot that burns earlier is added between two spends, then the second spend draws from it (the hint is not used at the new version)", async () => {
    const uid = newUid("hint");
    const grant = await grantLot(uid, 50);
    const first = await spend(uid, "e1");
    const promo = await grantLot(uid, 5, { source: "promo" });
    const second = await spend(uid, "e2");
    const entries = await ledgerOf(uid);
    const allocationsOf = (id: string) => entries.find((entry) => entry.id === id)?.allocations;
    assert.deepEqual(allocationsOf(first.transaction_id), [{ lot_id: grant.lot_id, amount: -first.amount }]);
    assert.deepEqual(allocationsOf(second.transaction_id), [{ lot_id: promo.lot_id, amount: -second.amount }]);
    await assertLedgerInvariants(uid);
  });

  it("when the hinted lots run out, then the spend pages on from where the hint ended and still follows the burn order", async () => {
    const uid = newUid("hint");
    // 12 one-credit lots of different expiries: the first page holds 10 of them.
    for (let lot = 0; lot < 12; lot++)
      await grantLot(uid, 1, { expires_at: new Date(Date.now() + (10 + lot) * 86_400_000).toISOString() });
    // chat.message costs 1: eleven spends, the last ones past the ten lots the hint holds.
    for (let i = 1; i <= 11; i++) await spend(uid, `p${i}`);
    const entries = await ledgerOf(uid);
    const drawn = entries
      .filter((entry) => entry.type === "spend")
      .flatMap((entry) => (entry.allocations as Array<{ lot_id: string; amount: number }>).map((part) => part.lot_id));
    const expiries = drawn.map((id) => Number(id.split("_").pop()));
    assert.deepEqual(
      expiries,
      [...expiries].sort((a, b) => a - b),
      "lots drawn in burn order across pages",
    );
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 1);
    assert.equal(drawn.length, 11);
  });
});

describe("integration: a spend's first try commits without a transaction, guarded by what it read", function () {
  this.timeout(60_000);
  const spend = (uid: string, key: string) => spendCredits({ db: db() }, uid, spendInput(key));

  it("when nothing changes between its reads and its commit, then a spend commits one guarded batch and no transaction", async () => {
    const uid = newUid("guarded");
    await grantLot(uid, 10);
    await spend(uid, "g0"); // the instance's hint of the user's lots, as a warm instance has it
    forgetCommitted(db(), uid); // ... but not their documents: it reads them
    const { sent } = await watchRpcs(db(), () => spend(uid, "g1"));
    assert.deepEqual(sent, ["batchGetDocuments", "commit"], "one getAll and one commit, neither a transaction's");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 8);
  });

  it("when a lot that burns earlier is granted between the spend's reads and its commit, then the guard fails, nothing of the batch is written, and the transaction decides again: the spend draws from the new lot", async () => {
    const uid = newUid("guarded");
    const grant = await grantLot(uid, 10);
    let promo: Awaited<ReturnType<typeof grantLot>> | undefined;
    let spent: Awaited<ReturnType<typeof spend>> | undefined;
    const { sent, held } = await watchRpcs(
      db(),
      async () => {
        spent = await spend(uid, "r1");
      },
      {
        beforeGuardedCommit: async () => {
          promo = await grantLot(uid, 5, { source: "promo" });
        },
      },
    );
    assert.ok(held, "the guarded commit was held back");
    assert.ok(sent.includes("commit (transaction)"), `the spend ran again as a transaction: ${sent.join(", ")}`);
    assert.ok(spent && promo);
    assert.equal(spent.replayed, false);
    const entries = await ledgerOf(uid);
    assert.deepEqual(
      entries.filter((entry) => entry.type === "spend").map((entry) => entry.allocations),
      [[{ lot_id: promo.lot_id, amount: 1 }]],
      `one spend, from the promo lot that burns first (not ${grant.lot_id})`,
    );
    assert.equal(spent.version, 3, "the grant took version 2, the spend 3");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 14);
  });

  it("when the same request lands between the spend's reads and its commit, then its record's guard fails and the spend answers as a replay of it: one entry", async () => {
    const uid = newUid("guarded");
    await grantLot(uid, 10);
    let first: Awaited<ReturnType<typeof spend>> | undefined;
    let second: Awaited<ReturnType<typeof spend>> | undefined;
    const { held } = await watchRpcs(
      db(),
      async () => {
        first = await spend(uid, "same");
      },
      {
        beforeGuardedCommit: async () => {
          second = await spend(uid, "same");
        },
      },
    );
    assert.ok(held && first && second);
    assert.equal(second.replayed, false, "the request that landed first applied");
    assert.equal(first.replayed, true, "the held-back one found its record");
    assert.equal(first.transaction_id, second.transaction_id);
    assert.equal((await ledgerOf(uid)).filter((entry) => entry.type === "spend").length, 1);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 9);
  });
});

describe("integration: a spend reads what this instance's last spend of the user left, and its commit checks it", function () {
  this.timeout(60_000);
  const spend = (uid: string, key: string, store = db()) => spendCredits({ db: store }, uid, spendInput(key));
  const userDoc = (uid: string, store = db()) => store.collection("users").doc(uid);
  const inFirst = (sent: string[]) => [sent[0], sent.slice(1).filter((method) => method !== "runQuery")];

  it("when nothing changed since, then the next spend reads nothing from Firestore and commits one guarded batch; what it remembered is what Firestore holds", async () => {
    const uid = newUid("remembered");
    for (let lot = 0; lot < 3; lot++)
      await grantLot(uid, 10, { expires_at: new Date(Date.now() + (10 + lot) * 86_400_000).toISOString() });
    await spend(uid, "m1");
    const sameAsStored = async () => {
      const remembered = [...(recallCommitted(db(), userDoc(uid))?.keys() ?? [])];
      assert.ok(remembered.includes(userDoc(uid).path), "the user document is remembered");
      assert.ok(
        remembered.some((path) => path.startsWith("credit_lots/")),
        "and lots",
      );
      assert.equal(await assertRememberedAsStored(uid, db(), true), remembered.length);
      // Only the spend's writes set a field to the server's time here: the user document's and the lot's.
      const user = recallCommitted(db(), userDoc(uid))?.get(userDoc(uid).path)?.data() ?? {};
      assert.throws(() => user.updated_at as unknown, NotRemembered);
    };
    await sameAsStored();
    const { sent } = await watchRpcs(db(), () => spend(uid, "m2"));
    assert.deepEqual(sent, ["commit"], "no read, one commit outside a transaction");
    await sameAsStored();
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 28);
  });

  it("when a lot that burns earlier was granted on another instance since, then the commit fails (the grant took the next entry and moved the user document), and the spend reads afresh and draws from the new lot", async () => {
    const uid = newUid("remembered");
    const grant = await grantLot(uid, 10);
    await spend(uid, "n1");
    const promo = await grantCredits({ db: otherInstanceFirestore() }, "test-admin", {
      user_id: uid,
      amount: 5,
      type: "grant",
      source: "promo",
      reason: "test",
      idempotency_key: `promo-${uid}`,
    });
    const { result: spent, sent } = await watchRpcs(db(), () => spend(uid, "n2"));
    assert.deepEqual(inFirst(sent), ["commit", ["batchGetDocuments", "commit"]], sent.join(", "));
    const entries = await ledgerOf(uid);
    assert.deepEqual(
      entries.find((entry) => entry.id === spent.transaction_id)?.allocations,
      [{ lot_id: promo.lot_id, amount: 1 }],
      `from the promo lot that burns first (not ${grant.lot_id})`,
    );
    assert.equal(spent.version, 4, "grant 1, spend 2, promo 3, this spend 4");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 13);
  });

  it("when the same request was answered on another instance since, then the commit fails, and the spend answers as a replay: one entry", async () => {
    const uid = newUid("remembered");
    await grantLot(uid, 10);
    await spend(uid, "r1");
    const there = await spend(uid, "same", otherInstanceFirestore());
    const { result: here, sent } = await watchRpcs(db(), () => spend(uid, "same"));
    // (A query too: the two clients share this process's hint of the user's lots, which the other moved on.)
    assert.deepEqual(
      sent.filter((method) => method !== "runQuery"),
      ["commit", "batchGetDocuments"],
      "the failed commit, then the read that finds the record",
    );
    assert.equal(here.replayed, true);
    assert.equal(here.transaction_id, there.transaction_id);
    assert.equal((await ledgerOf(uid)).filter((entry) => entry.type === "spend").length, 2);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 8);
  });

  it("when another instance refused a request with this key since (recorded, no ledger change), then the commit fails on the record alone, and the key's reuse with other parameters is refused: nothing charged", async () => {
    const uid = newUid("remembered");
    await grantLot(uid, 10);
    await spend(uid, "k1");
    const refused = spendCredits(
      { db: otherInstanceFirestore() },
      uid,
      { feature: "chat.message", quantity: 50, idempotency_key: "refused" },
      `user:${uid}`,
      { finalRejections: true }, // as the offline queue records a refusal as the key's answer
    );
    await assert.rejects(refused, /Insufficient credits/);
    const { sent, result } = await watchRpcs(db(), () =>
      spend(uid, "refused").then(
        () => "charged",
        (error: unknown) => error,
      ),
    );
    assert.ok(result instanceof IdempotencyKeyReused, String(result));
    // The commit from memory failed; then the reads found the record (a refusal outside a transaction is not
    // final, so the transaction refuses again).
    assert.deepEqual(sent.slice(0, 2), ["commit", "batchGetDocuments"], sent.join(", "));
    assert.equal((await ledgerOf(uid)).filter((entry) => entry.type === "spend").length, 1);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 9);
  });

  it("when a lot it draws from was written on another instance since without a ledger entry (an operator's note), then the commit fails on the lot's update time and the spend reads afresh", async () => {
    const uid = newUid("remembered");
    const grant = await grantLot(uid, 10);
    await spend(uid, "o1");
    await otherInstanceFirestore().collection("credit_lots").doc(grant.lot_id).update({ note: "checked" });
    const { sent } = await watchRpcs(db(), () => spend(uid, "o2"));
    assert.deepEqual(sent, ["commit", "batchGetDocuments", "commit"], "the commit from memory failed; read, committed");
    const lot = (await db().collection("credit_lots").doc(grant.lot_id).get()).data();
    assert.deepEqual([lot?.note, lot?.remaining], ["checked", 8]);
    await assertLedgerInvariants(uid);
  });

  it("when auto top-up was turned on on another instance since (the user document written without a ledger entry), then the commit fails on its update time, and the spend reads afresh and starts the top-up", async () => {
    // A project no trigger watches: the top-up this creates must not be charged by the deployed trigger.
    const store = unwatchedFirestore();
    const uid = newUid("remembered");
    await fund(uid, 100, store);
    await spend(uid, "t1", store);
    await configureAutoTopUp(
      { db: otherInstanceFirestore("unwatched") },
      uid,
      { enabled: true, threshold: 1_000, pack_id: "starter", monthly_cap: 10_000 },
      { credits: 500, amount: 500, currency: "usd", expires_after_days: null, priority: null },
      () => true,
    );
    const { result: spent, sent } = await watchRpcs(store, () => spend(uid, "t2", store));
    assert.equal(sent[0], "commit", sent.join(", "));
    assert.equal(sent.length > 1, true, "the commit from memory did not stand");
    const topUp = await store.collection(TOPUPS).doc(topUpId(uid, spent.version)).get();
    assert.equal(topUp.get("status"), "pending", "the spend saw auto top-up on and started a top-up");
    assert.equal((await userDoc(uid, store).get()).get("auto_topup.pending_topup_id"), topUpId(uid, spent.version));
    await assertLedgerInvariants(uid, store);
  });

  it("when this instance remembers less than the spend reads (a lot it would draw first), then nothing is committed from memory: the spend reads afresh and draws that lot", async () => {
    const uid = newUid("remembered");
    const first = await grantLot(uid, 10, { expires_at: new Date(Date.now() + 10 * 86_400_000).toISOString() });
    await grantLot(uid, 10, { expires_at: new Date(Date.now() + 20 * 86_400_000).toISOString() });
    await spend(uid, "l1");
    const remembered = recallCommitted(db(), userDoc(uid));
    assert.ok(remembered?.delete(`credit_lots/${first.lot_id}`), "the first lot was remembered");
    const { result: spent, sent } = await watchRpcs(db(), () => spend(uid, "l2"));
    // (The try from memory, missing the lot, pages on by query past it, then finds it did not create that lot.)
    assert.deepEqual(
      sent.filter((method) => method !== "runQuery"),
      ["batchGetDocuments", "commit"],
      "no commit from memory: the lot read as missing is not created",
    );
    const entries = await ledgerOf(uid);
    assert.deepEqual(entries.find((entry) => entry.id === spent.transaction_id)?.allocations, [
      { lot_id: first.lot_id, amount: 1 },
    ]);
    await assertLedgerInvariants(uid);
  });
});
