/** Inputs of the notification callables (strict). */
import * as z from "zod";
import { objectIdHex } from "../shared/ids";
import { pageCursor, pageLimit } from "../shared/paging";

export const ListNotificationsInput = z
  .object({ limit: pageLimit, cursor: pageCursor, unseen_only: z.boolean().default(false) })
  .strict();
export const MarkSeenInput = z.object({ ids: z.array(objectIdHex).min(1).max(100) }).strict();

export type ListNotificationsInput = z.infer<typeof ListNotificationsInput>;
export type MarkSeenInput = z.infer<typeof MarkSeenInput>;
