/** Inputs of the session callables (strict). */
import { z } from "zod";
import { boundedMap, objectIdHex } from "../shared/ids";
import { pageCursor, pageLimit } from "../shared/paging";

const name = z.string().trim().min(1).max(120);

export const createSessionInput = z
  .object({
    name,
    session_data: boundedMap({ maxBytes: 16_384 }).optional(),
  })
  .strict();

export const listInput = z.object({ limit: pageLimit, cursor: pageCursor }).strict();
export const renameSessionInput = z.object({ session_id: objectIdHex, name }).strict();
export const sessionIdInput = z.object({ session_id: objectIdHex }).strict();

export type CreateSessionInput = z.infer<typeof createSessionInput>;
export type ListInput = z.infer<typeof listInput>;
