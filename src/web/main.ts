/**
 * The classroom page: one participant's view of a Torii room, built on the SDK's
 * {@link Classroom} and nothing else (no UI library: a handful of lists, a form and a canvas do
 * not need one). The room token comes in the URL's fragment (`#token=…`), which the browser never
 * sends to a server; the NATS websocket URL comes from the `config.json` beside the page (`torii
 * dev` serves one), else port 8080 of the page's host, never from the link: a crafted link must
 * not send the token to a server of its choosing. Test hooks are
 * `data-testid` attributes (docs/protocol.md, "The classroom page").
 */
import { wsconnect } from '@nats-io/nats-core';
import {
  Classroom,
  ConnectionState,
  isFinalState,
  REFUSALS_FOR_KICK,
  RoomRequestError,
  tokenIdentity,
  type ClassroomEvent,
  type MediaServerData,
  type Participant,
  type Permissions,
  type Stroke,
  type WhiteboardStroke,
} from '../client/index.js';
import { JoinFailure, joinWithRetry } from './join.js';
import type { MediaView } from './media.js';

/** Websocket port the page assumes when nothing names one (nats-server's usual). */
const DEFAULT_WEBSOCKET_PORT = 8080;
/** How often the page tells the others it is here (a live update), in milliseconds. */
const HEARTBEAT_MS = 2_000;
/** A participant not heard from for this long is shown away, in milliseconds. */
const AWAY_AFTER_MS = 3 * HEARTBEAT_MS;
/** Least time between two cursor updates, in milliseconds (20 a second). */
const CURSOR_INTERVAL_MS = 50;
/**
 * Where the tab keeps its current token (`sessionStorage`: this tab only, gone with it), so that
 * a reload joins with the renewed token rather than the link's, which may have expired.
 */
const TOKEN_STORAGE_KEY = 'torii.token';
/** Stroke colour and width (a fraction of the canvas width). */
const STROKE_COLOR = '#1f6feb';
const STROKE_WIDTH = 0.004;

const STATUS_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  expired: 'Session expired: open a new link',
  kicked: 'You were removed from this class',
  ended: 'The class has ended',
};

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el as T;
};

const ui = {
  title: $('title'),
  status: $('status'),
  notice: $('notice'),
  participants: $<HTMLUListElement>('participants'),
  participantCount: $<HTMLSpanElement>('participant-count'),
  hands: $<HTMLOListElement>('hands'),
  raise: $<HTMLButtonElement>('raise-hand'),
  lower: $<HTMLButtonElement>('lower-hand'),
  chatLog: $<HTMLOListElement>('chat-log'),
  chatForm: $<HTMLFormElement>('chat-form'),
  chatInput: $<HTMLInputElement>('chat-input'),
  chatSend: $<HTMLButtonElement>('chat-send'),
  board: $<HTMLCanvasElement>('whiteboard'),
  boardWrap: $('canvas-wrap'),
  boardMode: $('board-mode'),
  mediaStatus: $('media-status'),
  mediaPublish: $<HTMLButtonElement>('media-publish'),
  videos: $('videos'),
};

function showState(state: ConnectionState, detail = ''): void {
  ui.status.dataset['state'] = state;
  ui.status.textContent = STATUS_TEXT[state] + detail;
  if (isFinalState(state)) {
    for (const el of [ui.raise, ui.lower, ui.chatInput, ui.chatSend]) el.disabled = true;
    ui.board.dataset['readonly'] = 'true';
  }
}

function notify(text: string): void {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

/** Where the page finds NATS: `config.json` (the host's word), else port 8080 of this host. */
async function natsServers(): Promise<string[]> {
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (r.ok) {
      const c = (await r.json()) as { servers?: unknown };
      if (Array.isArray(c.servers) && c.servers.every((s) => typeof s === 'string'))
        return c.servers;
    }
  } catch {
    // a static host without config.json
  }
  return [`ws://${location.hostname}:${DEFAULT_WEBSOCKET_PORT}`];
}

