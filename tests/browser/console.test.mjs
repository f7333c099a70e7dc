// Browser tests of the operator console: the real server binary on a fresh SQLite database,
// a fake Graph API and a fake CRM on loopback, and Debian's Chromium (headless) driven by
// playwright-core. Run by `cargo xtask browser`, which builds the binary and passes:
//   INSTA_ROUTER_BIN  the server binary
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR    where the screenshots of every page go
//
// The tests run in order and share one server: each step builds on the data of the last.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.INSTA_ROUTER_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || "console-screenshots");
const APP_SECRET = "browser-test-app-secret";
const ACCOUNT_A = "17841400000000001";
const ACCOUNT_B = "17841400000000002";
const CUSTOMER_A = "1111111111111111";
const CUSTOMER_B = "2222222222222222";

/// A fake HTTP peer on loopback that records every request; `answer(req, body)` gives
/// `[status, json]`.
async function fakePeer(answer) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      requests.push({ method: req.method, path: req.url, body, headers: req.headers });
      const [status, json] = answer(req, body);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, requests, url: `http://127.0.0.1:${server.address().port}` };
}

/// Polls `check` every 50 ms until it returns a truthy value (10 s at most).
async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${serverOutput()}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

let graph, crm, server, base, adminKey, accountKey, browser, accountA, accountB, dir;
let crmStatus = 500;
let subscribed = false;
const SUBSCRIBED_APPS = new URL("../fixtures/graph/subscribed-apps.json", import.meta.url);
let output = "";
const serverOutput = () => output.split("\n").slice(-30).join("\n");
// Every request any page made, to check that none left the server.
const requested = [];
const consoleErrors = [];

