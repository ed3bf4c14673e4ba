/** The notification callables: declarations only; the work is in notifications.ts. */
import { mongoDb } from "../adapters/mongo";
import { callable } from "../shared/callable";
import { listNotifications as list, markNotificationsSeen as markSeen } from "./notifications";
import { ListNotificationsInput, MarkSeenInput } from "./schemas";

export const listNotifications = callable({
  name: "listNotifications",
  access: "user",
  schema: ListNotificationsInput,
  handler: async (input, caller) => list({ mongo: await mongoDb() }, caller.uid, input),
});

export const markNotificationsSeen = callable({
  name: "markNotificationsSeen",
  access: "user",
  schema: MarkSeenInput,
  handler: async (input, caller) => markSeen({ mongo: await mongoDb() }, caller.uid, input.ids),
});
