// A real `creditsd serve` for the tests: a temporary SQLite database, a free port, the
// configuration beside this file, and API keys made with `creditsd keys create`.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

/** The creditsd command: $CREDITSD_BIN, else the repository's .venv. */
export function creditsdCommand() {
  const command = process.env.CREDITSD_BIN ?? resolve(here, "../../../../.venv/bin/creditsd");
  if (!existsSync(command)) {
    throw new Error(
      `creditsd is not at ${command}: install it (python3 -m venv .venv && ` +
        ".venv/bin/pip install -e .) or set CREDITSD_BIN",
    );
  }
  return command;
}

/** Start `creditsd serve`; resolves once it listens. Call `stop()` when done. */
export async function startServer({ env = {} } = {}) {
  const command = creditsdCommand();
  const directory = mkdtempSync(join(tmpdir(), "creditsd-ts-"));
  const serverEnv = {
    ...process.env,
    CREDITSD_CONFIG: join(here, "creditsd.toml"),
    CREDITSD_DATABASE_URL: `sqlite:///${join(directory, "credits.db")}`,
    ...env,
  };
  const child = spawn(command, ["serve", "--host", "127.0.0.1", "--port", "0"], {
    env: serverEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`creditsd did not start:\n${output}`)), 30_000);
    const read = (chunk) => {
      output += chunk;
      const found = /listening on (http:\/\/\S+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolveUrl(found[1]);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`creditsd exited with ${code}:\n${output}`));
    });
  });
  child.removeAllListeners("exit");
  return {
    url,
    /** A new API key's secret. */
    async createKey(scope, name) {
      const { stdout } = await run(command, ["keys", "create", "--scope", scope, "--name", name], {
        env: serverEnv,
      });
      return stdout.trim().split("\n").at(-1);
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