async function api(method, route, body, key = adminKey) {
  const res = await fetch(base + route, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/// Posts a signed Meta webhook with one text message.
let mids = 0;
async function webhook(account, customer, text) {
  mids += 1;
  const body = JSON.stringify({
    object: "instagram",
    entry: [{
      id: account,
      time: Date.now(),
      messaging: [{
        sender: { id: customer },
        recipient: { id: account },
        timestamp: Date.now(),
        message: { mid: `mid.browser.${mids}`, text },
      }],
    }],
  });
  const signature = crypto.createHmac("sha256", APP_SECRET).update(body).digest("hex");
  const res = await fetch(`${base}/webhooks/instagram`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": `sha256=${signature}` },
    body,
  });
  assert.equal(res.status, 200, await res.text());
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.on("request", (r) => requested.push(r.url()));
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("console", (m) => {
    // Pages the tests are refused on purpose (401, 403, 404) are logged by the browser too.
    const refused = /Failed to load resource: the server responded with a status of 4(01|03|04|22)/;
    if (m.type() === "error" && !refused.test(m.text())) consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return page;
}

async function signIn(page, key) {
  await page.goto(`${base}/console`);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const isSend = (url) => new URL(url, "http://graph").pathname.endsWith("/me/messages");
const sends = () => graph.requests.filter((r) => r.method === "POST" && isSend(r.path));

before(async () => {
  assert.ok(BIN, "INSTA_ROUTER_BIN names the server binary (cargo xtask browser sets it)");
  graph = await fakePeer((req) => {
    if (req.method === "POST" && isSend(req.url)) {
      return [200, { recipient_id: CUSTOMER_A, message_id: `m_${crypto.randomUUID()}` }];
    }
    // Until the console subscribes the account, Meta reports no subscribed fields.
    if (new URL(req.url, "http://graph").pathname.endsWith("/subscribed_apps")) {
      if (req.method === "POST") {
        subscribed = true;
        return [200, { success: true }];
      }
      return [200, { data: subscribed ? JSON.parse(fs.readFileSync(SUBSCRIBED_APPS, "utf8")).data : [] }];
    }
    return [200, { success: true }];
  });
  crm = await fakePeer(() => [crmStatus, { ok: crmStatus < 300 }]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "insta-router-browser-"));
  server = spawn(BIN, ["serve"], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite://${dir}/db.sqlite?mode=rwc`,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_FORMAT: "text",
      FACEBOOK_APP_SECRET: APP_SECRET,
      FACEBOOK_VERIFY_TOKEN: "browser-verify",
      INSTAGRAM_API_BASE_URL: graph.url,
      CRM_ALLOW_PRIVATE_NETWORKS: "true",
      // One attempt: a refused delivery is dead at once, for the retry test.
      CRM_RETRY_SCHEDULE: "0s",
      SUBSCRIBE_ON_CREATE: "false",
      SHUTDOWN_DRAIN_DELAY: "0",
    },
  });
  server.stdout.on("data", (d) => (output += d));
  server.stderr.on("data", (d) => (output += d));
  const port = await eventually("the server to listen", () => output.match(/listening on http:\/\/[^:]+:(\d+)/)?.[1], 30_000);
  base = `http://127.0.0.1:${port}`;
  adminKey = await eventually("the first admin key", () => output.match(/admin API key: (\S+)/)?.[1]);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  fs.mkdirSync(SHOTS, { recursive: true });

  const make = async (ig, username) => {
    const res = await api("POST", "/api/v1/accounts", {
      instagram_account_id: ig,
      username,
      access_token: `EAA-browser-token-${username}`,
      crm_webhook_url: `${crm.url}/crm/${username}`,
      webhook_secret: `browser-${username}-signing-secret`,
    });
    assert.equal(res.status, 201, JSON.stringify(res.json));
    return res.json.account_id;
  };
  accountA = await make(ACCOUNT_A, "shop_a");
  accountB = await make(ACCOUNT_B, "shop_b");
  const key = await api("POST", "/api/v1/api-keys", { account_id: accountA, name: "shop a console" });
  assert.equal(key.status, 201, JSON.stringify(key.json));
  accountKey = key.json.api_key;
  await webhook(ACCOUNT_B, CUSTOMER_B, "hello from the other shop's customer");
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  graph?.server.close();
  crm?.server.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("a wrong key is refused and the right one signs in, kept in an HttpOnly SameSite=Strict cookie", async () => {
  const page = await newPage();
  await page.goto(`${base}/console/conversations`);
  assert.match(page.url(), /\/console\/login$/);
  await signIn(page, "irk_this_key_does_not_exist");
  await page.getByText("No such API key.").waitFor();
  assert.match(page.url(), /\/console\/login$/);

  await signIn(page, adminKey);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "insta_router_session");
  assert.ok(session, "a session cookie is set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/console");
  assert.ok(!(await page.content()).includes(adminKey), "the key is not in the page");
  assert.ok(!page.url().includes(adminKey), "the key is not in the URL");

  // Signing out ends the session: the next page asks to sign in again.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
  await page.goto(`${base}/console/rules`);
  assert.match(page.url(), /\/console\/login$/);
  await page.context().close();
});

test("a webhook appears in the inbox without a reload, and a reply reaches the Graph API once", async () => {
  const page = await newPage();
  await signIn(page, adminKey);
  await page.goto(`${base}/console/conversations?account=${accountA}`);
  await page.getByText("No conversations yet.").waitFor();
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations += 1; });

  await webhook(ACCOUNT_A, CUSTOMER_A, "Is the red dress still available?");
  await page.getByText("Is the red dress still available?").waitFor({ timeout: 10_000 });
  assert.equal(navigations, 0, "the inbox updated in place");
  await page.getByText("1 unread").waitFor();

  await page.getByRole("link", { name: /1111111111111111/ }).click();
  await page.getByText("The 24-hour window is open").waitFor();
  const form = page.locator("form[action$='/reply']");
  const key = await form.locator("input[name=idempotency_key]").inputValue();
  const csrf = await form.locator("input[name=csrf]").inputValue();
  await page.getByLabel("Message").fill("Yes, in every size!");
  await page.getByRole("button", { name: "Send" }).click();
  const notice = await page.getByRole("status").textContent();
  const messageId = notice.match(/msg_[0-9a-f]+/)?.[0];
  assert.ok(messageId, `the notice names the send: ${notice}`);

  // The same form posted again (a double click, a resubmitted page) is the same send.
  const again = await page.request.post(`${base}/console/conversations/conv_${CUSTOMER_A}_${ACCOUNT_A}/reply`, {
    form: { csrf, idempotency_key: key, text: "Yes, in every size!" },
    headers: { origin: base },
    maxRedirects: 0,
  });
  assert.equal(again.status(), 303);
  assert.equal(again.headers().location.match(/msg_[0-9a-f]+/)?.[0], messageId, "the same key answers the same send");
  // The send completes, observed through the API, and Meta got exactly one request.
  await eventually("the send to be sent", async () => (await api("GET", `/api/v1/messages/${messageId}/status`)).json.status === "sent");
  assert.equal(sends().length, 1);
  assert.equal(JSON.parse(sends()[0].body).message.text, "Yes, in every size!");
  assert.equal(JSON.parse(sends()[0].body).recipient.id, CUSTOMER_A);

  // The reply shows in the history, and a form without the session's token is refused.
  await page.goto(`${base}/console/conversations/conv_${CUSTOMER_A}_${ACCOUNT_A}`);
  await page.getByText("Yes, in every size!").first().waitFor();
  const forged = await page.request.post(`${base}/console/conversations/conv_${CUSTOMER_A}_${ACCOUNT_A}/reply`, {
    form: { csrf: "0".repeat(64), idempotency_key: "forged-1", text: "forged" },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  assert.equal(sends().length, 1);
  await page.context().close();
});

test("a dead delivery is retried against the CRM and seen delivered", async () => {
  const page = await newPage();
  await signIn(page, adminKey);
  await page.goto(`${base}/console/deliveries?account=${accountA}&status=dead`);
  // The CRM answered 500 to the inbound message's delivery, with a single attempt allowed.
  const row = page.locator("table.deliveries a").first();
  await row.waitFor({ timeout: 15_000 });
  await row.click();
  await page.getByText("dead").first().waitFor();
  const before = crm.requests.length;
  crmStatus = 200;
  await page.getByRole("button", { name: "Retry now" }).click();
  await page.getByRole("status").waitFor();
  await page.locator("#delivery-state", { hasText: "delivered" }).waitFor({ timeout: 15_000 });
  assert.ok(crm.requests.length > before, "the CRM was called again");
  const last = crm.requests.at(-1);
  assert.equal(last.method, "POST");
  assert.match(last.path, /\/crm\/shop_a/);
  await page.context().close();
});

test("editing a rule changes what the dry run answers", async () => {
  const page = await newPage();
  await signIn(page, adminKey);
  await page.goto(`${base}/console/rules?account=${accountA}`);
  await page.getByText("No rules yet.").waitFor();
  await page.getByRole("link", { name: "New rule" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Prices");
  await page.getByLabel(/^Reply/).fill("Our prices are on the website, {username}.");
  await page.getByLabel(/^Conditions/).fill('[{"type": "keywords", "any_of": ["price"]}]');
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Rule saved.").waitFor();

  await page.getByLabel("Customer's message").fill("what is the price?");
  await page.getByRole("button", { name: "Try" }).click();
  assert.equal((await page.locator("#trial-rule").textContent()).trim(), "Prices");

  await page.getByRole("link", { name: "Prices" }).click();
  await page.getByLabel(/^Conditions/).fill('[{"type": "keywords", "any_of": ["cost"]}]');
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Rule saved.").waitFor();
  await page.getByLabel("Customer's message").fill("what is the price?");
  await page.getByRole("button", { name: "Try" }).click();
  assert.equal((await page.locator("#trial-rule").textContent()).trim(), "No rule");
  await page.getByText(/Prices: /).waitFor();

  // A bad condition is refused with the reason, and nothing changes.
  await page.getByRole("link", { name: "Prices" }).click();
  await page.getByLabel(/^Conditions/).fill('[{"type": "nonsense"}]');
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText(/Not saved: conditions: unknown variant/).waitFor();
  assert.match(await page.getByLabel(/^Conditions/).inputValue(), /nonsense/, "what was typed is kept");
  await page.goto(`${base}/console/rules?account=${accountA}&try=the+cost%3F`);
  assert.equal((await page.locator("#trial-rule").textContent()).trim(), "Prices");
  await page.context().close();
});

test("an account key sees only its own account", async () => {
  const page = await newPage();
  await signIn(page, accountKey);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  assert.equal(await page.getByRole("option", { name: "All accounts" }).count(), 0);

  await page.goto(`${base}/console/conversations`);
  await page.getByText(CUSTOMER_A).waitFor();
  assert.equal(await page.getByText(CUSTOMER_B).count(), 0);
  // The other account's pages answer 404, whatever is put in the URL.
  const other = await page.goto(`${base}/console/conversations/conv_${CUSTOMER_B}_${ACCOUNT_B}`);
  assert.equal(other.status(), 404);
  const picked = await page.goto(`${base}/console/conversations?account=${accountB}`);
  assert.equal(picked.status(), 200);
  assert.equal(await page.getByText(CUSTOMER_B).count(), 0);
  const rules = await page.goto(`${base}/console/rules/new?account=${accountB}`);
  assert.equal(rules.status(), 404);

  await page.goto(`${base}/console/accounts`);
  await page.getByRole("heading", { name: "@shop_a" }).waitFor();
  assert.equal(await page.getByText("@shop_b").count(), 0);
  assert.equal(await page.getByText("Connect an account").count(), 0, "no account creation for an account key");
  await page.context().close();
});

test("the accounts page checks and makes the webhook subscription at Meta", async () => {
  const page = await newPage();
  await signIn(page, adminKey);
  await page.goto(`${base}/console/accounts`);
  const card = page.locator(`#account-${accountA}`);
  await card.getByText("not checked").waitFor();
  await card.getByRole("link", { name: "Check now" }).click();
  await card.getByText(/missing messages/).waitFor();
  await card.getByRole("button", { name: "Subscribe" }).click();
  await page.getByText("Subscribed at Meta.").waitFor();
  await card.getByText("subscribed", { exact: true }).waitFor();
  const posts = graph.requests.filter((r) => r.method === "POST" && r.path.includes("subscribed_apps"));
  assert.equal(posts.length, 1, "one subscription request");
  // Only the account asked about was checked at Meta.
  assert.equal(await page.locator(`#account-${accountB}`).getByText("not checked").count(), 1);
  await page.context().close();
});

test("pages that show data work without JavaScript", async () => {
  const page = await newPage({ javaScriptEnabled: false });
  await signIn(page, adminKey);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  assert.notEqual((await page.locator("#fig-inbound").textContent()).trim(), "0");
  await page.goto(`${base}/console/conversations?account=${accountA}`);
  await page.getByText("You: Yes, in every size!").waitFor();
  await page.goto(`${base}/console/conversations/conv_${CUSTOMER_A}_${ACCOUNT_A}`);
  await page.getByText("Is the red dress still available?").waitFor();
  await page.goto(`${base}/console/deliveries?account=${accountA}&status=all`);
  await page.locator("table.deliveries").waitFor();
  await page.context().close();
});

test("the keyboard reaches the content first, and the dashboard draws its chart", async () => {
  const page = await newPage();
  await signIn(page, adminKey);
  await page.locator(".chart canvas").first().waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");
  await page.context().close();
});

test("screenshots of every page at desktop and phone widths", async () => {
  const conversation = `/console/conversations/conv_${CUSTOMER_A}_${ACCOUNT_A}`;
  const pages = [
    ["dashboard", "/console?range=7d"],
    ["conversations", `/console/conversations?account=${accountA}`],
    ["conversation", conversation],
    ["deliveries", `/console/deliveries?account=${accountA}&status=all`],
    ["rules", `/console/rules?account=${accountA}&try=what+does+it+cost`],
    ["accounts", "/console/accounts"],
  ];
  for (const [width, height, name] of [[1280, 900, "desktop"], [390, 844, "phone"]]) {
    const page = await newPage({ viewport: { width, height } });
    await page.goto(`${base}/console/login`);
    await page.screenshot({ path: path.join(SHOTS, `login-${name}.png`), fullPage: true });
    await signIn(page, adminKey);
    await page.getByRole("heading", { name: "Dashboard" }).waitFor();
    for (const [label, route] of pages) {
      const res = await page.goto(base + route);
      assert.equal(res.status(), 200, route);
      await page.waitForLoadState("networkidle");
      await page.screenshot({ path: path.join(SHOTS, `${label}-${name}.png`), fullPage: true });
      // Nothing wider than the screen: the page is usable without scrolling sideways.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${label} at ${name} width is ${overflow}px wider than the screen`);
    }
    await page.context().close();
  }
  const written = fs.readdirSync(SHOTS).filter((f) => f.endsWith(".png"));
  assert.equal(written.length, 2 * (pages.length + 1));
  console.log(`screenshots: ${SHOTS}`);
});

test("no page loaded anything from outside the server, and no page logged an error", () => {
  assert.ok(requested.length > 20, "the pages made requests");
  const outside = requested.filter((u) => !u.startsWith(base + "/") && !u.startsWith("data:"));
  assert.deepEqual(outside, []);
  assert.deepEqual(consoleErrors, []);
});
