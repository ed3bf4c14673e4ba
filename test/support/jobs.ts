/** Test helpers for jobs: reading jobs, the hold-settled-once check, and report posting. */
import assert from "node:assert/strict";
import { assertLedgerInvariants, db, ledgerOf } from "./credits";
import { env, suite } from "./suite";

export async function jobDoc(jobId: string): Promise<Record<string, unknown>> {
  const snapshot = await db().collection("jobs").doc(jobId).get();
  assert.ok(snapshot.exists, `job ${jobId} exists`);
  return snapshot.data() ?? {};
}

/**
 * Invariants 1, 5 and 10 for one user: the ledger invariants, then for every
 * job: exactly one hold entry; a final job's hold is settled by exactly one
 * capture/release/expire entry (capture ≤ hold), a `succeeded` job's by one
 * capture equal to its recorded cost; an open job's hold is open.
 */
export async function assertJobInvariants(uid: string): Promise<void> {
  await assertLedgerInvariants(uid);
  const [jobs, ledger] = await Promise.all([db().collection("jobs").where("user_id", "==", uid).get(), ledgerOf(uid)]);
  for (const job of jobs.docs) {
    const data = job.data();
    const holdId = String(data.hold_id);
    const entries = ledger.filter((entry) => entry.hold_id === holdId);
    const placed = entries.filter((entry) => entry.type === "hold");
    const settled = entries.filter(
      (entry) => entry.type === "capture" || entry.type === "release" || entry.type === "expire",
    );
    assert.equal(placed.length, 1, `job ${job.id}: one hold entry`);
    assert.equal(placed[0].held_delta, data.price, `job ${job.id}: hold of the job's price`);
    const hold = (await db().collection("credit_holds").doc(holdId).get()).data() ?? {};
    if (["succeeded", "failed", "cancelled"].includes(String(data.status))) {
      assert.equal(settled.length, 1, `job ${job.id} (${String(data.status)}): hold settled exactly once`);
      // A failure releases the hold, or expires it when the hold's expiry is what failed the job.
      const expected =
        data.status === "succeeded" ? ["capture"] : data.status === "failed" ? ["release", "expire"] : ["release"];
      assert.ok(
        expected.includes(String(settled[0].type)),
        `job ${job.id}: ${expected.join("/")} for ${String(data.status)}, not ${String(settled[0].type)}`,
      );
      const holdStatus = { capture: "captured", release: "released", expire: "expired" }[String(settled[0].type)];
      assert.equal(hold.status, holdStatus);
      assert.ok(-Number(settled[0].amount) <= Number(data.price), `job ${job.id}: capture ≤ hold`);
      assert.equal(0 - Number(settled[0].amount), Number(data.cost), `job ${job.id}: captured = job cost`);
    } else {
      assert.equal(settled.length, 0, `job ${job.id} (${String(data.status)}): hold not settled yet`);
      assert.equal(hold.status, "open");
    }
  }
}

/** POSTs a report to the jobReport endpoint with the worker key (or `key`). */
export async function postReport(
  body: unknown,
  key = env("WORKER_API_KEY"),
): Promise<{
  status: number;
  json: {
    result?: { applied: boolean; status: string; final: boolean };
    error?: { status: string; details?: unknown };
  };
}> {
  const response = await fetch(`${suite.functionsBaseUrl}/jobReport`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, json: (await response.json()) as never };
}
