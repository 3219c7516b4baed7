/**
 * Real Chromium for browser tests: Debian's `chromium` (installed by scripts/install-tools.sh)
 * driven by playwright-core over CDP. Nothing is downloaded: Playwright's own browser builds are
 * never used. Screenshots go to test-results/, kept as the run's artifacts.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

/** Where browser tests keep their screenshots. */
export const SCREENSHOT_DIR = path.join(PROJECT_ROOT, 'test-results', 'screenshots');

/**
 * Chromium flags for media tests: a fake camera and microphone (a test pattern and a tone),
 * permission granted without a prompt, and sound that plays without a click.
 */
export const FAKE_MEDIA_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** Starts headless Chromium; close it in `afterAll` (teardown kills it with this process too). */
export async function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: findTool('chromium'), headless: true, args });
}

/** What a page opened by {@link openPage} records, to assert none at the end. */
export interface OpenedPage {
  page: Page;
  /** Uncaught errors. */
  errors: string[];
  /** Content-Security-Policy violations (`directive blocked-uri`), across reloads. */
  violations: string[];
}

/**
 * A page under its real Content-Security-Policy that records what went wrong in it: uncaught
 * errors and CSP violations. Tests poll it with `page.evaluate` (CDP's evaluation is not subject
 * to the page's policy); Playwright's string predicates (`waitForFunction`) are, since they
 * compile with `new Function`, which the policy forbids. `initScript` runs before the page's own
 * scripts on every load (a test's instrumentation).
 */
export async function openPage(
  browser: Browser,
  url: string,
  o: { initScript?: string } = {},
): Promise<OpenedPage> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const errors: string[] = [];
  const violations: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.exposeFunction('__toriiCspViolation', (v: string) => violations.push(v));
  // A string (the tests type-check without the DOM): runs before the page's own scripts, on
  // every load.
  await page.addInitScript(
    "document.addEventListener('securitypolicyviolation', (e) => " +
      'void window.__toriiCspViolation(`${e.effectiveDirective} ${e.blockedURI}`));',
  );
  if (o.initScript) await page.addInitScript(o.initScript);
  await page.goto(url);
  return { page, errors, violations };
}

/** Saves a full-page screenshot as test-results/screenshots/{name}.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
