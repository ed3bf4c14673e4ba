/**
 * Sessions against MongoDB through the official driver: the harness's wire
 * server, or a real MongoDB when MONGODB_URI is set (the same tests, unchanged).
 */
import assert from "node:assert/strict";
import * as sessions from "../../functions/src/sessions/sessions";
import { closeTestMongo, testMongo } from "../support/mongo";
import { newUid } from "../support/suite";

describe("integration: content sessions in MongoDB", function () {
  this.timeout(30_000);
  after(() => closeTestMongo());

  const deps = async (at?: Date) => ({ mongo: await testMongo(), clock: at ? { now: () => at } : undefined });

  it("when a user creates, renames and deletes a session, then only their own session changes, with the seed's document shape", async () => {
    const uid = newUid("s");
    const other = newUid("s");
    const created = await sessions.createSession(await deps(), uid, { name: "Tides", session_data: { step: 1 } });
    const stored = await (await testMongo()).collection("content_sessions").findOne({ userId: uid });
    assert.ok(stored);
    assert.deepEqual(Object.keys(stored).sort(), [
      "_id",
      "createdAt",
      "lastAccessed",
      "name",
      "sessionData",
      "unreadMessages",
      "userId",
    ]);
    await assert.rejects(sessions.renameSession(await deps(), other, created.id, "Stolen"), { code: "not-found" });
    const renamed = await sessions.renameSession(await deps(), uid, created.id, "Tides, part 2");
    assert.equal(renamed.name, "Tides, part 2");
    assert.deepEqual(await sessions.deleteSession(await deps(), other, created.id), { deleted: false });
    assert.deepEqual(await sessions.deleteSession(await deps(), uid, created.id), { deleted: true });
    assert.deepEqual(await sessions.deleteSession(await deps(), uid, created.id), { deleted: false });
    assert.equal((await sessions.listSessions(await deps(), uid, { limit: 10 })).items.length, 0);
  });

  it("when sessions are listed in pages, then every session appears once, newest first, and nobody else's", async () => {
    const uid = newUid("s");
    const base = Date.now();
    for (let i = 0; i < 7; i++)
      await sessions.createSession(await deps(new Date(base + i * 1000)), uid, { name: `s${i}` });
    await sessions.createSession(await deps(), newUid("s"), { name: "someone else's" });
    const names: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await sessions.listSessions(await deps(), uid, { limit: 3, cursor });
      names.push(...page.items.map((item) => item.name));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.deepEqual(names, ["s6", "s5", "s4", "s3", "s2", "s1", "s0"]);
  });

  it("when a cursor is forged, then invalid-argument", async () => {
    await assert.rejects(sessions.listSessions(await deps(), newUid("s"), { limit: 3, cursor: "not-a-cursor" }), {
      code: "invalid-argument",
    });
  });
});
