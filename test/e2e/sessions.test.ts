/** Session and notification callables through the functions emulator: auth, validation, ownership. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { notify } from "../../functions/src/notifications/notifications";
import { closeTestMongo, testMongo } from "../support/mongo";
import { callFunction, newUid } from "../support/suite";

describe("e2e: session and notification callables", function () {
  this.timeout(60_000);
  after(() => closeTestMongo());

  it("when signed out, then unauthenticated; with bad input, then invalid-argument", async () => {
    assert.equal((await callFunction("listSessions", {})).error?.status, "UNAUTHENTICATED");
    const uid = newUid("e");
    assert.equal((await callFunction("createSession", { name: "" }, { uid })).error?.status, "INVALID_ARGUMENT");
    assert.equal(
      (await callFunction("renameSession", { session_id: "nope", name: "x" }, { uid })).error?.status,
      "INVALID_ARGUMENT",
    );
    assert.equal(
      (await callFunction("createSession", { name: "x", userId: "someone" }, { uid })).error?.status,
      "INVALID_ARGUMENT",
    );
  });

  it("when a user manages sessions and notifications, then they see and change only their own", async () => {
    const uid = newUid("e");
    const mallory = newUid("e");
    const created = await callFunction<{ id: string; name: string }>("createSession", { name: "My show" }, { uid });
    assert.ok(created.result, JSON.stringify(created.error));
    const stolen = await callFunction(
      "renameSession",
      { session_id: created.result.id, name: "Mine now" },
      { uid: mallory },
    );
    assert.equal(stolen.error?.status, "NOT_FOUND");
    const renamed = await callFunction<{ name: string }>(
      "renameSession",
      { session_id: created.result.id, name: "My show, v2" },
      { uid },
    );
    assert.equal(renamed.result?.name, "My show, v2");
    const mine = await callFunction<{ items: Array<{ id: string }> }>("listSessions", { limit: 5 }, { uid });
    assert.deepEqual(
      mine.result?.items.map((item) => item.id),
      [created.result.id],
    );
    assert.deepEqual(
      (await callFunction<{ items: unknown[] }>("listSessions", {}, { uid: mallory })).result?.items,
      [],
    );
    assert.deepEqual((await callFunction("deleteSession", { session_id: created.result.id }, { uid })).result, {
      deleted: true,
    });

    const { id } = await notify(
      { mongo: await testMongo() },
      {
        userId: uid,
        type: "job_succeeded",
        toastMessage: "ready",
        urgency: "normal",
        persistent: false,
        dedupeKey: `e2e:${randomUUID()}`,
      },
    );
    assert.deepEqual((await callFunction("markNotificationsSeen", { ids: [id] }, { uid: mallory })).result, {
      updated: 0,
    });
    const unseen = await callFunction<{ items: Array<{ id: string }> }>(
      "listNotifications",
      { unseen_only: true },
      { uid },
    );
    assert.deepEqual(
      unseen.result?.items.map((item) => item.id),
      [id],
    );
    assert.deepEqual((await callFunction("markNotificationsSeen", { ids: [id] }, { uid })).result, { updated: 1 });
    assert.deepEqual(
      (await callFunction<{ items: unknown[] }>("listNotifications", { unseen_only: true }, { uid })).result?.items,
      [],
    );
  });
});
