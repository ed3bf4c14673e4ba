/**
 * The Realtime Database substitute (npm firebase-server) with production's
 * rules enforced and a REST API.
 *
 * firebase-server evaluates rules through targaryen but knows only tokens
 * signed with its secret, and its admin login ("owner") skips the identity it
 * evaluates rules with, so admin writes would be refused once rules are on.
 * Here one function, `rulesAs`, decides every access, for the WebSocket
 * protocol and for REST alike:
 *   - "owner" (firebase-admin's emulator credential) is admin: rules bypassed;
 *   - an ID token the Auth emulator issued for this project (unsigned, as all
 *     its tokens are) is `auth = {uid, provider, token: claims}`;
 *   - no token is `auth = null`; any other token is refused.
 * The rules engine's view of the data is the data: rebuilt from the store after
 * it changed, at the next rule check. Not the tree a verdict returns: firebase-server
 * checks a transaction attempt's write (and keeps the verdict's tree) before it
 * checks the attempt's hash, so a stale attempt (the SDK's first guess, e.g. null
 * for a node not cached yet) left a view the data never had until the SDK's retry
 * landed; a rule such as "an op may not be rewritten" then let a rewrite through.
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

/** Marks the admin identity inside the substitute; never a real uid. */
const ADMIN = Object.freeze({ admin: true as const });

export type RtdbAuth = typeof ADMIN | { uid: string; provider: string; token: Record<string, unknown> } | null;

interface RuleResult {
  allowed: boolean;
  info: string;
}

interface TargaryenDatabase {
  root: unknown;
  as(auth: unknown): TargaryenDatabase;
  read(path: string): RuleResult;
  write(path: string, value: unknown, now?: number): RuleResult;
  update(path: string, patch: Record<string, unknown>, now?: number): RuleResult;
}

interface DataSnapshot {
  val(): unknown;
  exportVal(): unknown;
}

interface Reference {
  child(path: string): Reference;
  once(event: "value", callback: (snapshot: DataSnapshot) => void): void;
  on(event: "value", callback: (snapshot: DataSnapshot) => void): void;
  set(value: unknown): unknown;
  update(value: Record<string, unknown>): unknown;
  push(): { key: string | null };
}

interface Socket {
  on(event: "message", listener: (data: { toString(): string }) => void): void;
  emit(event: "message", data: string): boolean;
  send(data: string): void;
}

interface FirebaseServerInstance {
  baseRef: Reference;
  wss: { on(event: "connection", listener: (socket: Socket) => void): void };
  tokenValidator: { decode(token: string): Record<string, unknown> };
  close(callback?: () => void): Promise<void>;
}

export class InvalidRtdbToken extends Error {}

/**
 * Decodes a credential into the identity rules see. Throws InvalidRtdbToken for
 * tokens that are neither admin nor the Auth emulator's for `projectId`, or expired.
 */
export function rtdbIdentity(
  credential: string | undefined,
  projectId: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): RtdbAuth {
  if (credential === undefined || credential === "") return null;
  if (credential === "owner") return ADMIN;
  const parts = credential.split(".");
  if (parts.length !== 3) throw new InvalidRtdbToken("not a JWT");
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8")) as Record<string, unknown>;
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new InvalidRtdbToken("not a JWT");
  }
  // The Auth emulator signs nothing; a signed token here was not issued by it.
  if (header.alg !== "none") throw new InvalidRtdbToken("not issued by the Auth emulator");
  if (claims.iss !== `https://securetoken.google.com/${projectId}` || claims.aud !== projectId) {
    throw new InvalidRtdbToken(`issued for another project (aud ${String(claims.aud)})`);
  }
  if (typeof claims.exp !== "number" || claims.exp < nowSeconds) throw new InvalidRtdbToken("expired");
  const uid = typeof claims.user_id === "string" ? claims.user_id : claims.sub;
  if (typeof uid !== "string" || uid === "") throw new InvalidRtdbToken("no uid");
  const firebase = claims.firebase as { sign_in_provider?: unknown } | undefined;
  const provider = typeof firebase?.sign_in_provider === "string" ? firebase.sign_in_provider : "custom";
  return { uid, provider, token: claims };
}

export interface RtdbSubstitute {
  host: string;
  close(): Promise<void>;
}

