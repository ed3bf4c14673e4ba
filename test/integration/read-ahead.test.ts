/**
 * shared/read-ahead.ts against the Firestore emulator: documents read ahead
 * (through the transaction, so they guard its commit like any of its reads)
 * are answered from memory later, and only the rest are read.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { DocumentReference } from "firebase-admin/firestore";
import { readAhead } from "../../functions/src/shared/read-ahead";
import { db } from "../support/credits";

describe("integration: a transaction that reads ahead", function () {
  this.timeout(60_000);
  const doc = async (data: Record<string, unknown> | null): Promise<DocumentReference> => {
    const ref = db().collection("read_ahead_test").doc(randomUUID());
    if (data) await ref.set(data);
    return ref;
  };
  /** Counts the getAll calls that reach Firestore (the transaction's own, under the proxy). */
  const counted = <T extends object>(tx: T, calls: string[][]) =>
    new Proxy(tx, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (property !== "getAll" || typeof value !== "function") return value;
        return (...refs: DocumentReference[]) => {
          calls.push(refs.map((ref) => ref.id));
          return (value as (...all: DocumentReference[]) => unknown).apply(target, refs);
        };
      },
    });

  it("when documents were read ahead, then later reads of them need no round trip and the rest are read once", async () => {
    const [a, b, c, missing] = [await doc({ n: 1 }), await doc({ n: 2 }), await doc({ n: 3 }), await doc(null)];
    const calls: string[][] = [];
    const read = await db().runTransaction(async (started) => {
      calls.length = 0;
      const { tx, snapshots } = await readAhead(counted(started, calls), [a, missing, a]);
      assert.deepEqual(
        snapshots.map((snapshot) => snapshot.exists),
        [true, false, true],
      );
      const [again, other, stillMissing] = await tx.getAll(a, b, missing);
      const single = await tx.get(c);
      tx.update(a, { n: Number(again.get("n")) + Number(other.get("n")) + Number(single.get("n")) });
      return { again: again === snapshots[0], stillMissing: stillMissing.exists };
    });
    assert.deepEqual(read, { again: true, stillMissing: false });
    // The read ahead (a and the missing one, once each), then only b: c went through `get`, not counted here.
    assert.deepEqual(calls, [[a.id, missing.id], [b.id]]);
    assert.equal((await a.get()).get("n"), 6);
  });
});
