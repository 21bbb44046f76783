// Takes docs/dashboard.png: the dashboard page of a running `minyi dev` whose data directory
// was filled with 30 days of history (deploy/browser-test.sh with SCREENSHOT=… does both).
//
//   MINYI_HTTP=http://127.0.0.1:PORT MINYI_DATA_DIR=DIR SCREENSHOT=PATH node screenshot.mjs

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const HTTP = process.env.MINYI_HTTP;
const DATA = process.env.MINYI_DATA_DIR;
const SCREENSHOT = process.env.SCREENSHOT;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
if (!HTTP || !DATA || !SCREENSHOT) {
  console.error("MINYI_HTTP, MINYI_DATA_DIR and SCREENSHOT must be set");
  process.exit(2);
}
const token = JSON.parse(fs.readFileSync(path.join(DATA, "credentials.json"), "utf8")).tokens.supervisor;

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, locale: "zh-CN" });
  await page.goto(`${HTTP}/dashboard?token=${token}`);
  await page.waitForSelector("body[data-ready=true]");
  await page.waitForSelector("#live[data-state=on]");
  const hot = page.locator("details.hotspot").first();
  if (await hot.count()) await hot.locator("summary").click();
  await page.waitForTimeout(300);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`screenshot: ${SCREENSHOT}`);
} finally {
  await browser.close();
}