/** Keeps the tab's current token; storage may be unavailable (a privacy mode): then a reload needs the link again. */
function keepToken(token: string): void {
  try {
    sessionStorage.setItem(TOKEN_STORAGE_KEY, token);
  } catch {
    // nothing to keep it in
  }
}

/**
 * The token to join with: the link's (`#token=`), kept in the tab's storage and taken out of the
 * address bar and history, where anyone looking at the screen or the history would see it; else
 * the one the tab kept (a reload, with the latest renewed token).
 */
function takeToken(): string | null {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromLink) {
    keepToken(fromLink);
    history.replaceState(history.state, '', location.pathname + location.search);
    return fromLink;
  }
  try {
    return sessionStorage.getItem(TOKEN_STORAGE_KEY);
  } catch {
    return null;
  }
}

/** What a failed join means: an expired token, a refusal, or anything else (try again). */
function joinFailure(e: unknown, exp: number | undefined): JoinFailure {
  if (exp !== undefined && exp * 1000 <= Date.now()) return JoinFailure.Expired;
  if (e instanceof Error && /authori[sz]ation/i.test(`${e.name} ${e.message}`))
    return JoinFailure.Refused;
  return JoinFailure.Transient;
}

async function main(): Promise<void> {
  const token = takeToken();
  if (!token) {
    ui.status.textContent = 'No token: open the link torii dev printed (…/#token=…)';
    ui.status.dataset['state'] = 'no-token';
    return;
  }
  let exp: number | undefined;
  try {
    exp = tokenIdentity(token).exp;
  } catch {
    // Not a room token at all (a mangled link): no server would take it.
    ui.status.textContent = 'This link holds no valid token: open the link you were given again';
    ui.status.dataset['state'] = 'invalid-token';
    return;
  }
  const servers = await natsServers();
  const result = await joinWithRetry({
    attempt: () => Classroom.join({ connect: wsconnect, servers, token }),
    classify: (e) => joinFailure(e, exp),
    refusalsForKick: REFUSALS_FOR_KICK,
    onRetry: (e, delayMs) => {
      showState(ConnectionState.Reconnecting);
      notify(
        `Could not join (${e instanceof Error ? e.message : String(e)}): trying again in ${Math.ceil(delayMs / 1_000)} s`,
      );
    },
  });
  if ('gaveUp' in result) {
    showState(result.gaveUp === 'expired' ? ConnectionState.Expired : ConnectionState.Kicked);
    return;
  }
  ui.notice.hidden = true;
  new ClassroomPage(result.joined).start();
}

/** The page's view of one joined classroom. */
class ClassroomPage {
  /** When each participant was last heard from (a live update), ms since the epoch. */
  private readonly lastSeen = new Map<string, number>();
  private readonly away = new Set<string>();
  private readonly strokes: WhiteboardStroke[] = [];
  private readonly cursors = new Map<string, HTMLElement>();
  private drawing: [number, number][] | undefined;
  private lastCursor = 0;
  private media: MediaView | undefined;

  constructor(private readonly room: Classroom) {}

  start(): void {
    const { room } = this;
    const me = room.initial.me;
    ui.title.textContent = room.initial.room.title;
    document.title = `${room.initial.room.title} · ${me.userId}`;
    document.body.dataset['userId'] = me.userId;
    document.body.dataset['role'] = me.role;
    showState(ConnectionState.Connected, ` as ${me.userId} (${me.role})`);
    this.applyPermissions(room.permissions);
    const now = Date.now();
    for (const x of room.participants) this.lastSeen.set(x.userId, now);
    for (const item of room.received) {
      if ('text' in item) this.addChat(item.from, item.text);
      else this.strokes.push(item);
    }
    this.renderParticipants();
    this.renderHands();
    this.redraw();
    room.on((e) => this.handle(e));
    // a renewal during the join came before this listener
    keepToken(room.client.currentToken);
    this.wireControls();
    this.heartbeat();
    setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    document.addEventListener('visibilitychange', () => this.heartbeat());
    new ResizeObserver(() => this.redraw()).observe(ui.board);
    window.addEventListener('pagehide', () => void room.leave());
    void this.startMedia();
  }

