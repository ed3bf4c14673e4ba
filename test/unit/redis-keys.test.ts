/**
 * The keys one Lua script touches together must live in one Redis Cluster slot:
 * the spend's rate-limit window, the user's ledger lock and its last holder
 * (rate-limit.ts WINDOW_AND_LOCK_SCRIPT, user-lock.ts RELEASE_SCRIPT). Redis hashes only a key's hash tag when it has one
 * (the text between its first "{" and the first "}" after it, if not empty),
 * so equal tags mean one slot.
 */
import assert from "node:assert/strict";
import { rateKeyOf } from "../../functions/src/credits/rate-limit";
import { lastHolderKeyOf, lockKeyOf } from "../../functions/src/credits/user-lock";

/** What Redis Cluster hashes of `key` (the cluster specification's rule). */
function hashedPart(key: string): string {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

describe("unit: Redis keys used together share a cluster slot", () => {
  it("when a user's spend window, ledger lock and its last holder are named, then all hash the user id alone, whatever it holds", () => {
    for (const uid of ["u1", "Xy7PqR2sT9vW0aB3cD4eF5gH6iJ7", "with}brace", "{braced}", "a:b:c", "é-ü"]) {
      const window = rateKeyOf("spend", uid);
      const lock = lockKeyOf(uid);
      const lastHolder = lastHolderKeyOf(uid);
      assert.equal(new Set([window, lock, lastHolder]).size, 3);
      assert.equal(hashedPart(window), hashedPart(lock), `${uid}: ${window} and ${lock} hash differently`);
      assert.equal(hashedPart(lastHolder), hashedPart(lock), `${uid}: ${lastHolder} and ${lock} hash differently`);
    }
    assert.equal(hashedPart(lockKeyOf("u1")), "u1");
  });
});
