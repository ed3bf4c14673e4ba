/**
 * The suite's own processes (tests, the simulation, the benchmark) import the functions' code and call it in
 * process. Outside the functions runtime a param reads only the environment, where an int without a value is 0:
 * the bench's `redis()` once bounded every Redis call at 0 ms, failed them, opened the breaker and left user
 * locks held to their TTL. The harness gives these processes the values it gives the functions emulator.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as config from "../../functions/src/config";

/** The plain params the harness wrote for the functions emulator in this run. */
function functionsEnvLocal(): Map<string, string> {
  const text = readFileSync(path.join(__dirname, "..", "..", "functions", ".env.local"), "utf8");
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0 && !line.startsWith("#")) values.set(line.slice(0, at), line.slice(at + 1));
  }
  return values;
}

describe("integration: the params the suite's processes read", () => {
  it("when the functions' code runs in the suite's process, then every param reads what the functions emulator was given", () => {
    const given = functionsEnvLocal();
    const params = (Object.values(config) as unknown[]).filter(
      (value): value is { name: string; value(): unknown } =>
        typeof value === "object" && value !== null && "name" in value && "value" in value,
    );
    const compared = params.filter((param) => given.has(param.name));
    assert.ok(compared.length >= 20, `only ${compared.length} params found in functions/.env.local`);
    for (const param of compared)
      assert.equal(String(param.value()), given.get(param.name), `${param.name} in this process`);
    assert.ok(config.REDIS_COMMAND_TIMEOUT_MS.value() > 0, "REDIS_COMMAND_TIMEOUT_MS is 0 in this process");
  });
});
