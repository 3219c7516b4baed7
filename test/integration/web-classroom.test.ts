/**
 * The classroom page in real Chromium against a real `torii dev`: a teacher and two students,
 * each on the link the banner prints. They see each other join, chat, raise hands in order, the
 * teacher lowers one (only a moderator's page offers it; a student's try from the SDK is
 * refused); a stroke drawn on
 * the teacher's page reaches the others and survives a reload; a student reloaded mid-class gets
 * the history; a kicked student's page says so and cannot rejoin; turning the students' chat off
 * in the Room file disables it on their open pages and tells them; deleting the Room file ends
 * the session on every page. Screenshots of the three pages stay in test-results/screenshots.
 */
import { connect } from '@nats-io/transport-node';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import { RoomClient } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { KeyFile } from '../../src/infra/keys.js';
import { ServiceUser } from '../../src/infra/natsconf.js';
import { ServiceSubject } from '../../src/protocol/subjects.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { launchChromium, openPage, screenshot } from '../helpers/browser.js';
import { devPorts, torii, toriiSpawn, waitForDev, type DevOutput } from '../helpers/cli.js';
import { freePort, processGroupMembers, tempDir, waitFor } from '../helpers/procs.js';

/** Long enough for a join over a loaded machine; every wait polls. */
const UI_TIMEOUT_MS = 15_000;
/** How often a wait looks at a page again, in milliseconds. */
const UI_POLL_MS = 100;
const USERS = ['sensei', 'hana', 'kenji'] as const;
/** A student who joins later with a short-lived token. */
type User = (typeof USERS)[number] | 'aiko' | 'yui';
/** Shortest token `torii token` mints: the page must renew it on its own to stay. */
const SHORT_TTL = '10s';

