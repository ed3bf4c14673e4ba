/** Session callables: declarations only; the work is in sessions.ts. */
import { mongoDb } from "../adapters/mongo";
import { callable } from "../shared/callable";
import { CreateSessionInput, ListSessionsInput, RenameSessionInput, SessionIdInput } from "./schemas";
import * as sessions from "./sessions";

const deps = async () => ({ mongo: await mongoDb() });

export const createSession = callable({
  name: "createSession",
  access: "user",
  schema: CreateSessionInput,
  handler: async (input, caller) => sessions.createSession(await deps(), caller.uid, input),
});

export const listSessions = callable({
  name: "listSessions",
  access: "user",
  schema: ListSessionsInput,
  handler: async (input, caller) => sessions.listSessions(await deps(), caller.uid, input),
});

export const renameSession = callable({
  name: "renameSession",
  access: "user",
  schema: RenameSessionInput,
  handler: async (input, caller) => sessions.renameSession(await deps(), caller.uid, input.session_id, input.name),
});

export const deleteSession = callable({
  name: "deleteSession",
  access: "user",
  schema: SessionIdInput,
  handler: async (input, caller) => sessions.deleteSession(await deps(), caller.uid, input.session_id),
});