  /** Shows the controls the user's permissions allow (the servers refuse the rest anyway). */
  private applyPermissions(p: Permissions): void {
    if (isFinalState(this.room.state)) return;
    ui.raise.disabled = ui.lower.disabled = !p.raiseHand;
    ui.chatInput.disabled = ui.chatSend.disabled = !p.chat;
    ui.chatInput.placeholder = p.chat ? '' : 'Chat is off for you';
    ui.board.dataset['readonly'] = String(!p.whiteboard);
    ui.boardMode.textContent = p.whiteboard ? '' : '(read-only)';
    document.body.dataset['moderator'] = String(p.moderator);
  }

  /** Tells the user what a Room change gave or took, and redraws the controls. */
  private permissionsChanged(p: Permissions, was: Permissions): void {
    this.applyPermissions(p);
    this.renderHands();
    const said = (name: string, now: boolean, before: boolean): string[] =>
      now === before ? [] : [`${name} ${now ? 'on' : 'off'}`];
    const changes = [
      ...said('chat', p.chat, was.chat),
      ...said('whiteboard', p.whiteboard, was.whiteboard),
      ...said('raising hands', p.raiseHand, was.raiseHand),
      ...said('moderation', p.moderator, was.moderator),
    ];
    if (changes.length > 0) notify(`The teacher changed this class: ${changes.join(', ')}`);
  }

  /**
   * Asks the workers where the room's media is; only then loads LiveKit's client (a chunk of its
   * own: a page without media never downloads it) and joins.
   */
  private async startMedia(): Promise<void> {
    let answer: MediaServerData;
    try {
      answer = await this.room.media();
    } catch (e) {
      const off = e instanceof RoomRequestError && e.code === 'NOT_FOUND';
      ui.mediaStatus.dataset['state'] = off ? 'off' : 'failed';
      ui.mediaStatus.textContent = off
        ? 'off (no media server)'
        : `unavailable (${e instanceof Error ? e.message : String(e)})`;
      return;
    }
    ui.mediaStatus.dataset['state'] = 'loading';
    const { MediaView } = await import('./media.js');
    if (isFinalState(this.room.state)) return;
    this.media = new MediaView(
      { status: ui.mediaStatus, publish: ui.mediaPublish, videos: ui.videos },
      () => this.room.media(),
      answer,
    );
    this.media.start();
  }

  private handle(e: ClassroomEvent): void {
    switch (e.type) {
      case 'participant-joined':
        this.lastSeen.set(e.participant.userId, Date.now());
        this.renderParticipants();
        return;
      case 'participant-left':
        this.cursors.get(e.userId)?.remove();
        this.cursors.delete(e.userId);
        this.renderParticipants();
        return;
      case 'participant-count':
        this.renderParticipants();
        return;
      case 'participants-stale':
        return; // the classroom pages the list again when it held it whole
      case 'hand-raised':
      case 'hand-lowered':
        this.renderHands();
        return;
      case 'chat':
        this.addChat(e.message.from, e.message.text);
        return;
      case 'whiteboard':
        this.strokes.push(e.stroke);
        this.paint(e.stroke);
        ui.board.dataset['strokes'] = String(this.strokes.length);
        return;
      case 'live':
        this.onLive(e.from, e.data);
        return;
      case 'connection': {
        const me = this.room.initial.me;
        showState(e.state, e.state === 'connected' ? ` as ${me.userId} (${me.role})` : '');
        if (isFinalState(e.state)) this.media?.close();
        return;
      }
      case 'token-renewed':
        keepToken(e.token);
        return;
      case 'permissions-changed':
        this.permissionsChanged(e.permissions, e.previous);
        return;
      case 'room-updated':
      case 'session-ended': // the connection event that follows tells it
        return;
    }
  }

