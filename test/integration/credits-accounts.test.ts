/**
 * Accounts against the Firestore emulator: a deleted user's account is closed
 * (jobs failed, holds released, ledger kept) and re-opened with its ledger
 * continuing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { placeHold } from "../../functions/src/credits/holds";
import { closeAccount } from "../../functions/src/credits/closure";
import { jobFailer } from "../../functions/src/jobs/finish";
import { readAccount } from "../../functions/src/credits/ledger";
import { adjustCredits, grantCredits, spendCredits } from "../../functions/src/credits/operations";
import { createJob } from "../../functions/src/jobs/create";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { db, fund, ledgerOf } from "../support/credits";
import { newUid } from "../support/suite";

async function looseHold(uid: string, holdId: string, amount: number): Promise<void> {
  await db().runTransaction(async (tx) => {
    const account = await readAccount(tx, db(), uid);
    await placeHold(tx, db(), account, {
      holdId,
      amount,
      expiresAt: new Date(Date.now() + 3_600_000),
      actor: "test",
      reason: "no job",
      idempotencyKey: `hold:${holdId}`,
    });
  });
}

function grant(uid: string, amount: number, admin = "test-admin", key = `g-${randomUUID()}`) {
  return grantCredits({ db: db() }, admin, {
    user_id: uid,
    amount,
    type: "grant",
    reason: "test",
    idempotency_key: key,
  });
}

describe("integration: closed and re-opened credit accounts", function () {
  this.timeout(60_000);

  it("when a user is deleted with an open job and a hold, then closing fails the job and releases both holds once, without bringing the user back; a grant re-opens it at v(n+1)", async () => {
    const uid = newUid("closed");
    await fund(uid, 100);
    const job = await createJob({ db: db() }, uid, {
      type: "report",
      input: { subject: "Gone", pages: 2 },
      idempotency_key: `j-${randomUUID()}`,
    });
    await looseHold(uid, `${uid}-loose`, 10);
    const before = (await ledgerOf(uid)).length; // grant, hold (job), hold (loose)
    assert.equal(before, 3);

    const closedAtVersion = Number((await db().collection("users").doc(uid).get()).get("ledger_version"));
    await db().collection("users").doc(uid).delete();
    const first = await closeAccount({ db: db(), failJob: jobFailer({ db: db() }) }, uid, closedAtVersion);
    assert.deepEqual(first, { jobsFailed: 1, holdsReleased: 1, errors: [] });
    // A redelivered trigger finds everything settled.
    const again = await closeAccount({ db: db(), failJob: jobFailer({ db: db() }) }, uid, closedAtVersion);
    assert.deepEqual(again, { jobsFailed: 0, holdsReleased: 0, errors: [] });

    assert.equal((await jobDoc(job.job_id)).status, "failed");
    assert.equal(
      (await db().collection("users").doc(uid).get()).exists,
      false,
      "closing must not resurrect the user document",
    );
    const ledger = await ledgerOf(uid);
    assert.deepEqual(
      ledger.map((e) => e.type),
      ["grant", "hold", "hold", "release", "release"],
    );
    assert.deepEqual([ledger[4].balance_after, ledger[4].held_after], [100, 0]);
    await assertJobInvariants(uid);

    const reopened = await grant(uid, 5);
    assert.equal(reopened.transaction_id, `${uid}_v6`);
    assert.deepEqual([reopened.balance, reopened.held, reopened.version], [105, 0, 6]);
    const user = (await db().collection("users").doc(uid).get()).data();
    assert.deepEqual([user?.credits_balance, user?.credits_held, user?.ledger_version], [105, 0, 6]);
    await assertJobInvariants(uid);
  });

  it("when a deleted user spends, creates a job, is held or adjusted, then it is refused as account-closed (nothing written); a grant re-opens it", async () => {
    const uid = newUid("recreated");
    await fund(uid, 50);
    await spendCredits({ db: db() }, uid, { feature: "chat.message", quantity: 3, idempotency_key: "s1" });
    await db().collection("users").doc(uid).delete();

    // A closed account cannot spend, reserve or be adjusted; the refusal says the account is closed (not a
    // shortage: it still holds 47 credits) and writes nothing.
    const closed = (error: Error & { code?: string; details?: unknown }) => {
      assert.equal(error.code, "failed-precondition");
      assert.deepEqual(error.details, { reason: "account-closed", balance: 47 });
      return true;
    };
    await assert.rejects(
      spendCredits({ db: db() }, uid, { feature: "chat.message", quantity: 1, idempotency_key: "s2" }),
      closed,
    );
    await assert.rejects(
      createJob({ db: db() }, uid, { type: "report", input: { subject: "x", pages: 1 }, idempotency_key: "j1" }),
      closed,
    );
    for (const amount of [-5, 5]) {
      await assert.rejects(
        adjustCredits({ db: db() }, "test-admin", {
          user_id: uid,
          amount,
          reason: "fix",
          idempotency_key: `a${amount}`,
        }),
        closed,
      );
    }
    await assert.rejects(looseHold(uid, `${uid}-closed`, 1), closed);
    assert.equal((await ledgerOf(uid)).length, 2, "a refusal writes nothing");
    // Without any account, a spend is still a shortage and an adjustment still has nothing to correct.
    const never = newUid("never");
    await assert.rejects(
      spendCredits({ db: db() }, never, { feature: "chat.message", quantity: 1, idempotency_key: "n1" }),
      (error: Error & { details?: { reason?: string } }) => error.details?.reason === "insufficient-credits",
    );
    await assert.rejects(
      adjustCredits({ db: db() }, "test-admin", { user_id: never, amount: -1, reason: "fix", idempotency_key: "n2" }),
      (error: Error & { code?: string }) => error.code === "not-found",
    );
    const granted = await grant(uid, 10);
    assert.equal(granted.transaction_id, `${uid}_v3`);
    assert.equal(granted.balance, 57);
    const spent = await spendCredits({ db: db() }, uid, {
      feature: "chat.message",
      quantity: 1,
      idempotency_key: "s3",
    });
    assert.equal(spent.version, 4);
    await createJob({ db: db() }, uid, { type: "report", input: { subject: "back", pages: 1 }, idempotency_key: "j2" });
    await assertJobInvariants(uid);
  });

  it("when the deletion event arrives after the account was re-opened, then only work from before the deletion is settled", async () => {
    const uid = newUid("late-delete");
    await fund(uid, 100);
    const old = await createJob({ db: db() }, uid, {
      type: "report",
      input: { subject: "old", pages: 1 },
      idempotency_key: `j-${randomUUID()}`,
    });
    const closedAtVersion = Number((await db().collection("users").doc(uid).get()).get("ledger_version"));
    await db().collection("users").doc(uid).delete();
    await grant(uid, 10);
    const fresh = await createJob({ db: db() }, uid, {
      type: "report",
      input: { subject: "new", pages: 1 },
      idempotency_key: `j-${randomUUID()}`,
    });
    await looseHold(uid, `${uid}-fresh`, 5);

    const result = await closeAccount({ db: db(), failJob: jobFailer({ db: db() }) }, uid, closedAtVersion);
    assert.deepEqual(result, { jobsFailed: 1, holdsReleased: 0, errors: [] });
    assert.equal((await jobDoc(old.job_id)).status, "failed");
    assert.equal((await jobDoc(fresh.job_id)).status, "queued");
    assert.equal((await db().collection("credit_holds").doc(`${uid}-fresh`).get()).get("status"), "open");
    await assertJobInvariants(uid);
  });
});
