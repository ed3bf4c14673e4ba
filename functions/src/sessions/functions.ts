/** Session callables: declarations only; the work is in sessions.ts. */
import { mongoDb } from "../adapters/mongo";
import { callable } from "../shared/callable";
import { createSessionInput, listInput, renameSessionInput, sessionIdInput } from "./schemas";
import * as sessions from "./sessions";

const deps = async () => ({ mongo: await mongoDb() });

export const createSession = callable({
  name: "createSession",
  access: "user",
  schema: createSessionInput,
  handler: async (input, caller) => sessions.createSession(await deps(), caller!.uid, input),
});

export const listSessions = callable({
  name: "listSessions",
  access: "user",
  schema: listInput,
  handler: async (input, caller) => sessions.listSessions(await deps(), caller!.uid, input),
});

export const renameSession = callable({
  name: "renameSession",
  access: "user",
  schema: renameSessionInput,
  handler: async (input, caller) => sessions.renameSession(await deps(), caller!.uid, input.session_id, input.name),
});

export const deleteSession = callable({
  name: "deleteSession",
  access: "user",
  schema: sessionIdInput,
  handler: async (input, caller) => sessions.deleteSession(await deps(), caller!.uid, input.session_id),
});