/** Starts the substitute on `port` with `rulesFile` enforced for everyone but admin. */
export async function startRtdbSubstituteServer(options: {
  port: number;
  projectId: string;
  rulesFile: string;
}): Promise<RtdbSubstitute> {
  const targaryen = require("targaryen") as {
    database(rules: unknown, data: unknown): TargaryenDatabase;
    ruleset(rules: unknown): unknown;
    store(data: unknown): unknown;
  };
  const rules: unknown = JSON.parse(readFileSync(options.rulesFile, "utf8"));
  const enforced = targaryen.ruleset(rules);
  const open = targaryen.ruleset({ rules: { ".read": true, ".write": true } });
  // The data as the rules engine sees it: the store's latest value, turned into the engine's tree when a check needs it.
  let latest: unknown = null;
  let root: unknown = targaryen.store(null);
  let stale = false;
  const current = (): unknown => {
    if (stale) {
      root = targaryen.store(latest);
      stale = false;
    }
    return root;
  };

  // firebase-server attaches its WebSocket server to ours, which also answers REST (it would answer 426).
  let rest: (request: IncomingMessage, response: ServerResponse) => void = (_request, response) => {
    response.writeHead(503).end();
  };
  const http: Server = createServer((request, response) => rest(request, response));
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, "127.0.0.1", () => resolve());
  });
  const FirebaseServer = require("firebase-server") as new (
    options: { server: Server },
    name: string,
    data: object,
  ) => FirebaseServerInstance;
  const server = new FirebaseServer({ server: http }, `127.0.0.1:${options.port}`, {});
  // The in-memory store raises a local write's events as it applies it, so the next check sees every write.
  server.baseRef.on("value", (snapshot) => {
    latest = snapshot.exportVal();
    stale = true;
  });

  // A fresh engine per request (cheap: rules and tree are shared, immutable); `with({auth: null})` would keep a
  // previous caller's auth.
  const rulesAs = (auth: RtdbAuth): TargaryenDatabase => {
    if (auth === ADMIN) return targaryen.database(open, current());
    const database = targaryen.database(enforced, current());
    return auth === null ? database : database.as(auth);
  };

  // The WebSocket side: firebase-server asks `tokenValidator.decode` for a connection's identity (a result
  // with `d` becomes `auth`), then `targaryen.as(auth)` for every read, set and update, and stores the
  // returned database back, which is ignored: the view follows the data (see `current`).
  server.tokenValidator = {
    decode: (token: string) => {
      const auth = token === SIGNED_OUT ? null : rtdbIdentity(token, options.projectId);
      const claims = auth !== null && "token" in auth ? auth.token : {};
      return { ...claims, d: auth };
    },
  };
  Object.defineProperty(server, "targaryen", {
    configurable: true,
    get: () => ({ as: (auth: RtdbAuth | undefined) => rulesAs(auth ?? null) }),
    set: () => undefined,
  });

  server.wss.on("connection", (socket) => completeProtocol(socket, server, rulesAs, options.projectId));

  rest = (request, response) => {
    handleRest(request, response, server.baseRef, { as: rulesAs }, options.projectId).catch((error: unknown) => {
      if (!response.headersSent)
        sendJson(response, 500, { error: error instanceof Error ? error.message : String(error) });
    });
  };

  return {
    host: `127.0.0.1:${options.port}`,
    close: () => server.close(),
  };
}

/** Marks a connection that signed out; firebase-server keeps the last accepted credential otherwise. */
const SIGNED_OUT = "rtdb-substitute:signed-out";

/**
 * The two requests of today's client SDKs firebase-server (written for v8)
 * never answers, so a v12 client would wait on them forever:
 *   - `g` (the SDK's `get()`): answered here from the store, under the read rules;
 *   - `unauth` (sign-out): replayed to firebase-server as a sign-in to the
 *     signed-out identity, so the connection's later requests run as `auth = null`.
 * Every other request is firebase-server's; this listener runs beside its own.
 */
function completeProtocol(
  socket: Socket,
  server: FirebaseServerInstance,
  rulesAs: (auth: RtdbAuth) => TargaryenDatabase,
  projectId: string,
): void {
  let auth: RtdbAuth = null;
  const reply = (requestId: unknown, body: { s: string; d: unknown }) => {
    const payload = JSON.stringify({ t: "d", d: { r: requestId, b: body } });
    // The client's frame limit is 16384 characters; longer payloads go as a count, then the pieces.
    const pieces = Math.ceil(payload.length / 16384);
    if (pieces > 1) socket.send(String(pieces));
    for (let offset = 0; offset < payload.length; offset += 16384) socket.send(payload.slice(offset, offset + 16384));
  };
  socket.on("message", (data) => {
    let message: { t?: string; d?: { r?: unknown; a?: string; b?: { p?: string; cred?: string } } };
    try {
      message = JSON.parse(data.toString()) as typeof message;
    } catch {
      return; // a piece of a longer message: only firebase-server's requests are that long
    }
    if (message?.t !== "d" || !message.d) return;
    const { r: requestId, a: action, b: body } = message.d;
    if (action === "auth" || action === "gauth") {
      try {
        auth = body?.cred === SIGNED_OUT ? null : rtdbIdentity(body?.cred, projectId);
      } catch {
        // firebase-server refuses it too and keeps the connection's previous identity.
      }
    } else if (action === "unauth") {
      socket.emit("message", JSON.stringify({ t: "d", d: { r: requestId, a: "auth", b: { cred: SIGNED_OUT } } }));
    } else if (action === "g") {
      const path = `/${(body?.p ?? "").replace(/^\/+|\/+$/g, "")}`;
      if (!rulesAs(auth).read(path).allowed)
        return reply(requestId, { s: "permission_denied", d: "Permission denied" });
      const ref = path === "/" ? server.baseRef : server.baseRef.child(path.slice(1));
      ref.once("value", (snapshot) => reply(requestId, { s: "ok", d: snapshot.exportVal() }));
    }
  });
}

