/**
 * Newest-first pages of a MongoDB collection, scoped by the caller's filter,
 * with an opaque cursor over (createdAt, _id): ids need not be time-ordered
 * (notifications' are hash-derived), so the id only breaks ties. The lists of
 * sessions and of notifications page this way.
 */
import type { Db, Filter, ObjectId } from "mongodb";
import * as z from "zod";
import { InvalidInput } from "./errors";
import { objectId } from "./ids";

/** Input fields of a paged list. */
export const pageLimit = z.number().int().min(1).max(100).default(20);
export const pageCursor = z.string().min(1).max(200).optional();

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** One page of `filter`'s documents, newest first, after `cursor` (from the previous page). */
export async function newestFirst<T extends { _id: ObjectId; createdAt: Date }>(
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
      $and: [
        filter,
        { $or: [{ createdAt: { $lt: after.createdAt } }, { createdAt: after.createdAt, _id: { $lt: after.id } }] },
      ],
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
  throw new InvalidInput("Invalid cursor.", [
    { path: "cursor", message: "not a cursor from this list", code: "custom" },
  ]);
}
