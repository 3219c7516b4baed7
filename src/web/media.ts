/**
 * The classroom page's video and sound: LiveKit (`livekit-client`) joined with the workers'
 * media answer. Loaded as a chunk of its own once a media answer has arrived, so a page whose
 * workers have no media server never downloads it. Everyone is offered the camera button; the
 * token decides (in a broadcast room a student's grants do not include publishing, and the page
 * says what LiveKit refused). The token is asked for again before it expires, and a dropped
 * connection LiveKit could not resume is joined again with the newest one.
 */
import {
  ConnectionState as MediaConnection,
  DisconnectReason,
  Room,
  RoomEvent,
  Track,
  type Participant,
  type RemoteTrack,
} from 'livekit-client';
import type { MediaServerData } from '../client/index.js';

/** Share of a media token's lifetime after which the page asks for a fresh one. */
export const MEDIA_RENEW_AT_FRACTION = 0.8;
/** Wait before trying again after a failed renewal or join, in milliseconds. */
export const MEDIA_RETRY_MS = 3_000;
/** Leaves for which the page does not join again: someone meant it. */
const FINAL_REASONS: ReadonlySet<DisconnectReason> = new Set([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.PARTICIPANT_REMOVED,
  DisconnectReason.ROOM_DELETED,
  DisconnectReason.DUPLICATE_IDENTITY,
]);

/** What the media part of the page shows (`data-state` of the status). */
export const MediaState = {
  Connecting: 'connecting',
  Connected: 'connected',
  Reconnecting: 'reconnecting',
  Failed: 'failed',
  Closed: 'closed',
} as const;
export type MediaState = (typeof MediaState)[keyof typeof MediaState];

/** The page's elements for media. */
export interface MediaUi {
  status: HTMLElement;
  publish: HTMLButtonElement;
  videos: HTMLElement;
}

/** One participant's media in the classroom page. */
export class MediaView {
  private readonly room = new Room({ adaptiveStream: true, dynacast: true });
  private answer: MediaServerData;
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  /**
   * @param fetchAnswer asks the workers for a media answer (a fresh token)
   * @param first the answer that made the page load this module
   */
  constructor(
    private readonly ui: MediaUi,
    private readonly fetchAnswer: () => Promise<MediaServerData>,
    first: MediaServerData,
  ) {
    this.answer = first;
  }

  /** Joins the LiveKit room and keeps the token fresh. */
  start(): void {
    const { room, ui } = this;
    room
      .on(RoomEvent.TrackSubscribed, (track: RemoteTrack, _pub, p: Participant) =>
        this.show(track, p),
      )
      .on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
        for (const el of track.detach()) (el.closest('.tile') ?? el).remove();
      })
      .on(RoomEvent.Reconnecting, () => this.setState(MediaState.Reconnecting))
      .on(RoomEvent.Reconnected, () => this.setState(MediaState.Connected))
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this.showAudioBlocked())
      .on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
        for (const el of ui.videos.querySelectorAll('.tile')) el.remove();
        if (this.closed || (reason !== undefined && FINAL_REASONS.has(reason))) {
          this.setState(MediaState.Closed, 'left');
          return;
        }
        // LiveKit could not resume: join again with the newest token.
        this.setState(MediaState.Reconnecting);
        this.later(() => this.join());
      });
    ui.publish.addEventListener('click', () => void this.publish());
    this.scheduleRenewal();
    void this.join();
  }

  /** Leaves media (the classroom ended, or this user was removed). */
  close(): void {
    this.closed = true;
    clearTimeout(this.renewTimer);
    this.ui.publish.disabled = true;
    void this.room.disconnect();
  }

  private async join(): Promise<void> {
    if (this.closed || this.room.state !== MediaConnection.Disconnected) return;
    this.setState(MediaState.Connecting);
    try {
      await this.room.connect(this.answer.url, this.answer.token);
      this.setState(MediaState.Connected);
      this.ui.publish.disabled = false;
      this.showAudioBlocked();
    } catch (e) {
      this.setState(MediaState.Failed, describe(e));
      this.later(() => this.join());
    }
  }

  /** Camera and microphone on: LiveKit takes them if the token allows publishing. */
  private async publish(): Promise<void> {
    const { ui } = this;
    ui.publish.disabled = true;
    delete ui.status.dataset['publish'];
    try {
      await this.room.localParticipant.enableCameraAndMicrophone();
      const cam = this.room.localParticipant.getTrackPublication(Track.Source.Camera)?.track;
      if (cam) this.show(cam, this.room.localParticipant);
      ui.status.dataset['publish'] = 'publishing';
      ui.publish.textContent = 'Publishing camera and microphone';
    } catch (e) {
      // In a broadcast room a student's token does not allow it: say so, and keep the button
      // (the grants may change).
      ui.status.dataset['publish'] = 'refused';
      ui.status.textContent = `Camera refused: ${describe(e)}`;
      ui.publish.disabled = false;
    }
  }

  private show(track: Track, p: Participant): void {
    if (track.kind !== Track.Kind.Video && track.kind !== Track.Kind.Audio) return;
    const el = track.attach();
    if (track.kind === Track.Kind.Audio) {
      el.dataset['testid'] = `audio-${p.identity}`;
      this.ui.videos.append(el);
      return;
    }
    const tile = document.createElement('figure');
    tile.className = 'tile';
    tile.dataset['identity'] = p.identity;
    el.dataset['testid'] = `video-${p.identity}`;
    if (p === this.room.localParticipant) (el as HTMLVideoElement).muted = true;
    const caption = document.createElement('figcaption');
    caption.textContent = p === this.room.localParticipant ? 'You' : p.name || p.identity;
    tile.append(el, caption);
    this.ui.videos.append(tile);
  }

  /** Browsers may hold sound back until the user interacts: a click on the status starts it. */
  private showAudioBlocked(): void {
    if (this.room.canPlaybackAudio) {
      delete this.ui.status.dataset['audio'];
      return;
    }
    this.ui.status.dataset['audio'] = 'blocked';
    this.ui.status.textContent = 'Click here to hear the class';
    this.ui.status.addEventListener('click', () => void this.room.startAudio(), { once: true });
  }

  private scheduleRenewal(): void {
    const lifetimeMs = Date.parse(this.answer.expiresAt) - Date.now();
    this.ui.status.dataset['expiresAt'] = this.answer.expiresAt;
    this.renewTimer = setTimeout(
      () => void this.renew(),
      Math.max(0, lifetimeMs * MEDIA_RENEW_AT_FRACTION),
    );
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    try {
      this.answer = await this.fetchAnswer();
      this.scheduleRenewal();
    } catch {
      this.renewTimer = setTimeout(() => void this.renew(), MEDIA_RETRY_MS);
    }
  }

  private later(f: () => Promise<void>): void {
    setTimeout(() => void f(), MEDIA_RETRY_MS);
  }

  private setState(state: MediaState, detail = ''): void {
    const { status } = this.ui;
    status.dataset['state'] = state;
    const text: Record<MediaState, string> = {
      connecting: 'Joining video…',
      connected: this.answer.broadcast
        ? 'lecture: the presenters are on camera'
        : 'everyone may be on camera',
      reconnecting: 'Video reconnecting…',
      failed: 'Video failed',
      closed: 'Video ended',
    };
    status.textContent = text[state] + (detail ? `: ${detail}` : '');
    if (state !== MediaState.Connected) this.ui.publish.disabled = true;
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
