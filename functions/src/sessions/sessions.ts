/**
 * Content sessions and notifications in MongoDB (the Living Content seed
 * shapes), always scoped to the caller: every query filters on `userId`, so
 * another user's document is indistinguishable from a missing one.
 *
 * Lists are newest first, paged by an opaque cursor over (createdAt, _id):
 * notifications have hash-derived ids that are not time-ordered, so the id
 * only breaks ties.
 */
import type { Db, Filter, ObjectId } from "mongodb";
import { NOTIFICATIONS, type NotificationDoc } from "../notifications/notify";
import { InvalidInput, NotFound } from "../shared/errors";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import type { CreateSessionInput, ListInput, ListNotificationsInput } from "./schemas";

export const CONTENT_SESSIONS = "content_sessions";

export interface SessionDoc {
  _id: ObjectId;
  userId: string;
  createdAt: Date;
  lastAccessed: Date;
  unreadMessages: number;
  name: string;
  sessionData: Record<string, unknown>;
}

export interface SessionDeps {
  mongo: Db;
  clock?: Clock;
}

export interface SessionView {
  id: string;
  name: string;
  created_at: string;
  last_accessed: string;
  unread_messages: number;
  session_data: Record<string, unknown>;
}

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

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

function objectId(hex: string): ObjectId {
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  return new Id(hex);
}

export async function createSession(deps: SessionDeps, uid: string, input: CreateSessionInput): Promise<SessionView> {
  const now = (deps.clock ?? systemClock).now();
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  const doc: SessionDoc = { _id: new Id(), userId: uid, createdAt: now, lastAccessed: now, unreadMessages: 0, name: input.name, sessionData: input.session_data ?? {} };
  await deps.mongo.collection<SessionDoc>(CONTENT_SESSIONS).insertOne(doc);
  return sessionView(doc);
}

export async function listSessions(deps: SessionDeps, uid: string, input: ListInput): Promise<Page<SessionView>> {
  const docs = await page<SessionDoc>(deps.mongo, CONTENT_SESSIONS, { userId: uid }, input.limit, input.cursor);
  return { items: docs.items.map(sessionView), next_cursor: docs.next_cursor };
}

export async function renameSession(deps: SessionDeps, uid: string, sessionId: string, name: string): Promise<SessionView> {
  const now = (deps.clock ?? systemClock).now();
  const updated = await deps.mongo
    .collection<SessionDoc>(CONTENT_SESSIONS)
    .findOneAndUpdate({ _id: objectId(sessionId), userId: uid }, { $set: { name, lastAccessed: now } }, { returnDocument: "after" });
  if (!updated) throw new NotFound(`Session ${sessionId}`);
  return sessionView(updated);
}

/** Deleting a session that is not there (or not the caller's) reports `deleted: false`, so a retried delete is harmless. */
export async function deleteSession(deps: SessionDeps, uid: string, sessionId: string): Promise<{ deleted: boolean }> {
  const result = await deps.mongo.collection<SessionDoc>(CONTENT_SESSIONS).deleteOne({ _id: objectId(sessionId), userId: uid });
  return { deleted: result.deletedCount === 1 };
}

export async function listNotifications(deps: SessionDeps, uid: string, input: ListNotificationsInput): Promise<Page<NotificationView>> {
  const filter: Filter<NotificationDoc> = input.unseen_only ? { userId: uid, seen: false } : { userId: uid };
  const docs = await page<NotificationDoc>(deps.mongo, NOTIFICATIONS, filter, input.limit, input.cursor);
  return { items: docs.items.map(notificationView), next_cursor: docs.next_cursor };
}

/** Marks the caller's notifications seen; ids that are not theirs or already seen are left alone. */
export async function markNotificationsSeen(deps: SessionDeps, uid: string, ids: string[]): Promise<{ updated: number }> {
  const now = (deps.clock ?? systemClock).now();
  const result = await deps.mongo
    .collection<NotificationDoc>(NOTIFICATIONS)
    .updateMany({ _id: { $in: ids.map(objectId) }, userId: uid, seen: false }, { $set: { seen: true, seenAt: now } });
  return { updated: result.modifiedCount };
}

async function page<T extends { _id: ObjectId; createdAt: Date }>(
  mongo: Db,
  collection: string,
  filter: Filter<T>,
  limit: number,
  cursor: string | undefined,
): Promise<Page<T>> {
  let query: Filter<T> = filter;
  if (cursor) {
    const after = decodeCursor(cursor);
    query = {
      $and: [filter, { $or: [{ createdAt: { $lt: after.createdAt } }, { createdAt: after.createdAt, _id: { $lt: after.id } }] }],
    } as Filter<T>;
  }
  const items = (await mongo
    .collection<T>(collection)
    .find(query)
    .sort({ createdAt: -1, _id: -1 })
    .limit(limit)
    .toArray()) as T[];
  const last = items[items.length - 1];
  return { items, next_cursor: items.length === limit && last ? encodeCursor(last.createdAt, last._id) : null };
}

function encodeCursor(createdAt: Date, id: ObjectId): string {
  return Buffer.from(JSON.stringify({ t: createdAt.getTime(), id: id.toHexString() })).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: Date; id: ObjectId } {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { t?: unknown; id?: unknown };
    if (typeof parsed.t === "number" && typeof parsed.id === "string" && /^[0-9a-f]{24}$/.test(parsed.id)) {
      return { createdAt: new Date(parsed.t), id: objectId(parsed.id) };
    }
  } catch {
    // fall through
  }
  throw new InvalidInput("Invalid cursor.", [{ path: "cursor", message: "not a cursor from this list", code: "custom" }]);
}

function sessionView(doc: SessionDoc): SessionView {
  return {
    id: doc._id.toHexString(),
    name: doc.name,
    created_at: doc.createdAt.toISOString(),
    last_accessed: doc.lastAccessed.toISOString(),
    unread_messages: doc.unreadMessages,
    session_data: doc.sessionData,
  };
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