/**
 * The RTDB REST protocol's core: GET, PUT, PATCH, POST, DELETE on `/<path>.json`,
 * identity from `?auth=` / `?access_token=` / `Authorization: Bearer`, same rules as the WebSocket side.
 */
async function handleRest(
  request: IncomingMessage,
  response: ServerResponse,
  root: Reference,
  rules: { as(auth: RtdbAuth): TargaryenDatabase },
  projectId: string,
): Promise<void> {
  const url = new URL(request.url ?? "/", "http://localhost");
  if (!url.pathname.endsWith(".json")) return sendJson(response, 404, { error: "paths end in .json" });
  const dbPath = decodeURIComponent(url.pathname.slice(0, -".json".length)).replace(/^\/+|\/+$/g, "");
  const bearer = /^Bearer (.+)$/i.exec(request.headers.authorization ?? "")?.[1];
  let auth: RtdbAuth;
  try {
    auth = rtdbIdentity(url.searchParams.get("auth") ?? url.searchParams.get("access_token") ?? bearer, projectId);
  } catch (error) {
    return sendJson(response, 401, { error: `Could not parse auth token: ${(error as Error).message}` });
  }
  const ref = dbPath === "" ? root : root.child(dbPath);
  const rulePath = `/${dbPath}`;
  // Production answers only "Permission denied"; the rule trace stays out of responses.
  const denied = (_result: RuleResult) => sendJson(response, 401, { error: "Permission denied" });
  const method = request.method ?? "GET";
  if (method === "GET") {
    const verdict = rules.as(auth).read(rulePath);
    if (!verdict.allowed) return denied(verdict);
    return sendJson(response, 200, await valueOf(ref));
  }
  if (!["PUT", "PATCH", "POST", "DELETE"].includes(method))
    return sendJson(response, 405, { error: `${method} is not supported` });
  let body: unknown = null;
  if (method !== "DELETE") {
    try {
      body = JSON.parse(await readBody(request));
    } catch {
      return sendJson(response, 400, { error: "Invalid data; couldn't parse JSON object." });
    }
  }
  const now = Date.now();
  if (method === "PATCH") {
    if (typeof body !== "object" || body === null || Array.isArray(body))
      return sendJson(response, 400, { error: "PATCH needs an object" });
    const patch = body as Record<string, unknown>;
    const verdict = rules.as(auth).update(rulePath, patch, now);
    if (!verdict.allowed) return denied(verdict);
    applyLocally(() => ref.update(patch));
    return sendJson(response, 200, patch);
  }
  if (method === "POST") {
    const key = ref.push().key;
    if (key === null) return sendJson(response, 500, { error: "no push key" });
    const verdict = rules.as(auth).write(`${rulePath}/${key}`.replace(/^\/\//, "/"), body, now);
    if (!verdict.allowed) return denied(verdict);
    applyLocally(() => ref.child(key).set(body));
    return sendJson(response, 200, { name: key });
  }
  const verdict = rules.as(auth).write(rulePath, body, now);
  if (!verdict.allowed) return denied(verdict);
  applyLocally(() => ref.set(body));
  return sendJson(response, 200, body);
}

/**
 * The store's client is offline: a write lands in its local tree at once and its
 * promise never settles (no server acknowledges it), so it is not awaited.
 */
function applyLocally(write: () => unknown): void {
  write();
}

function valueOf(ref: Reference): Promise<unknown> {
  return new Promise((resolve) => ref.once("value", (snapshot) => resolve(snapshot.val())));
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      body += chunk;
      if (body.length > 16 * 1024 * 1024) request.destroy(new Error("body too large"));
    });
    request.on("end", () => resolve(body));
    request.on("error", reject);
  });
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json; charset=utf-8" });
  response.end(JSON.stringify(body));
}
