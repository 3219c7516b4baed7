/**
 * Video in the classroom page, in real Chromium (fake camera and microphone) against a real
 * `torii dev` and the LiveKit server it runs: in a broadcast room the teacher's page publishes
 * camera and microphone and a student's page plays them (a video with a size and a moving
 * clock, a sound element); the student's own try to publish is refused and the page says so;
 * each page asks for a fresh media token before its short one expires. Media flows over
 * loopback: LiveKit offers 127.0.0.1 only.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import { FAKE_MEDIA_ARGS, launchChromium, openPage, screenshot } from '../helpers/browser.js';
import { devPorts, torii, toriiSpawn, waitForDev, type DevOutput } from '../helpers/cli.js';
import { processGroupMembers, tempDir, waitFor } from '../helpers/procs.js';

/** Long enough for a join and an ICE negotiation over a loaded machine; every wait polls. */
const UI_TIMEOUT_MS = 30_000;
const UI_POLL_MS = 100;
/** The media token lifetime dev hands out here: short, so that the pages must renew it. */
const MEDIA_TTL = '12s';
const ROOM = 'lecture';
type User = 'sensei' | 'hana';
/**
 * Keeps every RTCPeerConnection the page makes in `window.__pcs`, so that the test can read
 * which ICE candidates carried the media (`getStats`).
 */
const KEEP_PEER_CONNECTIONS =
  'window.__pcs = []; const Native = window.RTCPeerConnection;' +
  'window.RTCPeerConnection = class extends Native { constructor(...a) { super(...a); window.__pcs.push(this); } };';
/** Remote addresses of the succeeded candidate pairs of every peer connection, as an expression. */
const USED_REMOTE_ADDRESSES = `(async () => {
  const out = [];
  for (const pc of window.__pcs) {
    const stats = [...(await pc.getStats()).values()];
    for (const p of stats.filter((s) => s.type === 'candidate-pair' && s.state === 'succeeded'))
      out.push(stats.find((s) => s.id === p.remoteCandidateId)?.address);
  }
  return out;
})()`;
/** The page's media status element, as an expression evaluated in the page. */
const STATUS = `document.querySelector('[data-testid="media-status"]')`;

