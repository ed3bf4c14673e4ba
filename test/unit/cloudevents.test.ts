import assert from "node:assert/strict";
import { deltaBetween } from "../../scripts/harness/cloudevents";
import { changedPaths } from "../../scripts/harness/triggers";
/** firebase-functions' own merge, to check our deltas round-trip through it. */
import { applyChange } from "../../functions/node_modules/firebase-functions/lib/common/utilities/utils";

describe("unit: CloudEvent deltas for RTDB triggers", () => {
  const cases: Array<[string, unknown, unknown]> = [
    ["create", null, { a: 1, b: { c: 2 } }],
    ["delete", { a: 1 }, null],
    ["nested key removed", { a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 2 } }],
    ["scalar to object", 5, { x: 1 }],
    ["object to scalar", { x: 1 }, "done"],
  ];
  for (const [name, before, after] of cases) {
    it(`when the change is "${name}", then firebase-functions rebuilds the after value from before + delta`, () => {
      assert.deepEqual(applyChange(before, deltaBetween(before, after)) ?? null, after);
    });
  }

  it("when a tree changes, then only the changed paths at the pattern depth are reported", () => {
    const before = { u1: { op1: { s: 1 }, op2: { s: 1 } }, u2: { op1: { s: 1 } } };
    const after = { u1: { op1: { s: 1 }, op2: { s: 2 } }, u3: { op9: { s: 1 } } };
    const changes = changedPaths(before, after, 2)
      .map((change) => change.path.join("/"))
      .sort();
    assert.deepEqual(changes, ["u1/op2", "u2/op1", "u3/op9"]);
  });
});
