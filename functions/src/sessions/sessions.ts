/**
 * Content sessions in MongoDB (the Living Content seed shape), always scoped
 * to the caller: every query filters on `userId`, so another user's document
 * is indistinguishable from a missing one. Lists are newest first, paged by an
 * opaque cursor (shared/paging.ts).
 */
import type { Db, ObjectId } from "mongodb";
import { NotFound } from "../shared/errors";
import { objectId } from "../shared/ids";
import { newestFirst, type Page } from "../shared/paging";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import type { CreateSessionInput, ListSessionsInput } from "./schemas";

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

export async function createSession(deps: SessionDeps, uid: string, input: CreateSessionInput): Promise<SessionView> {
  const now = (deps.clock ?? systemClock).now();
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  const doc: SessionDoc = {
    _id: new Id(),
    userId: uid,
    createdAt: now,
    lastAccessed: now,
    unreadMessages: 0,
    name: input.name,
    sessionData: input.session_data ?? {},
  };
  await deps.mongo.collection<SessionDoc>(CONTENT_SESSIONS).insertOne(doc);
  return sessionView(doc);
}

export async function listSessions(
  deps: SessionDeps,
  uid: string,
  input: ListSessionsInput,
): Promise<Page<SessionView>> {
  const docs = await newestFirst<SessionDoc>(deps.mongo, CONTENT_SESSIONS, { userId: uid }, input.limit, input.cursor);
  return { items: docs.items.map(sessionView), next_cursor: docs.next_cursor };
}

export async function renameSession(
  deps: SessionDeps,
  uid: string,
  sessionId: string,
  name: string,
): Promise<SessionView> {
  const now = (deps.clock ?? systemClock).now();
  const updated = await deps.mongo
    .collection<SessionDoc>(CONTENT_SESSIONS)
    .findOneAndUpdate(
      { _id: objectId(sessionId), userId: uid },
      { $set: { name, lastAccessed: now } },
      { returnDocument: "after" },
    );
  if (!updated) throw new NotFound(`Session ${sessionId}`);
  return sessionView(updated);
}

/** Deleting a session that is not there (or not the caller's) reports `deleted: false`, so a retried delete is harmless. */
export async function deleteSession(deps: SessionDeps, uid: string, sessionId: string): Promise<{ deleted: boolean }> {
  const result = await deps.mongo
    .collection<SessionDoc>(CONTENT_SESSIONS)
    .deleteOne({ _id: objectId(sessionId), userId: uid });
  return { deleted: result.deletedCount === 1 };
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
