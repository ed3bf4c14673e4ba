/** RTDB queue retention against the RTDB substitute: an entry changed after it was read is never removed (invariant 13). */
import assert from "node:assert/strict";
import { realtimeDb } from "../../functions/src/adapters/firebase";
import { removeIfUnchanged } from "../../functions/src/retention/stores/rtdb";
import { newUid } from "../support/suite";

describe("integration: queue retention removes only what it read", function () {
  this.timeout(60_000);

  it("when a done entry is rewritten after retention read it, then it stays; an unchanged one is removed", async () => {
    const uid = newUid("retention");
    const done = {
      type: "spend",
      feature: "chat.message",
      quantity: 1,
      created_at: 1,
      status: "applied",
      result: { balance: 1 },
      processed_at: 1,
    };
    const root = realtimeDb().ref(`operation_queues/${uid}`);
    await root.set({ kept: done, gone: done });
    const read = (await root.once("value")).val() as Record<string, unknown>;

    // After the read: the client queues a new op under the same id.
    const requeued = { type: "spend", feature: "chat.message", quantity: 2, created_at: 2 };
    await root.child("kept").set(requeued);

    assert.equal(await removeIfUnchanged(root.child("kept"), read.kept), false);
    assert.equal(await removeIfUnchanged(root.child("gone"), read.gone), true);
    assert.deepEqual((await root.once("value")).val(), { kept: requeued });
  });
});
