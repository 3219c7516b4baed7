/**
 * What the application receives from the room stream ({@link RoomMessage}), and who receives it
 * ({@link RoomListeners}): the far end of the catch-up, which decides only what is handed on and
 * when.
 */
import { RoomSubjectKind } from '../protocol/subjects.js';

/** Messages kept for the first listener, at most. */
const MAX_BACKLOG = 1_000;
const UTF8 = new TextDecoder();

/** Something that arrived on the user's consumer. */
export interface RoomMessage {
  kind: 'answer' | 'event' | 'chat' | 'whiteboard';
  subject: string;
  /** Stream sequence in the room stream. */
  seq: number;
  body: unknown;
  /** The sender of a chat or whiteboard message (from the subject, which the server enforces). */
  from?: string;
}

/**
 * The room message a stored message makes: its body as JSON (as text when it is not JSON), its
 * kind and sender from the subject (`parsed`, already read by whoever received it).
 */
export function roomMessage(
  subject: string,
  seq: number,
  data: Uint8Array,
  parsed: { kind: RoomSubjectKind; userId?: string } | undefined,
): RoomMessage {
  const text = UTF8.decode(data);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const kind: RoomMessage['kind'] =
    parsed?.kind === RoomSubjectKind.Answer
      ? 'answer'
      : parsed?.kind === RoomSubjectKind.Events
        ? 'event'
        : parsed?.kind === RoomSubjectKind.Chat
          ? 'chat'
          : 'whiteboard';
  const msg: RoomMessage = { kind, subject, seq, body };
  const from = kind === 'chat' || kind === 'whiteboard' ? parsed?.userId : undefined;
  if (from) msg.from = from;
  return msg;
}

/**
 * The application's listeners. Consuming starts inside `connect`, before the application can
 * listen: what arrives until the first listener (at most {@link MAX_BACKLOG}) is kept for it.
 */
export class RoomListeners {
  private readonly listeners = new Set<(m: RoomMessage) => void>();
  private backlog: RoomMessage[] | undefined = [];

  /** Adds a listener (the first gets the backlog first); returns a function that removes it. */
  add(listener: (m: RoomMessage) => void): () => void {
    const early = this.backlog ?? [];
    this.backlog = undefined;
    for (const m of early) listener(m);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Hands `msg` to every listener, or keeps it for the first. */
  emit(msg: RoomMessage): void {
    if (this.listeners.size === 0 && this.backlog && this.backlog.length < MAX_BACKLOG)
      this.backlog.push(msg);
    for (const l of this.listeners) l(msg);
  }
}