describe('the classroom page in Chromium against torii dev', () => {
  const stateDir = tempDir('web-classroom');
  const roomsDir = path.join(stateDir, 'rooms');
  let dev: ChildProcess;
  let out: DevOutput;
  /** The page's URL, from dev's banner. */
  let classroom = '';
  let browser: Browser | undefined;
  let natsUrl = '';
  const links = new Map<User, string>();
  const pages = new Map<User, Page>();
  /** Uncaught errors of each page, expected to stay empty. */
  const errors = new Map<User, string[]>();
  /** Content-Security-Policy violations of each page, expected to stay empty. */
  const violations = new Map<User, string[]>();

  const page = (u: User): Page => {
    const p = pages.get(u);
    if (!p) throw new Error(`no page for ${u}`);
    return p;
  };
  const byTestId = (u: User, id: string) => page(u).locator(`[data-testid="${id}"]`);
  /**
   * Waits until `check` (an expression) holds on a page. Polled from here with `evaluate`: the
   * pages run under their real Content-Security-Policy, which Playwright's `waitForFunction`
   * (compiled in the page with `new Function`) would violate. An evaluation that fails (the page
   * reloading) counts as not yet.
   */
  const until = async (u: User, what: string, check: string): Promise<void> => {
    try {
      await waitFor(what, async () => (await page(u).evaluate(check)) === true, {
        timeoutMs: UI_TIMEOUT_MS,
        intervalMs: UI_POLL_MS,
      });
    } catch (e) {
      const status = await byTestId(u, 'status')
        .textContent()
        .catch(() => '?');
      throw new Error(`${u}: ${what} (status: ${status}): ${(e as Error).message.split('\n')[0]}`);
    }
  };
  const ids = (testId: string): string =>
    `[...document.querySelectorAll('[data-testid="${testId}"] [data-user-id]')].map(e => e.dataset.userId).join(',')`;
  const open = async (u: User): Promise<void> => {
    const opened = await openPage(browser as Browser, links.get(u) ?? '');
    pages.set(u, opened.page);
    errors.set(u, opened.errors);
    violations.set(u, opened.violations);
  };

  beforeAll(async () => {
    mkdirSync(roomsDir);
    copyFileSync(
      path.join(PROJECT_ROOT, 'examples', 'rooms', 'demo.yaml'),
      path.join(roomsDir, 'demo.yaml'),
    );
    const ports = await devPorts();
    natsUrl = `nats://127.0.0.1:${ports.nats}`;
    // every flag as its environment variable, as the README's `make dev` would take them
    dev = toriiSpawn(['dev', '--log-level', 'warn'], {
      group: true,
      env: {
        TORII_STATE_DIR: stateDir,
        TORII_ROOMS_DIR: roomsDir,
        ...ports.env,
        // media in the page has its own test (web-media.test.ts); here it is off
        TORII_MEDIA: 'off',
      },
    });
    out = await waitForDev(dev);
    classroom = /^ {2}Classroom {3}(\S+)/m.exec(out.stdout)?.[1] ?? '';
    for (const m of out.stdout.matchAll(/^ {2}as (\w+) \((\w+)\):\s+(\S+)$/gm))
      links.set(m[1] as User, m[3] as string);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    if (dev?.pid) for (const pid of processGroupMembers(dev.pid)) process.kill(pid, 'SIGKILL');
  });

  test('the banner prints a ready-to-open link per participant, token in the fragment', () => {
    const web = /^http:\/\/127\.0\.0\.1:\d+\/$/.exec(classroom)?.[0];
    expect(web).toBeDefined();
    for (const u of USERS)
      expect(links.get(u)).toMatch(new RegExp(`^${web}#token=[\\w-]+\\.[\\w-]+\\.[\\w-]+$`));
  });

  test('a link whose token cannot be read says so, and nothing throws', async () => {
    const opened = await openPage(browser as Browser, `${classroom}#token=garbage`);
    try {
      const status = opened.page.locator('[data-testid="status"]');
      await waitFor(
        'invalid-token shown',
        async () => (await status.getAttribute('data-state')) === 'invalid-token',
        { timeoutMs: UI_TIMEOUT_MS, intervalMs: UI_POLL_MS },
      );
      expect(opened.errors).toEqual([]);
      expect(opened.violations).toEqual([]);
    } finally {
      await opened.page.close();
    }
  });

  test('three pages: each sees the others join', async () => {
    // The teacher in class first: the students' joins then reach it as broadcasts, not in its
    // snapshot.
    await open('sensei');
    await until(
      'sensei',
      'connected',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    expect(await page('sensei').evaluate(ids('participants'))).toBe('sensei');
    for (const u of ['hana', 'kenji'] as const) await open(u);
    for (const u of USERS) {
      await until(
        u,
        'connected',
        `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
      );
      await until(
        u,
        'everyone listed',
        `${ids('participants')}.split(',').sort().join(',') === 'hana,kenji,sensei'`,
      );
      // A small room lists everyone, so the count is the list's.
      await until(
        u,
        'the count shown',
        `document.querySelector('[data-testid=participant-count]').textContent === '(3)'`,
      );
    }
    const entry = byTestId('sensei', 'participants').locator('[data-user-id="hana"]');
    expect(await entry.getAttribute('data-state')).toMatch(/^(online|away)$/);
    await until(
      'sensei',
      'hana online (heard from)',
      `document.querySelector('[data-testid=participants] [data-user-id=hana]').dataset.state === 'online'`,
    );
  });

  test('without a media server the page says video is off and never downloads LiveKit', async () => {
    await until(
      'hana',
      'media off shown',
      `document.querySelector('[data-testid="media-status"]').dataset.state === 'off'`,
    );
    const scripts = await page('hana').evaluate<string[]>(
      "performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.js'))",
    );
    expect(scripts.some((n) => n.endsWith('/app.js'))).toBe(true);
    expect(scripts.filter((n) => /\/chunks\/media-/.test(n))).toEqual([]);
  });

  test('chat round-trips', async () => {
    await byTestId('hana', 'chat-input').fill('konnichiwa, sensei!');
    await byTestId('hana', 'chat-send').click();
    for (const u of USERS)
      await until(
        u,
        'hana chat',
        `[...document.querySelectorAll('[data-testid=chat-log] li[data-from=hana]')].some(e => e.textContent.includes('konnichiwa, sensei!'))`,
      );
    await byTestId('sensei', 'chat-input').fill('ohayou gozaimasu');
    await byTestId('sensei', 'chat-input').press('Enter');
    for (const u of USERS)
      await until(
        u,
        'sensei chat',
        `[...document.querySelectorAll('[data-testid=chat-log] li[data-from=sensei]')].some(e => e.textContent.includes('ohayou gozaimasu'))`,
      );
  });

  test('raised hands appear on every page in order; the teacher lowers one', async () => {
    await byTestId('hana', 'raise-hand').click();
    for (const u of USERS) await until(u, 'hana queued', `${ids('hands')} === 'hana'`);
    await byTestId('kenji', 'raise-hand').click();
    for (const u of USERS) await until(u, 'queue hana,kenji', `${ids('hands')} === 'hana,kenji'`);
    await byTestId('sensei', 'lower-hand-hana').click();
    for (const u of USERS) await until(u, 'queue kenji', `${ids('hands')} === 'kenji'`);
  });

  test("only a moderator's page offers to lower another's hand; a student's try is refused", async () => {
    await until(
      'sensei',
      "the teacher's page offers it",
      `!!document.querySelector('[data-testid="lower-hand-kenji"]')`,
    );
    for (const u of ['hana', 'kenji'] as const)
      expect(await byTestId(u, 'lower-hand-kenji').count()).toBe(0);
    // A modified client tries anyway, as hana, from the SDK: the workers refuse it.
    const t = torii([
      'token',
      '--room',
      'demo',
      '--user',
      'hana',
      '--role',
      'student',
      '--keys-dir',
      path.join(stateDir, 'keys'),
    ]);
    expect(t.status).toBe(0);
    const hana = await RoomClient.connect({
      connect,
      servers: natsUrl,
      token: t.stdout.trim(),
      roomId: 'demo',
      userId: 'hana',
      autoRenew: false,
    });
    try {
      await expect(hana.request(RequestEvent.LowerHand, { userId: 'kenji' })).rejects.toMatchObject(
        { code: 'FORBIDDEN' },
      );
    } finally {
      await hana.close({ leave: false });
    }
    // nothing changed anywhere
    for (const u of USERS) expect(await page(u).evaluate(ids('hands'))).toBe('kenji');
    await byTestId('kenji', 'lower-hand').click();
    for (const u of USERS) await until(u, 'queue empty', `${ids('hands')} === ''`);
  });

  test('a stroke drawn on one page appears on the others; students cannot draw', async () => {
    const board = byTestId('sensei', 'whiteboard');
    const box = await board.boundingBox();
    if (!box) throw new Error('no whiteboard box');
    const mouse = page('sensei').mouse;
    await mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.3);
    await mouse.down();
    await mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 10 });
    await mouse.up();
    for (const u of USERS)
      await until(
        u,
        'one stroke',
        `document.querySelector('[data-testid=whiteboard]').dataset.strokes === '1'`,
      );
    // live cursors: the teacher's pointer is shown on the students' boards
    await until(
      'hana',
      'teacher cursor',
      `!!document.querySelector('[data-testid="cursor-sensei"]')`,
    );
    // the whiteboard of a role without it is read-only
    expect(await byTestId('hana', 'whiteboard').getAttribute('data-readonly')).toBe('true');
    const hbox = await byTestId('hana', 'whiteboard').boundingBox();
    if (!hbox) throw new Error('no whiteboard box');
    await page('hana').mouse.move(hbox.x + 10, hbox.y + 10);
    await page('hana').mouse.down();
    await page('hana').mouse.move(hbox.x + 100, hbox.y + 100, { steps: 5 });
    await page('hana').mouse.up();
    // a stroke of the teacher after the student's try: every page ends at 2, not 3
    await mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.7);
    await mouse.down();
    await mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.8, { steps: 10 });
    await mouse.up();
    for (const u of USERS)
      await until(
        u,
        'two strokes',
        `document.querySelector('[data-testid=whiteboard]').dataset.strokes === '2'`,
      );
    // and stays there: a hand raised after the strokes comes later in the room stream, so a page
    // that shows it has seen whatever followed them
    await byTestId('hana', 'raise-hand').click();
    for (const u of USERS)
      await until(u, 'hana queued after the strokes', `${ids('hands')} === 'hana'`);
    for (const u of USERS)
      expect({ [u]: await byTestId(u, 'whiteboard').getAttribute('data-strokes') }).toEqual({
        [u]: '2',
      });
    await byTestId('hana', 'lower-hand').click();
    for (const u of USERS) await until(u, 'queue empty again', `${ids('hands')} === ''`);
  });

  test('a student page reloaded mid-class gets the history', async () => {
    await page('kenji').reload();
    await until(
      'kenji',
      'connected again',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    await until(
      'kenji',
      'chat history',
      `document.querySelectorAll('[data-testid=chat-log] li').length === 2`,
    );
    await until(
      'kenji',
      'strokes history',
      `document.querySelector('[data-testid=whiteboard]').dataset.strokes === '2'`,
    );
    await until(
      'kenji',
      'everyone listed',
      `${ids('participants')}.split(',').sort().join(',') === 'hana,kenji,sensei'`,
    );
    expect(await page('kenji').evaluate(ids('hands'))).toBe('');
    for (const u of USERS) await screenshot(page(u), `web-classroom-${u}`);
  });

  test("a page renews its token with no user action and stays past the first one's expiry", async () => {
    const t = torii([
      'token',
      '--room',
      'demo',
      '--user',
      'aiko',
      '--role',
      'student',
      '--ttl',
      SHORT_TTL,
      '--keys-dir',
      path.join(stateDir, 'keys'),
    ]);
    expect(t.status).toBe(0);
    const token = t.stdout.trim();
    links.set('aiko', `${classroom}#token=${token}`);
    await open('aiko');
    await until(
      'aiko',
      'connected',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    // the token is out of the address bar (and the history entry)
    expect(await page('aiko').evaluate('location.hash')).toBe('');
    expect(page('aiko').url()).not.toContain(token);
    const exp = (
      JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }
    ).exp;
    // The server closes the connection at the first token's expiry; the page must be back with
    // the renewed one, with no one touching it.
    await waitFor('the first token expired', () => Date.now() > exp * 1000 + 2_000, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await until(
      'aiko',
      'connected after the expiry',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    // A reload after the link's token expired joins with the renewed one the tab kept.
    await page('aiko').reload();
    await until(
      'aiko',
      'connected after a reload past the expiry',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    await byTestId('aiko', 'chat-input').fill('still here');
    await byTestId('aiko', 'chat-send').click();
    await until(
      'sensei',
      'aiko chat after the expiry',
      `[...document.querySelectorAll('[data-testid=chat-log] li[data-from=aiko]')].some(e => e.textContent.includes('still here'))`,
    );
  });

  test("a kicked student's page says so and cannot rejoin", async () => {
    const password = readFileSync(
      path.join(stateDir, 'keys', KeyFile.ServicePassword),
      'utf8',
    ).trim();
    const nc = await connect({ servers: natsUrl, user: ServiceUser.Service, pass: password });
    try {
      const r = await nc.request(
        ServiceSubject.RoomsKick,
        JSON.stringify({ roomId: 'demo', userId: 'kenji' }),
        { timeout: 10_000 },
      );
      expect(r.json<{ kicked: number }>().kicked).toBeGreaterThanOrEqual(1);
    } finally {
      await nc.close();
    }
    await until(
      'kenji',
      'kicked shown',
      `document.querySelector('[data-testid=status]').dataset.state === 'kicked'`,
    );
    await screenshot(page('kenji'), 'web-classroom-kenji-kicked');
    await page('kenji').reload();
    await until(
      'kenji',
      'still kicked after a reload',
      `document.querySelector('[data-testid=status]').dataset.state === 'kicked'`,
    );
    expect(await byTestId('kenji', 'chat-log').locator('li').count()).toBe(0);
    // the others stay in class
    for (const u of ['sensei', 'hana', 'aiko'] as const)
      expect(await byTestId(u, 'status').getAttribute('data-state')).toBe('connected');
  });

  test('the page talks only to the websocket of its config.json, whatever the link says', async () => {
    const t = torii([
      'token',
      '--room',
      'demo',
      '--user',
      'yui',
      '--role',
      'student',
      '--keys-dir',
      path.join(stateDir, 'keys'),
    ]);
    expect(t.status).toBe(0);
    // A crafted link naming another server: the page must not send its token there.
    const elsewhere = `ws://127.0.0.1:${await freePort()}`;
    links.set('yui', `${classroom}#token=${t.stdout.trim()}&nats=${elsewhere}`);
    await open('yui');
    await until(
      'yui',
      'connected to the server of config.json',
      `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
    );
    expect(violations.get('yui')).toEqual([]);
    // A script in the page (an injected one, say) cannot open a websocket to another host either.
    await page('yui').evaluate(`(() => { try { new WebSocket('${elsewhere}'); } catch {} })()`);
    await waitFor('the foreign websocket refused by the policy', () =>
      violations.get('yui')?.some((v) => v.startsWith(`connect-src ${elsewhere}`)),
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(violations.get('yui'))}`);
    });
    // seen: what the last test asserts is that nothing else was refused
    violations.get('yui')?.splice(0);
  });

  test('a name, a chat and a hand note that are markup show as text and run nothing', async () => {
    const HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
    const t = torii([
      'token',
      '--room',
      'demo',
      '--user',
      'mallory',
      '--role',
      'student',
      '--name',
      HOSTILE,
      '--keys-dir',
      path.join(stateDir, 'keys'),
    ]);
    expect(t.status).toBe(0);
    // From Node, as an app that is not the page would: the page has no field for a hand note.
    const mallory = await RoomClient.connect({
      connect,
      servers: natsUrl,
      token: t.stdout.trim(),
      roomId: 'demo',
      userId: 'mallory',
      autoRenew: false,
    });
    try {
      await mallory.request(RequestEvent.InitialData);
      await mallory.chat(HOSTILE);
      await mallory.request(RequestEvent.RaiseHand, { note: HOSTILE.slice(0, 60) });
      const literal = (testId: string, text: string) =>
        `[...document.querySelectorAll('[data-testid=${testId}] *')].some(e => e.textContent.includes(${JSON.stringify(text)}))`;
      await until('sensei', 'the name, as text', literal('participants', HOSTILE));
      await until('sensei', 'the chat, as text', literal('chat-log', `: ${HOSTILE}`));
      await until('sensei', 'the note, as text', literal('hands', HOSTILE.slice(0, 60)));
      for (const u of ['sensei', 'hana'] as const) {
        expect(await page(u).evaluate('window.__xss')).toBeUndefined();
        // nothing the text carried became an element
        expect(
          await page(u).evaluate(
            `document.querySelectorAll('[data-testid=participants] img, [data-testid=chat-log] img, [data-testid=hands] img, script:not([src])').length`,
          ),
        ).toBe(0);
      }
      await mallory.request(RequestEvent.LowerHand);
    } finally {
      await mallory.close();
    }
  });

  test("turning the students' chat off in the Room file disables it on their open pages and says so", async () => {
    const roles = {
      teacher: `{ chat: true, whiteboard: true, moderator: true, media: { canPublish: true, canSubscribe: true, canPublishData: true } }`,
      student: `{ chat: false, whiteboard: false, media: { canPublish: false, canSubscribe: true, canPublishData: true } }`,
      observer: `{ chat: false, whiteboard: false, live: false, media: { canPublish: false, canSubscribe: true, canPublishData: false } }`,
    };
    writeFileSync(
      path.join(roomsDir, 'demo.yaml'),
      [
        'apiVersion: torii.io/v1alpha1',
        'kind: Room',
        'metadata:',
        '  name: demo',
        'spec:',
        "  title: 'Demo classroom'",
        '  maxParticipants: 30',
        '  roles:',
        ...Object.entries(roles).map(([r, v]) => `    ${r}: ${v}`),
        '',
      ].join('\n'),
    );
    for (const u of ['hana', 'aiko'] as const) {
      await until(
        u,
        'chat input disabled',
        `document.querySelector('[data-testid=chat-input]').disabled && document.querySelector('[data-testid=chat-send]').disabled`,
      );
      await until(
        u,
        'told',
        `/chat off/.test(document.querySelector('[data-testid=notice]').textContent)`,
      );
      await until(
        u,
        'connected again',
        `document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
      );
    }
    await screenshot(page('hana'), 'web-classroom-hana-chat-off');
    expect(await byTestId('sensei', 'chat-input').isDisabled()).toBe(false);
    await byTestId('sensei', 'chat-input').fill('chat is for teachers now');
    await byTestId('sensei', 'chat-send').click();
    await until(
      'hana',
      'the teacher still chats',
      `[...document.querySelectorAll('[data-testid=chat-log] li[data-from=sensei]')].some(e => e.textContent.includes('chat is for teachers now'))`,
    );
  });

  test('deleting the Room file ends the session on every page', async () => {
    rmSync(path.join(roomsDir, 'demo.yaml'));
    for (const u of ['sensei', 'hana', 'aiko', 'yui'] as const)
      await until(
        u,
        'session ended',
        `document.querySelector('[data-testid=status]').dataset.state === 'ended'`,
      );
    for (const u of USERS) await screenshot(page(u), `web-classroom-${u}-ended`);
    // the kicked page stays as it was told
    expect(await byTestId('kenji', 'status').getAttribute('data-state')).toBe('kicked');
    expect(await byTestId('sensei', 'chat-input').isDisabled()).toBe(true);
    for (const u of [...USERS, 'aiko', 'yui'] as const) {
      expect({ [u]: errors.get(u) }).toEqual({ [u]: [] });
      expect({ [u]: violations.get(u) }).toEqual({ [u]: [] });
    }
  });
});
