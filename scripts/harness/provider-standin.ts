/**
 * A local stand-in for LLM providers' health endpoints, for the demo and the
 * tests: `GET /{provider}/health` answers as the caller has set that provider:
 *
 *   ok        200 at once
 *   slow      200 after `delayMs`
 *   error     503 (or `statusCode`)
 *   timeout   no answer until the connection is closed by the client or the server stops
 *
 * Modes are set in-process (`set`) or over HTTP (`PUT /{provider}/mode` with
 * `{"mode": "slow", "delay_ms": 400}`), so a demo can drive it with curl.
 * Unknown providers answer ok.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type StandinMode = "ok" | "slow" | "error" | "timeout";

export interface ProviderBehaviour {
  mode: StandinMode;
  delayMs?: number;
  statusCode?: number;
}

export interface ProviderStandin {
  /** Origin, e.g. http://127.0.0.1:PORT. */
  url: string;
  /** The probe URL of a provider. */
  probeUrl(provider: string): string;
  set(provider: string, behaviour: ProviderBehaviour | StandinMode): void;
  /** Health requests received per provider. */
  hits(provider: string): number;
  close(): Promise<void>;
}

export async function startProviderStandin(options: { port?: number; host?: string } = {}): Promise<ProviderStandin> {
  const behaviours = new Map<string, ProviderBehaviour>();
  const counts = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const answer = (response: ServerResponse, status: number, body: unknown) => {
    if (response.writableEnded || response.destroyed) return;
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const match = /^\/([^/]+)\/(health|mode)$/.exec(new URL(request.url ?? "/", "http://x").pathname);
    if (!match) return answer(response, 404, { error: "not found" });
    const provider = decodeURIComponent(match[1]);
    if (match[2] === "mode") {
      if (request.method !== "PUT" && request.method !== "POST") return answer(response, 405, { error: "use PUT" });
      let raw = "";
      request.on("data", (chunk: Buffer) => (raw += chunk.toString()));
      request.on("end", () => {
        try {
          const body = JSON.parse(raw || "{}") as { mode?: StandinMode; delay_ms?: number; status_code?: number };
          if (!body.mode || !["ok", "slow", "error", "timeout"].includes(body.mode))
            throw new Error("mode must be ok, slow, error or timeout");
          behaviours.set(provider, { mode: body.mode, delayMs: body.delay_ms, statusCode: body.status_code });
          answer(response, 200, { provider, mode: body.mode });
        } catch (error) {
          answer(response, 400, { error: error instanceof Error ? error.message : String(error) });
        }
      });
      return;
    }
    counts.set(provider, (counts.get(provider) ?? 0) + 1);
    const behaviour = behaviours.get(provider) ?? { mode: "ok" };
    switch (behaviour.mode) {
      case "ok":
        return answer(response, 200, { status: "ok", provider });
      case "slow": {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer(response, 200, { status: "ok", provider });
        }, behaviour.delayMs ?? 1000);
        timers.add(timer);
        return;
      }
      case "error":
        return answer(response, behaviour.statusCode ?? 503, { error: "unavailable", provider });
      case "timeout":
        // Hold the request open; the prober's timeout ends it.
        return;
    }
  };

  const server = createServer(handle);
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  return {
    url,
    probeUrl: (provider) => `${url}/${encodeURIComponent(provider)}/health`,
    set: (provider, behaviour) =>
      behaviours.set(provider, typeof behaviour === "string" ? { mode: behaviour } : behaviour),
    hits: (provider) => counts.get(provider) ?? 0,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