  private wireControls(): void {
    const { room } = this;
    const act = (what: string, p: Promise<unknown>): void => {
      p.catch((e: unknown) => {
        const code = e instanceof RoomRequestError ? e.code : 'ERROR';
        notify(`${what} refused: ${code}${e instanceof Error ? ` (${e.message})` : ''}`);
      });
    };
    ui.raise.addEventListener('click', () => act('Raise hand', room.raiseHand()));
    ui.lower.addEventListener('click', () => act('Lower hand', room.lowerHand()));
    ui.hands.addEventListener('click', (ev) => {
      const target = (ev.target as HTMLElement).closest<HTMLElement>('[data-lower]');
      const userId = target?.dataset['lower'];
      if (userId) act(`Lowering ${userId}'s hand`, room.lowerHand(userId));
    });
    ui.chatForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = ui.chatInput.value.trim();
      if (!text) return;
      ui.chatInput.value = '';
      act('Chat', room.chat(text));
    });
    const point = (ev: PointerEvent): [number, number] => {
      const r = ui.board.getBoundingClientRect();
      const clamp = (n: number): number => Math.min(1, Math.max(0, n));
      return [clamp((ev.clientX - r.left) / r.width), clamp((ev.clientY - r.top) / r.height)];
    };
    ui.board.addEventListener('pointermove', (ev) => {
      const at = point(ev);
      if (Date.now() - this.lastCursor >= CURSOR_INTERVAL_MS) {
        this.lastCursor = Date.now();
        room.live({ cursor: at, state: this.myState() });
      }
      if (this.drawing) {
        this.drawing.push(at);
        this.paint({ color: STROKE_COLOR, width: STROKE_WIDTH, points: this.drawing.slice(-2) });
      }
    });
    // Listened to whatever the permissions: a Room change may grant drawing later.
    ui.board.addEventListener('pointerdown', (ev) => {
      if (!room.permissions.whiteboard) return;
      ui.board.setPointerCapture(ev.pointerId);
      this.drawing = [point(ev)];
    });
    const finish = (): void => {
      const points = this.drawing;
      this.drawing = undefined;
      if (!points || points.length < 2) return;
      // Shown when the room stream hands it back, like everyone else's: one order for all.
      act(
        'Drawing',
        room.draw({ color: STROKE_COLOR, width: STROKE_WIDTH, points: points.slice(0, 500) }),
      );
    };
    ui.board.addEventListener('pointerup', finish);
    ui.board.addEventListener('pointercancel', finish);
  }

  private myState(): 'online' | 'away' {
    return document.visibilityState === 'hidden' ? 'away' : 'online';
  }

  /** Tells the others this page is here (and whether it is looked at); re-judges who is away. */
  private heartbeat(): void {
    if (isFinalState(this.room.state)) return;
    if (this.room.state === ConnectionState.Connected) this.room.live({ state: this.myState() });
    this.renderParticipants();
  }

  private onLive(from: string, data: unknown): void {
    if (typeof data !== 'object' || data === null) return;
    const d = data as { state?: unknown; cursor?: unknown };
    this.lastSeen.set(from, Date.now());
    const away = d.state === 'away';
    if (away !== this.away.has(from)) {
      if (away) this.away.add(from);
      else this.away.delete(from);
      this.renderParticipants();
    } else if (this.stateOf(from) !== this.shownState(from)) this.renderParticipants();
    const c = d.cursor;
    if (Array.isArray(c) && c.length === 2 && c.every((n) => typeof n === 'number')) {
      this.moveCursor(from, c[0] as number, c[1] as number);
    }
  }

  private stateOf(userId: string): 'online' | 'away' {
    if (userId === this.room.userId) return this.myState();
    const seen = this.lastSeen.get(userId) ?? 0;
    return this.away.has(userId) || Date.now() - seen > AWAY_AFTER_MS ? 'away' : 'online';
  }

  private shownState(userId: string): string | undefined {
    return ui.participants.querySelector<HTMLElement>(`[data-user-id="${CSS.escape(userId)}"]`)
      ?.dataset['state'];
  }

  private moveCursor(userId: string, x: number, y: number): void {
    let el = this.cursors.get(userId);
    if (!el) {
      el = document.createElement('div');
      el.className = 'cursor';
      el.dataset['testid'] = `cursor-${userId}`;
      el.textContent = `➤ ${this.nameOf(userId)}`;
      ui.boardWrap.append(el);
      this.cursors.set(userId, el);
    }
    el.style.left = `${x * ui.board.clientWidth}px`;
    el.style.top = `${y * ui.board.clientHeight}px`;
  }

  private nameOf(userId: string): string {
    return this.room.participants.find((p) => p.userId === userId)?.name ?? userId;
  }

  /**
   * Renders the list once for everything that arrived together: a large room's batch brings a
   * hundred joins at once.
   */
  private renderParticipants(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.renderParticipantsNow();
    });
  }

  private renderQueued = false;

  /** The list, and the count: in a large room the list is the part the initial data named. */
  private renderParticipantsNow(): void {
    const shown = this.room.participants.length;
    const count = this.room.participantCount;
    ui.participantCount.textContent =
      this.room.participantsPartial && shown < count ? `(${count}, ${shown} shown)` : `(${count})`;
    const items = this.room.participants.map((p: Participant) => {
      const li = document.createElement('li');
      li.dataset['userId'] = p.userId;
      li.dataset['state'] = this.stateOf(p.userId);
      li.textContent = `${p.name} (${p.role})${p.userId === this.room.userId ? ' — you' : ''}`;
      return li;
    });
    ui.participants.replaceChildren(...items);
  }

  private renderHands(): void {
    const items = this.room.hands.map((h) => {
      const li = document.createElement('li');
      li.dataset['userId'] = h.userId;
      li.textContent = `${this.nameOf(h.userId)}${h.note ? `: ${h.note}` : ''}`;
      // Moderators only; the workers refuse anyone else's try whatever a page shows.
      if (h.userId !== this.room.userId && this.room.permissions.moderator) {
        const b = document.createElement('button');
        b.className = 'hand-lower';
        b.dataset['testid'] = `lower-hand-${h.userId}`;
        b.dataset['lower'] = h.userId;
        b.textContent = 'Lower';
        li.append(b);
      }
      return li;
    });
    ui.hands.replaceChildren(...items);
  }

  private addChat(from: string, text: string): void {
    const li = document.createElement('li');
    li.dataset['from'] = from;
    const who = document.createElement('b');
    who.textContent = `${this.nameOf(from)}: `;
    li.append(who, document.createTextNode(text));
    ui.chatLog.append(li);
    ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  }

  /** Redraws every stroke (after a resize: the canvas keeps its pixels at the shown size). */
  private redraw(): void {
    const w = Math.max(1, Math.round(ui.board.clientWidth * devicePixelRatio));
    const h = Math.max(1, Math.round(ui.board.clientHeight * devicePixelRatio));
    if (ui.board.width !== w || ui.board.height !== h) {
      ui.board.width = w;
      ui.board.height = h;
    }
    ui.board.getContext('2d')?.clearRect(0, 0, w, h);
    for (const s of this.strokes) this.paint(s);
    ui.board.dataset['strokes'] = String(this.strokes.length);
  }

  private paint(s: Stroke): void {
    const ctx = ui.board.getContext('2d');
    if (!ctx || s.points.length === 0) return;
    const { width: w, height: h } = ui.board;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = Math.max(1, s.width * w);
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.beginPath();
    s.points.forEach(([x, y], i) =>
      i === 0 ? ctx.moveTo(x * w, y * h) : ctx.lineTo(x * w, y * h),
    );
    ctx.stroke();
  }
}

void main();
