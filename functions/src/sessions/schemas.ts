/** Inputs of the session callables (strict). */
import * as z from "zod";
import { boundedMap, objectIdHex } from "../shared/ids";
import { pageCursor, pageLimit } from "../shared/paging";

const name = z.string().trim().min(1).max(120);

export const CreateSessionInput = z
  .object({
    name,
    session_data: boundedMap({ maxBytes: 16_384 }).optional(),
  })
  .strict();

export const ListSessionsInput = z.object({ limit: pageLimit, cursor: pageCursor }).strict();
export const RenameSessionInput = z.object({ session_id: objectIdHex, name }).strict();
export const SessionIdInput = z.object({ session_id: objectIdHex }).strict();

export type CreateSessionInput = z.infer<typeof CreateSessionInput>;
export type ListSessionsInput = z.infer<typeof ListSessionsInput>;
export type RenameSessionInput = z.infer<typeof RenameSessionInput>;
export type SessionIdInput = z.infer<typeof SessionIdInput>;
