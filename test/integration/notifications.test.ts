/**
 * Notifications against MongoDB through the official driver (the harness's
 * wire server, or a real MongoDB when MONGODB_URI is set): the one module that
 * writes the collection, whoever notifies.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as notifications from "../../functions/src/notifications/notifications";
import { notifyAdminsOfAlert } from "../../functions/src/routing/alerts";
import type { Alert } from "../../functions/src/routing/provider-health";
import { closeTestMongo, testMongo } from "../support/mongo";
import { newUid } from "../support/suite";

describe("integration: notifications in MongoDB", function () {
  this.timeout(30_000);
  after(() => closeTestMongo());

  const deps = async (at?: Date) => ({ mongo: await testMongo(), clock: at ? { now: () => at } : undefined });

  it("when notifications are listed with the unseen filter and marked seen, then only the caller's change and paging covers all", async () => {
    const uid = newUid("n");
    const other = newUid("n");
    const mongo = await testMongo();
    const base = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { id } = await notifications.notify(
        { mongo, clock: { now: () => new Date(base + i * 1000) } },
        {
          userId: uid,
          type: "job_succeeded",
          toastMessage: `n${i}`,
          urgency: "normal",
          persistent: false,
          dedupeKey: `test:${randomUUID()}`,
        },
      );
      ids.push(id);
    }
    const foreign = await notifications.notify(
      { mongo },
      {
        userId: other,
        type: "low_balance",
        toastMessage: "x",
        urgency: "high",
        persistent: false,
        dedupeKey: `test:${randomUUID()}`,
      },
    );
    const seen = await notifications.markNotificationsSeen(await deps(), uid, [ids[0], ids[1], foreign.id]);
    assert.deepEqual(seen, { updated: 2 });
    assert.deepEqual(await notifications.markNotificationsSeen(await deps(), uid, [ids[0]]), { updated: 0 });
    const unseen = await notifications.listNotifications(await deps(), uid, { limit: 10, unseen_only: true });
    assert.deepEqual(
      unseen.items.map((item) => item.toast_message),
      ["n4", "n3", "n2"],
    );
    const all: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await notifications.listNotifications(await deps(), uid, { limit: 2, cursor, unseen_only: false });
      all.push(...page.items.map((item) => item.toast_message));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.deepEqual(all, ["n4", "n3", "n2", "n1", "n0"]);
    const foreignDoc = await mongo.collection("notifications").findOne({ userId: other });
    assert.equal(foreignDoc?.seen, false);
  });

  it("when an alert notifies the admins and a job notifies a user, then both documents have the one shape and id scheme", async () => {
    const mongo = await testMongo();
    const collection = mongo.collection(notifications.NOTIFICATIONS);
    const alert: Alert = {
      id: newUid("alert"),
      type: "provider_degraded",
      severity: "warning",
      provider: "p",
      message: "Provider p went from healthy to degraded",
      from_status: "healthy",
      to_status: "degraded",
      acknowledged: false,
      resolved: false,
      created_at: new Date(),
    };
    await notifyAdminsOfAlert(mongo, alert);
    const jobKey = `job:${randomUUID()}:succeeded`;
    await notifications.notify(
      { mongo },
      {
        userId: newUid("n"),
        type: "job_succeeded",
        toastMessage: "ready",
        urgency: "normal",
        persistent: true,
        dedupeKey: jobKey,
      },
    );

    const alertDoc = await collection.findOne({ _id: notifications.notificationId(`alert:${alert.id}`) });
    const jobDoc = await collection.findOne({ _id: notifications.notificationId(jobKey) });
    assert.ok(alertDoc && jobDoc);
    const shape = (doc: Record<string, unknown>): Record<string, string> =>
      Object.fromEntries(
        Object.entries(doc)
          .map(([key, value]): [string, string] => [
            key,
            value === null ? "null" : value instanceof Date ? "date" : typeof value,
          ])
          .sort(),
      );
    const { messageId: alertMessageId, ...alertRest } = shape(alertDoc);
    const { messageId: jobMessageId, ...jobRest } = shape(jobDoc);
    assert.deepEqual(alertRest, jobRest, "the same fields with the same types");
    assert.equal(alertMessageId, "string", "an alert's notification points at the alert");
    assert.equal(jobMessageId, "null");
    const alertFields = alertDoc as Record<string, unknown>;
    assert.deepEqual(
      {
        userId: alertFields.userId,
        type: alertFields.type,
        urgency: alertFields.urgency,
        dedupeKey: alertFields.dedupeKey,
        messageId: alertFields.messageId,
      },
      {
        userId: "admins",
        type: "provider_alert",
        urgency: "normal",
        dedupeKey: `alert:${alert.id}`,
        messageId: alert.id,
      },
    );
    assert.ok((["low", "normal", "high"] as unknown[]).includes(alertDoc.urgency));
    assert.equal((alertDoc.createdAt as Date).getTime(), alert.created_at.getTime(), "dated by its alert");
    const page = await notifications.listNotifications({ mongo }, "admins", { limit: 100, unseen_only: true });
    assert.ok(
      page.items.some((item) => item.id === alertDoc._id.toHexString()),
      "admins list it like any notification",
    );
  });
});
