/** Inputs of the session and notification callables (strict). */
import { z } from "zod";
import { boundedMap } from "../shared/ids";

export const objectIdHex = z.string().regex(/^[0-9a-f]{24}$/, "a 24-character hex id");
const limit = z.number().int().min(1).max(100).default(20);
const cursor = z.string().min(1).max(200).optional();
const name = z.string().trim().min(1).max(120);

export const createSessionInput = z
  .object({
    name,
    session_data: boundedMap({ maxBytes: 16_384 }).optional(),
  })
  .strict();

export const listInput = z.object({ limit, cursor }).strict();
export const renameSessionInput = z.object({ session_id: objectIdHex, name }).strict();
export const sessionIdInput = z.object({ session_id: objectIdHex }).strict();
export const listNotificationsInput = z.object({ limit, cursor, unseen_only: z.boolean().default(false) }).strict();
export const markSeenInput = z.object({ ids: z.array(objectIdHex).min(1).max(100) }).strict();

export type CreateSessionInput = z.infer<typeof createSessionInput>;
export type ListInput = z.infer<typeof listInput>;
export type ListNotificationsInput = z.infer<typeof listNotificationsInput>;