describe('video in the classroom page (Chromium, torii dev, LiveKit)', () => {
  const stateDir = tempDir('web-media');
  const roomsDir = path.join(stateDir, 'rooms');
  let dev: ChildProcess;
  let out: DevOutput;
  let browser: Browser | undefined;
  let web = '';
  const pages = new Map<User, Page>();
  const errors = new Map<User, string[]>();
  const violations = new Map<User, string[]>();

  const page = (u: User): Page => {
    const p = pages.get(u);
    if (!p) throw new Error(`no page for ${u}`);
    return p;
  };
  /** Polls an expression on a page (the page's CSP forbids Playwright's waitForFunction). */
  const until = async (u: User, what: string, check: string): Promise<void> => {
    try {
      await waitFor(what, async () => (await page(u).evaluate(check)) === true, {
        timeoutMs: UI_TIMEOUT_MS,
        intervalMs: UI_POLL_MS,
      });
    } catch (e) {
      const status = await page(u)
        .locator('[data-testid="media-status"]')
        .textContent()
        .catch(() => '?');
      throw new Error(`${u}: ${what} (media: ${status}): ${(e as Error).message.split('\n')[0]}`);
    }
  };
  const mediaState = (u: User): Promise<string | undefined> =>
    page(u).evaluate<string | undefined>(`${STATUS}.dataset.state`);

  beforeAll(async () => {
    mkdirSync(roomsDir);
    // A lecture: the default roles (students may not publish) on a broadcast stage.
    writeFileSync(
      path.join(roomsDir, `${ROOM}.yaml`),
      [
        'apiVersion: torii.io/v1alpha1',
        'kind: Room',
        `metadata: { name: ${ROOM} }`,
        'spec:',
        "  title: 'N5 lecture'",
        `  media: { livekitRoom: ${ROOM}-media, broadcast: true }`,
        '',
      ].join('\n'),
    );
    const ports = await devPorts();
    dev = toriiSpawn(['dev', '--log-level', 'warn'], {
      group: true,
      env: {
        TORII_STATE_DIR: stateDir,
        TORII_ROOMS_DIR: roomsDir,
        ...ports.env,
        TORII_MEDIA_TOKEN_TTL: MEDIA_TTL,
      },
    });
    out = await waitForDev(dev);
    web = /^ {2}Classroom {3}(\S+)/m.exec(out.stdout)?.[1] ?? '';
    browser = await launchChromium(FAKE_MEDIA_ARGS);
    for (const [user, role, name] of [
      ['sensei', 'teacher', 'Tanaka Sensei'],
      ['hana', 'student', 'Hana'],
    ] as const) {
      const minted = torii(
        ['token', '--room', ROOM, '--user', user, '--role', role, '--name', name, '--ttl', '1h'],
        { env: { TORII_KEYS_DIR: path.join(stateDir, 'keys') } },
      );
      expect(minted.status).toBe(0);
      const opened = await openPage(browser, `${web}#token=${minted.stdout.trim()}`, {
        initScript: KEEP_PEER_CONNECTIONS,
      });
      pages.set(user, opened.page);
      errors.set(user, opened.errors);
      violations.set(user, opened.violations);
    }
  });

  afterAll(async () => {
    await browser?.close();
    if (dev?.pid) for (const pid of processGroupMembers(dev.pid)) process.kill(pid, 'SIGKILL');
  });

  test('both pages join the LiveKit room', async () => {
    for (const u of ['sensei', 'hana'] as const)
      await until(u, 'media connected', `${STATUS}.dataset.state === 'connected'`);
    expect(await page('hana').locator('[data-testid="media-status"]').textContent()).toBe(
      'lecture: the presenters are on camera',
    );
    // LiveKit's client came as its own chunk, after the media answer (web-classroom.test.ts: a
    // page without media never loads it)
    const scripts = await page('hana').evaluate<string[]>(
      "performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.js'))",
    );
    expect(scripts.filter((n) => /\/chunks\/media-[\w-]+\.js$/.test(n))).toHaveLength(1);
  });

  test("the teacher publishes camera and microphone; the student's page shows and plays them", async () => {
    await page('sensei').locator('[data-testid="media-publish"]').click();
    await until('sensei', 'publishing', `${STATUS}.dataset.publish === 'publishing'`);
    const video = `document.querySelector('[data-testid="video-sensei"]')`;
    await until(
      'hana',
      "the teacher's video has a picture",
      `(${video})?.videoWidth > 0 && (${video}).videoHeight > 0 && (${video}).getBoundingClientRect().width > 0`,
    );
    const t0 = await page('hana').evaluate<number>(`${video}.currentTime`);
    await until(
      'hana',
      "the teacher's video plays",
      `${video}.currentTime > ${t0 + 1} && !${video}.paused`,
    );
    const audio = `document.querySelector('[data-testid="audio-sensei"]')`;
    await until(
      'hana',
      "the teacher's sound plays",
      `!!${audio} && !${audio}.paused && ${audio}.srcObject.getAudioTracks().length === 1`,
    );
    // over loopback: the only address LiveKit offers is 127.0.0.1. The stats of a pair that
    // carries media can lag behind the media on a loaded machine: wait for one to say so.
    await until(
      'hana',
      'a candidate pair succeeded',
      `${USED_REMOTE_ADDRESSES}.then((a) => a.length > 0)`,
    );
    const used = await page('hana').evaluate<string[]>(USED_REMOTE_ADDRESSES);
    expect(used.length).toBeGreaterThan(0);
    expect(new Set(used)).toEqual(new Set(['127.0.0.1']));
    // the teacher sees its own camera (muted)
    await until(
      'sensei',
      'the local preview',
      `document.querySelector('[data-testid="video-sensei"]')?.muted === true`,
    );
    await screenshot(page('sensei'), 'web-media-sensei');
    await screenshot(page('hana'), 'web-media-hana');
  });

  test("in the broadcast room the student's publish is refused and the page says so", async () => {
    await page('hana').locator('[data-testid="media-publish"]').click();
    await until('hana', 'refused shown', `${STATUS}.dataset.publish === 'refused'`);
    expect(await page('hana').locator('[data-testid="media-status"]').textContent()).toMatch(
      /^Camera refused: .*insufficient permissions/,
    );
    // nothing of hana reached the teacher
    expect(await page('sensei').locator('[data-testid="video-hana"]').count()).toBe(0);
    expect(await mediaState('hana')).toBe('connected');
  });

  test('each page renews its media token before it expires', async () => {
    const expiresAt = (u: User): Promise<string> =>
      page(u).evaluate<string>(`${STATUS}.dataset.expiresAt`);
    for (const u of ['sensei', 'hana'] as const) {
      const first = await expiresAt(u);
      await until(u, 'a renewed media token', `${STATUS}.dataset.expiresAt !== '${first}'`);
      expect(Date.now()).toBeLessThan(Date.parse(first));
      expect(Date.parse(await expiresAt(u))).toBeGreaterThan(Date.parse(first));
      expect(await mediaState(u)).toBe('connected');
    }
  });

  test('no page error, no policy violation', () => {
    for (const u of ['sensei', 'hana'] as const) {
      expect(errors.get(u)).toEqual([]);
      expect(violations.get(u)).toEqual([]);
    }
  });
});
