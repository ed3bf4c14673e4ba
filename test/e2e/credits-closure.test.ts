/**
 * Deleting a user through Firestore fires onUserDeleted in the functions
 * emulator: the user's open job fails, holds are released once, the user
 * document stays deleted, and a later grant continues the ledger.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createJob } from "../../functions/src/jobs/create";
import { assertLedgerInvariants, db, fund, ledgerOf } from "../support/credits";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { callFunction, newUid, waitFor } from "../support/suite";

describe("e2e: deleting a user closes the credit account (Firestore trigger)", function () {
  this.timeout(120_000);

  it("when users/{uid} is deleted with an open job, then the job fails, its hold is released once, and an admin grant re-opens the account at v(n+1)", async () => {
    const uid = newUid("deleted");
    await fund(uid, 80);
    const job = await createJob({ db: db() }, uid, {
      type: "report",
      input: { subject: "Gone", pages: 2 },
      idempotency_key: `j-${randomUUID()}`,
    });
    await db().collection("users").doc(uid).delete();

    await waitFor("job failed by onUserDeleted", async () =>
      (await jobDoc(job.job_id)).status === "failed" ? true : undefined,
    );
    const ledger = await ledgerOf(uid);
    assert.deepEqual(
      ledger.map((e) => e.type),
      ["grant", "hold", "release"],
    );
    assert.equal(
      (await db().collection("users").doc(uid).get()).exists,
      false,
      "the trigger must not resurrect the user",
    );
    await assertJobInvariants(uid);

    const granted = await callFunction<{ transaction_id: string; balance: number }>(
      "grantCredits",
      { user_id: uid, amount: 20, reason: "welcome back", idempotency_key: `back-${randomUUID()}` },
      { uid: "e2e-admin", claims: { admin: true } },
    );
    assert.equal(granted.error, undefined, JSON.stringify(granted.error));
    assert.equal(granted.result?.transaction_id, `${uid}_v4`);
    assert.equal(granted.result?.balance, 100);
    await assertLedgerInvariants(uid);
  });
});
