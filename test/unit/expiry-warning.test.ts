import assert from "node:assert/strict";
import { observeExpiring } from "../../functions/src/mirror/low-balance";
import type { NotificationInput } from "../../functions/src/notifications/notifications";

const DAY = 86_400_000;

describe("unit: warning of credits about to expire", () => {
  const now = new Date("2031-05-10T00:00:00Z");
  const sent: NotificationInput[] = [];
  const keys = new Set<string>();
  const deps = {
    notify: (input: NotificationInput) => {
      sent.push(input);
      const created = !keys.has(String(input.dedupeKey));
      keys.add(String(input.dedupeKey));
      return Promise.resolve({ created });
    },
  };

  beforeEach(() => {
    sent.length = 0;
    keys.clear();
  });

  it("when credits worth the threshold expire within 3 days, then the user is warned once per expiry", async () => {
    const next = { amount: 20, at: now.getTime() + 2 * DAY };
    assert.equal(await observeExpiring(deps, "u", next, now, 20), 1);
    assert.equal(await observeExpiring(deps, "u", next, now, 20), 0, "the same expiry seen again");
    assert.equal(sent[0].type, "credits-expiring");
    assert.equal(sent[0].dedupeKey, `credits_expiring:u:${next.at}`);
  });

  it("when the expiry is further than 3 days, past, or worth less than the threshold, then nothing is sent", async () => {
    assert.equal(await observeExpiring(deps, "u", { amount: 50, at: now.getTime() + 3 * DAY + 1 }, now, 20), 0);
    assert.equal(await observeExpiring(deps, "u", { amount: 50, at: now.getTime() }, now, 20), 0);
    assert.equal(await observeExpiring(deps, "u", { amount: 19, at: now.getTime() + DAY }, now, 20), 0);
    assert.equal(await observeExpiring(deps, "u", null, now, 20), 0);
    assert.equal(sent.length, 0);
  });
});

describe("unit: the indexes of the lot views", () => {
  const file = require("../../firestore.indexes.json") as {
    indexes: Array<{ collectionGroup: string; fields: Array<{ fieldPath: string; order: string }> }>;
  };
  const declared = (fields: string[]) =>
    file.indexes.some(
      (index) =>
        index.collectionGroup === "credit_lots" &&
        index.fields.map((field) => `${field.fieldPath} ${field.order}`).join() === fields.join(),
    );

  it("when the hourly pass reads lots expiring soon, then (status, expires_at, user_id) is declared", () => {
    assert.ok(declared(["status ASCENDING", "expires_at ASCENDING", "user_id ASCENDING"]));
  });

  it("when getBalance summarises a user's lots by expiry, then (user_id, status, expires_at) is declared", () => {
    assert.ok(declared(["user_id ASCENDING", "status ASCENDING", "expires_at ASCENDING"]));
  });
});
