// A minimal Probot app for the ingress benchmark: Probot verifies each delivery's signature, parses it
// and dispatches it to the handler below, which does nothing. Nothing is stored.
//
// Started by bench/ingress.py as `node app.js` with PORT and WEBHOOK_SECRET set. It listens on
// 127.0.0.1 only and never reaches GitHub: no webhook proxy, no Sentry, no Redis, and the API base is
// pointed at a closed port on the loopback interface in case anything tried to call it.
import { generateKeyPairSync } from "node:crypto";
import { run } from "probot";

const host = process.env.HOST || "127.0.0.1";
if (host !== "127.0.0.1") {
  console.error(`refusing HOST=${host}: the benchmark app listens on 127.0.0.1 only`);
  process.exit(2);
}
if (!process.env.WEBHOOK_SECRET || !process.env.PORT) {
  console.error("WEBHOOK_SECRET and PORT are required");
  process.exit(2);
}

// Probot needs an app id and a private key to leave setup mode (which would open a smee.io channel).
// Neither is used: no handler calls the API. A throwaway key is made at every start.
const privateKey =
  process.env.PRIVATE_KEY ||
  generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;

// Options come from this object only, not from the inherited environment or a .env file, so a stray
// WEBHOOK_PROXY_URL, SENTRY_DSN or REDIS_URL cannot send anything anywhere.
const env = {
  APP_ID: process.env.APP_ID || "1",
  PRIVATE_KEY: privateKey,
  WEBHOOK_SECRET: process.env.WEBHOOK_SECRET,
  WEBHOOK_PATH: "/api/github/webhooks",
  HOST: host,
  PORT: process.env.PORT,
  LOG_LEVEL: process.env.LOG_LEVEL || "info",
  LOG_FORMAT: "json",
  NODE_ENV: "production",
  GHE_HOST: "127.0.0.1:9",
  GHE_PROTOCOL: "http",
};

let dispatched = 0;

function app(probot) {
  probot.on(["pull_request", "push"], async () => {
    dispatched += 1;
  });
}

const server = await run(app, { env });

async function stop() {
  console.error(JSON.stringify({ msg: "stopping", dispatched }));
  try {
    await server.stop();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
