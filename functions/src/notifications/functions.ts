/** The notification callables: declarations only; the work is in notifications.ts. */
import { mongoDb } from "../adapters/mongo";
import { callable } from "../shared/callable";
import { listNotifications as list, markNotificationsSeen as markSeen } from "./notifications";
import { listNotificationsInput, markSeenInput } from "./schemas";

export const listNotifications = callable({
  name: "listNotifications",
  access: "user",
  schema: listNotificationsInput,
  handler: async (input, caller) => list({ mongo: await mongoDb() }, caller!.uid, input),
});

export const markNotificationsSeen = callable({
  name: "markNotificationsSeen",
  access: "user",
  schema: markSeenInput,
  handler: async (input, caller) => markSeen({ mongo: await mongoDb() }, caller!.uid, input.ids),
});
