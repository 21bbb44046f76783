// Browser test of the supervisor dashboard in headless Chromium (Debian's `chromium`, driven
// by playwright-core; no browser download). Run by deploy/browser-test.sh against a running
// `minyi dev`:
//
//   MINYI_HTTP=http://127.0.0.1:PORT MINYI_GRPC=http://127.0.0.1:PORT MINYI_DATA_DIR=DIR \
//   MINYI_BIN_DIR=target/debug [CHROMIUM=/usr/bin/chromium] node dashboard.test.mjs
//
// It seeds petitions over Open311, acts as a handler with `minyi-handler`, computes the
// expected figures itself from what it did and what Open311 reports, and checks the page shows
// them: sign-in, filters, figures, hotspots, masking of personal data, the English switch, a
// CSV export, the wall, and a new petition appearing on the open page within 2 seconds.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const HTTP = need("MINYI_HTTP");
const GRPC = need("MINYI_GRPC");
const DATA = need("MINYI_DATA_DIR");
const BIN = need("MINYI_BIN_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

const creds = JSON.parse(fs.readFileSync(path.join(DATA, "credentials.json"), "utf8"));
const secrets = JSON.parse(fs.readFileSync(path.join(DATA, "dev-secrets.json"), "utf8"));
const SUPERVISOR = creds.tokens.supervisor;
const AGENT = creds.tokens.agent;

const PHONES = ["13912345678", "13800138000", "13700137000"];
const steps = [];
function step(name) {
  steps.push(name);
  console.log(`· ${name}`);
}

// ------------------------------------------------------------------ the API, as clients use it
/// Files a petition as a 311 app would; `code` is the catalog item the app chose (the demo
/// catalog's), so classification is confident and dispatches it.
async function submit(code, text, address, phone) {
  const body = new URLSearchParams({ api_key: AGENT, service_code: code, description: text, address_string: address, phone, first_name: "测试" });
  const r = await fetch(`${HTTP}/open311/v2/requests.json`, { method: "POST", body });
  const j = await r.json();
  assert.ok(r.ok, JSON.stringify(j));
  return j[0].service_request_id;
}

async function request(id) {
  const r = await fetch(`${HTTP}/open311/v2/requests/${id}.json`);
  assert.equal(r.status, 200);
  return (await r.json())[0];
}

async function overview() {
  const r = await fetch(`${HTTP}/api/v1/dashboard/overview`, { headers: { Authorization: `Bearer ${SUPERVISOR}` } });
  assert.equal(r.status, 200);
  return r.json();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// The coarse state from Open311's status notes (Chinese, then English).
function stateOf(req) {
  const n = req.status_notes;
  if (n.includes("being classified") || n.includes("being sent")) return "pending";
  if (n.includes("Duplicate")) return "duplicate";
  if (n.includes("waiting for a dispatcher")) return "needs_dispatcher";
  if (n.includes("in fast arbitration")) return "arbitration";
  if (n.includes("Completed")) return "completed";
  if (n.includes("Accepted")) return "accepted";
  return "dispatched";
}

async function settled(ids) {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const reqs = await Promise.all(ids.map(request));
    if (reqs.every((r) => stateOf(r) !== "pending")) return reqs;
    assert.ok(Date.now() < deadline, "petitions were not classified within 180 s");
    await sleep(500);
  }
}

function cli(bin, args, env) {
  return execFileSync(path.join(BIN, bin), args, { env: Object.assign({}, process.env, env || {}), encoding: "utf8" });
}

function pct(n, d) {
  return d ? ((n / d) * 100).toFixed(1) + "%" : "—";
}

// ------------------------------------------------------------------ the test
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: "zh-CN", acceptDownloads: true });
  const page = await context.newPage();
  const outside = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(HTTP) && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) outside.push(r.url());
  });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  step("sign-in: the page asks for a token, refuses an agent's, takes a supervisor's");
  await page.goto(`${HTTP}/dashboard`);
  await page.waitForURL(/\/dashboard\/signin/);
  await page.fill("#token", AGENT);
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.getElementById("error").textContent.includes("supervisor"));
  await page.fill("#token", SUPERVISOR);
  await page.click("button[type=submit]");
  await page.waitForURL(`${HTTP}/dashboard`);
  await page.waitForSelector("#live[data-state=on]", { timeout: 10_000 });
  assert.equal(await page.textContent("h1"), "民意速办 · 监管驾驶舱");

  step("seed: five petitions over Open311 (three alike in one community), numbers in the texts");
  const ids = [];
  ids.push(await submit("CG-05-039", "东周社区华夏路大排档每天凌晨喧哗，噪声扰民，请回电13912345678", "光明街道东周社区华夏路", PHONES[0]));
  ids.push(await submit("CG-05-039", "东周社区华夏路大排档每天凌晨喧哗，噪声扰民严重", "光明街道东周社区华夏路", PHONES[1]));
  ids.push(await submit("CG-05-039", "华夏路大排档每天凌晨喧哗噪声扰民，电话 137 0013 7000", "光明街道东周社区华夏路", PHONES[2]));
  ids.push(await submit("RS-01-001", "电子厂拖欠工资三个月了", "公明街道上村社区", PHONES[0]));
  ids.push(await submit("CG-09-001", "原来的路灯没了，一直没人补上", "马田街道合水口社区", PHONES[1]));
  const reqs = await settled(ids);
  const states = reqs.map(stateOf);
  console.log("  states:", states.join(", "));

  step("handle: the first dispatched petition is accepted and completed by its unit");
  const units = (await overview()).options.units;
  const di = states.findIndex((s) => s === "dispatched");
  let completed = 0;
  if (di >= 0) {
    const unit = units.find((u) => u.name === reqs[di].agency_responsible);
    assert.ok(unit, `unit ${reqs[di].agency_responsible} not in the options`);
    const token = cli("minyi", ["token", "--role", "handler", "--unit", unit.code, "--sub", "browser-test"], {
      MINYI_JWT_SECRET: secrets.jwt_secret,
    }).trim();
    const handler = ["--endpoint", GRPC, "--token", token];
    cli("minyi-handler", [...handler, "accept", ids[di]]);
    cli("minyi-handler", [...handler, "complete", ids[di], "--reply", "已清理并加强巡查"]);
    completed = 1;
  }

  // What the page must show, from what this test did and what Open311 says.
  const received = ids.length;
  const dispatched = states.filter((s) => !["duplicate", "needs_dispatcher"].includes(s)).length;
  const expect = {
    today: String(received),
    in_range: String(received),
    open: String(dispatched - completed),
    // Nothing was returned or re-routed.
    first_dispatch_accuracy: pct(dispatched, dispatched),
    // The only completion was on time; nothing open is past its deadline yet.
    on_time_completion: pct(completed, completed),
    // Only the accepted ticket's acceptance is settled (the others' limits have not passed).
    response_rate: pct(completed, completed),
    resolution_rate: pct(completed, dispatched),
    satisfaction_rate: "—",
  };
  console.log("  expected:", JSON.stringify(expect));

  step("figures: the page shows what was computed here");
  const figure = (key) => page.textContent(`[data-figure=${key}] .card-value`);
  await page.waitForFunction(
    (want) => {
      const v = (k) => (document.querySelector(`[data-figure=${k}] .card-value`) || {}).textContent;
      return Object.entries(want).every(([k, x]) => v(k) === x);
    },
    expect,
    { timeout: 15_000 },
  ).catch(async (e) => {
    const got = {};
    for (const k of Object.keys(expect)) got[k] = await figure(k);
    throw new Error(`figures differ: got ${JSON.stringify(got)}: ${e.message}`);
  });
  if (dispatched) {
    assert.equal(await page.textContent("[data-figure=resolution_rate] .card-sub"), `${completed} / ${dispatched}`);
  }

  step("hotspots: the three alike petitions of 东周社区 form the first hotspot; it opens its tickets");
  const hot = page.locator("details.hotspot").first();
  await hot.waitFor();
  assert.equal(await hot.getAttribute("data-community"), "CM-GM-DONGZHOU");
  assert.equal(await hot.locator(".size").getAttribute("data-size"), "3");
  await hot.locator("summary").click();
  assert.equal(await hot.locator("tbody tr").count(), 3);

  step("personal data: no phone number is readable anywhere on the page");
  const text = await page.evaluate(() => document.body.innerText);
  for (const p of PHONES) assert.ok(!text.includes(p), `the page shows ${p}`);
  assert.ok(!text.includes("137 0013 7000"));
  assert.ok(text.includes("139****5678"), "masked numbers are shown");

  step("filters: another street shows none of the 东周 petitions");
  await page.selectOption("#f-street", "ST-MT");
  await page.click("#filters button[type=submit]");
  await page.waitForFunction(() => document.querySelector("[data-figure=in_range] .card-value").textContent === "1");
  assert.ok(page.url().includes("street=ST-MT"));
  await page.click("#f-reset");
  await page.waitForFunction((n) => document.querySelector("[data-figure=in_range] .card-value").textContent === n, String(received));

  step("CSV: the league table downloads with its header");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("button.csv[data-table=league]")]);
  const csv = fs.readFileSync(await download.path(), "utf8");
  assert.ok(csv.startsWith("\uFEFF排名,单位代码,单位"), csv.slice(0, 80));

  step("live: a new petition shows on the open page within 2 s");
  const started = Date.now();
  await submit("JT-03-008", "这里的人行道砖缺失，晚上走路很危险", "光明街道光明社区", PHONES[2]);
  await page.waitForFunction((n) => document.querySelector("[data-figure=today] .card-value").textContent === n, String(received + 1), {
    timeout: 2_000,
  });
  const latency = Date.now() - started;
  console.log(`  shown after ${latency} ms`);
  assert.ok(latency <= 2_000);

  step("English: the switch translates the page");
  await page.click("#lang");
  assert.equal(await page.textContent("h1"), "Minyi · Supervisor dashboard");
  assert.equal(await page.textContent("[data-figure=first_dispatch_accuracy] .card-label"), "First-dispatch accuracy");
  await page.click("#lang");
  assert.equal(await page.textContent("[data-figure=first_dispatch_accuracy] .card-label"), "一次分拨准确率");

  step("wall: ?token= opens the 大屏, which follows the same figures");
  const wall = await context.newPage();
  await wall.goto(`${HTTP}/dashboard/wall?token=${SUPERVISOR}`);
  await wall.waitForFunction((n) => (document.querySelector("[data-figure=today] .kpi-value") || {}).textContent === n, String(received + 1));
  await wall.waitForSelector("#live[data-state=on]");
  await submit("JT-03-014", "市政井盖坏了很久了，一直没人来修", "凤凰街道塘尾社区", PHONES[0]);
  await wall.waitForFunction((n) => document.querySelector("[data-figure=today] .kpi-value").textContent === n, String(received + 2), {
    timeout: 2_000,
  });

  step("sign-out: back to the sign-in page; a bad stored token is refused there");
  await page.click("#signout");
  await page.waitForURL(/\/dashboard\/signin/);
  await page.evaluate(() => localStorage.setItem("minyi.dashboard.token", "not-a-token"));
  await page.goto(`${HTTP}/dashboard`);
  await page.waitForURL(/\/dashboard\/signin/);
  await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);

  assert.deepEqual(outside, [], "the pages fetched nothing from elsewhere");
  assert.deepEqual(consoleErrors, [], "no script errors");
  console.log(`ok: ${steps.length} steps`);
} catch (e) {
  console.error(`FAILED at step: ${steps[steps.length - 1]}`);
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
