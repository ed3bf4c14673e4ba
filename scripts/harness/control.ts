/**
 * A small HTTP control plane on loopback so tests can break and heal services
 * the harness owns (e.g. stop Redis mid-test), without knowing their pids.
 *
 *   POST /redis/stop   POST /redis/start   GET /status
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { onTeardown } from "./processes";
import type { RedisService } from "./services";

export async function startControlServer(services: { redis: RedisService }): Promise<{ url: string }> {
  const server = createServer((request, response) => {
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    const route = `${request.method} ${request.url}`;
    const actions: Record<string, () => Promise<unknown>> = {
      "POST /redis/stop": async () => services.redis.stop(),
      "POST /redis/start": async () => services.redis.start(),
      "GET /status": async () => undefined,
    };
    const action = actions[route];
    if (!action) return reply(404, { error: `no route ${route}` });
    action()
      .then(() => reply(200, { redis: services.redis.running() ? "running" : "stopped" }))
      .catch((error: unknown) => reply(500, { error: error instanceof Error ? error.message : String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTeardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
