/**
 * The one owner of MongoDB `notifications` (the Living Content seed shape):
 * creating a notification, publishing it live on Redis `user_channel:{uid}`,
 * listing a user's notifications and marking them seen. Every other module
 * (jobs, low balance, provider alerts) notifies through `notify`.
 *
 * Every notification has a deterministic `_id` derived from a dedupe key
 * (e.g. `job:{jobId}:succeeded`, `alert:{alertId}`), so a retried trigger
 * finds it already there and neither stores nor publishes it twice. The id is
 * an ObjectId (the first 12 bytes of a SHA-256 of the key): real MongoDB takes
 * any `_id`, but some wire-compatible servers accept only ObjectIds, and this
 * works on both.
 */
import { createHash } from "node:crypto";
import type { Db, Filter, ObjectId } from "mongodb";
import type { RedisGateway } from "../adapters/redis";
import { objectId } from "../shared/ids";
import { newestFirst, type Page } from "../shared/paging";
import type { Clock } from "../shared/time";
import { DAY_MS, systemClock } from "../shared/time";
import type { ListNotificationsInput } from "./schemas";

export const NOTIFICATIONS = "notifications";

export type Urgency = "low" | "normal" | "high";

export interface NotificationInput {
  userId: string;
  /** e.g. job_succeeded, job_failed, low_balance, provider_alert */
  type: string;
  toastMessage: string;
  urgency: Urgency;
  persistent: boolean;
  /** Identifies the event this notification is about; the same key never notifies twice. */
  dedupeKey: string;
  contentSessionId?: string | null;
  /** What the notification is about, for the client to open: a job id, an alert id. */
  messageId?: string | null;
  /** Kept this long, then removed by retention (default 30 days; persistent ones 365). */
  retainDays?: number;
}

export interface NotificationDoc {
  _id: ObjectId;
  userId: string;
  contentSessionId: string | null;
  messageId: string | null;
  createdAt: Date;
  type: string;
  toastMessage: string;
  urgency: Urgency;
  persistent: boolean;
  seen: boolean;
  seenAt: Date | null;
  expireAt: Date;
  dedupeKey: string;
}

export interface NotifyDeps {
  mongo: Db;
  /** For live delivery; without it a notification is only stored (and listed). */
  redis?: RedisGateway;
  clock?: Clock;
}

/** A notification as the list callable returns it. */
export interface NotificationView {
  id: string;
  type: string;
  toast_message: string;
  urgency: string;
  persistent: boolean;
  seen: boolean;
  seen_at: string | null;
  created_at: string;
  content_session_id: string | null;
  message_id: string | null;
}

/** The ObjectId for a dedupe key. */
export function notificationId(dedupeKey: string): ObjectId {
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  return new Id(createHash("sha256").update(dedupeKey).digest().subarray(0, 12));
}

export function userChannel(uid: string): string {
  return `user_channel:${uid}`;
}

/** Stores the notification once and publishes it live; returns whether this call created it. */
export async function notify(deps: NotifyDeps, input: NotificationInput): Promise<{ id: string; created: boolean }> {
  const now = (deps.clock ?? systemClock).now();
  const _id = notificationId(input.dedupeKey);
  const doc: NotificationDoc = {
    _id,
    userId: input.userId,
    contentSessionId: input.contentSessionId ?? null,
    messageId: input.messageId ?? null,
    createdAt: now,
    type: input.type,
    toastMessage: input.toastMessage,
    urgency: input.urgency,
    persistent: input.persistent,
    seen: false,
    seenAt: null,
    expireAt: new Date(now.getTime() + (input.retainDays ?? (input.persistent ? 365 : 30)) * DAY_MS),
    dedupeKey: input.dedupeKey,
  };
  const { _id: _ignored, ...fields } = doc;
  const collection = deps.mongo.collection<NotificationDoc>(NOTIFICATIONS);
  const result = await retryTransient(() => collection.updateOne({ _id }, { $setOnInsert: fields }, { upsert: true }));
  const created = result.upsertedCount === 1;
  if (created && deps.redis) {
    const payload = JSON.stringify({
      ...fields,
      id: _id.toHexString(),
      createdAt: now.toISOString(),
      expireAt: doc.expireAt.toISOString(),
    });
    // Live delivery is best effort: the notification is already stored and listed on the next fetch.
    await deps.redis.run((client) => client.publish(userChannel(input.userId), payload)).catch(() => undefined);
  }
  return { id: _id.toHexString(), created };
}

/** The caller's notifications, newest first; `unseen_only` leaves out those already seen. */
export async function listNotifications(
  deps: NotifyDeps,
  uid: string,
  input: ListNotificationsInput,
): Promise<Page<NotificationView>> {
  const filter: Filter<NotificationDoc> = input.unseen_only ? { userId: uid, seen: false } : { userId: uid };
  const docs = await newestFirst<NotificationDoc>(deps.mongo, NOTIFICATIONS, filter, input.limit, input.cursor);
  return { items: docs.items.map(notificationView), next_cursor: docs.next_cursor };
}

/** Marks the caller's notifications seen; ids that are not theirs or already seen are left alone. */
export async function markNotificationsSeen(
  deps: NotifyDeps,
  uid: string,
  ids: string[],
): Promise<{ updated: number }> {
  const now = (deps.clock ?? systemClock).now();
  const result = await deps.mongo
    .collection<NotificationDoc>(NOTIFICATIONS)
    .updateMany({ _id: { $in: ids.map(objectId) }, userId: uid, seen: false }, { $set: { seen: true, seenAt: now } });
  return { updated: result.modifiedCount };
}

function notificationView(doc: NotificationDoc): NotificationView {
  return {
    id: doc._id.toHexString(),
    type: doc.type,
    toast_message: doc.toastMessage,
    urgency: doc.urgency,
    persistent: doc.persistent,
    seen: doc.seen,
    seen_at: doc.seenAt ? doc.seenAt.toISOString() : null,
    created_at: doc.createdAt.toISOString(),
    content_session_id: doc.contentSessionId,
    message_id: doc.messageId,
  };
}

const TRANSIENT_ATTEMPTS = 4;

/**
 * Runs an idempotent MongoDB write again after a transient failure: a dropped
 * connection or cleared pool (the driver retries writes itself only against a
 * replica set) and the duplicate-key error two concurrent upserts of one `_id`
 * can meet. The `_id` is deterministic, so a retry whose first try did land
 * finds the document and creates nothing (its live publish is then skipped:
 * the notification is stored and listed all the same).
 */
async function retryTransient<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (attempt >= TRANSIENT_ATTEMPTS || !isTransient(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}

function isTransient(error: unknown): boolean {
  const { MongoNetworkError, MongoServerSelectionError } = require("mongodb") as typeof import("mongodb");
  // A cleared pool (MongoPoolClearedError) is a MongoNetworkError.
  if (error instanceof MongoNetworkError || error instanceof MongoServerSelectionError) return true;
  const { code, hasErrorLabel } = error as { code?: unknown; hasErrorLabel?: (label: string) => boolean };
  return code === 11000 || hasErrorLabel?.("RetryableWriteError") === true;
}
