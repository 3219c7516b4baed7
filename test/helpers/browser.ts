/**
 * Real Chromium for browser tests: Debian's `chromium` (installed by scripts/install-tools.sh)
 * driven by playwright-core over CDP. Nothing is downloaded: Playwright's own browser builds are
 * never used. Screenshots go to test-results/, kept as the run's artifacts.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PROJECT_ROOT, findTool } from '../../src/core/tools.js';

/** Where browser tests keep their screenshots. */
export const SCREENSHOT_DIR = path.join(PROJECT_ROOT, 'test-results', 'screenshots');

/** Starts headless Chromium; close it in `afterAll` (teardown kills it with this process too). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: findTool('chromium'), headless: true });
}

/** A page that records what went wrong in it (uncaught errors), to assert none at the end. */
export async function openPage(
  browser: Browser,
  url: string,
): Promise<{ page: Page; errors: string[] }> {
  // The page's Content-Security-Policy forbids eval, which Playwright's string predicates use.
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 }, bypassCSP: true });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}

/** Saves a full-page screenshot as test-results/screenshots/{name}.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
