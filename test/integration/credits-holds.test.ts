/** Holds against the Firestore emulator, through the credits use cases (no functions emulator needed). */
import assert from "node:assert/strict";
import { readAccount } from "../../functions/src/credits/ledger";
import { placeHold, releaseExpiredHold, settleHold } from "../../functions/src/credits/holds";
import { assertLedgerInvariants, db, fund, ledgerOf } from "../support/credits";
import { newUid } from "../support/suite";

async function hold(
  uid: string,
  holdId: string,
  amount: number,
  expiresAt = new Date(Date.now() + 3_600_000),
  jobId: string | null = `job-${holdId}`,
) {
  return db().runTransaction(async (tx) => {
    const account = await readAccount(tx, db(), uid);
    return placeHold(tx, db(), account, {
      holdId,
      amount,
      expiresAt,
      actor: "test",
      reason: "job",
      idempotencyKey: `hold:${holdId}`,
      jobId: jobId ?? undefined,
    });
  });
}

describe("integration: credit holds", () => {
  it("when a hold is placed, then available drops, balance does not, and credits_held = Σ open holds", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const posted = await hold(uid, `${uid}-h1`, 30);
    assert.deepEqual([posted.balance, posted.held, posted.available], [100, 30, 70]);
    await assertLedgerInvariants(uid);
  });

  it("when a hold exceeds what is available, then failed-precondition and nothing is written", async () => {
    const uid = newUid();
    await fund(uid, 50);
    await hold(uid, `${uid}-h1`, 40);
    await assert.rejects(
      hold(uid, `${uid}-h2`, 11),
      (error: Error & { code?: string; details?: { available: number; required: number } }) => {
        assert.equal(error.code, "failed-precondition");
        assert.deepEqual(error.details?.available, 10);
        assert.deepEqual(error.details?.required, 11);
        return true;
      },
    );
    assert.equal((await db().collection("credit_holds").doc(`${uid}-h2`).get()).exists, false);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.entries, 2);
  });

  it("when a hold is captured for less than it reserved, then the cost is taken and the rest released, once", async () => {
    const uid = newUid();
    await fund(uid, 100);
    await hold(uid, `${uid}-h`, 40);
    const first = await settleHold(db(), `${uid}-h`, { kind: "capture", cost: 25 }, "test", "done");
    assert.equal(first.settled, true);
    assert.deepEqual([first.posted?.balance, first.posted?.held], [75, 0]);
    // Any second settlement, of any kind, finds it settled and writes nothing.
    for (const settlement of [{ kind: "capture", cost: 25 }, { kind: "release" }, { kind: "expire" }] as const) {
      const again = await settleHold(db(), `${uid}-h`, settlement, "test", "duplicate");
      assert.deepEqual([again.settled, again.status], [false, "captured"]);
    }
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 75);
    assert.deepEqual(
      (await ledgerOf(uid)).map((e) => e.type),
      ["grant", "hold", "capture"],
    );
  });

  it("when settlements of one hold race, then exactly one wins", async () => {
    const uid = newUid();
    await fund(uid, 100);
    await hold(uid, `${uid}-h`, 60);
    const results = await Promise.all([
      settleHold(db(), `${uid}-h`, { kind: "capture", cost: 60 }, "test", "a"),
      settleHold(db(), `${uid}-h`, { kind: "release" }, "test", "b"),
      settleHold(db(), `${uid}-h`, { kind: "capture", cost: 10 }, "test", "c"),
      settleHold(db(), `${uid}-h`, { kind: "release" }, "test", "d"),
    ]);
    assert.equal(results.filter((r) => r.settled).length, 1);
    await assertLedgerInvariants(uid);
  });

  it("when a capture exceeds the hold, then it is refused and the hold stays open", async () => {
    const uid = newUid();
    await fund(uid, 100);
    await hold(uid, `${uid}-h`, 20);
    await assert.rejects(
      settleHold(db(), `${uid}-h`, { kind: "capture", cost: 21 }, "test", "x"),
      /between 0 and the hold/,
    );
    assert.equal((await db().collection("credit_holds").doc(`${uid}-h`).get()).get("status"), "open");
    await assertLedgerInvariants(uid);
  });

  it("when a hold without a job is past expires_at, then releaseExpiredHold returns it to available with an expire entry; before that it does nothing", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const expiresAt = new Date("2030-01-01T00:00:00Z");
    await hold(uid, `${uid}-h`, 30, expiresAt, null);
    const early = await releaseExpiredHold(db(), `${uid}-h`, { now: () => new Date(expiresAt.getTime() - 1) });
    assert.equal(early.settled, false);
    const due = await releaseExpiredHold(db(), `${uid}-h`, { now: () => new Date(expiresAt.getTime() + 1) });
    assert.equal(due.settled, true);
    assert.deepEqual([due.posted?.balance, due.posted?.held, due.posted?.available], [100, 0, 100]);
    assert.equal((await db().collection("credit_holds").doc(`${uid}-h`).get()).get("status"), "expired");
    await assertLedgerInvariants(uid);
  });

  it("when a job's hold is past expires_at, then releaseExpiredHold refuses it (the jobs module settles it with its job) and writes nothing", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const expiresAt = new Date("2030-01-01T00:00:00Z");
    await hold(uid, `${uid}-h`, 30, expiresAt, `job-${uid}`);
    await assert.rejects(
      releaseExpiredHold(db(), `${uid}-h`, { now: () => new Date(expiresAt.getTime() + 1) }),
      (error: Error & { code?: string; details?: { reason: string } }) => {
        assert.equal(error.code, "failed-precondition");
        assert.equal(error.details?.reason, "hold-owned-by-job");
        return true;
      },
    );
    assert.equal((await db().collection("credit_holds").doc(`${uid}-h`).get()).get("status"), "open");
    assert.deepEqual(
      (await ledgerOf(uid)).map((e) => e.type),
      ["grant", "hold"],
    );
    await assertLedgerInvariants(uid);
  });
});
