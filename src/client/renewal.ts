/**
 * The room token a connection holds and its renewal (docs/protocol.md, "Renewing the token"):
 * the server closes the connection when the token expires, so a new one is asked for before, and
 * the reconnect that follows presents it.
 */
import { decodeJwt } from 'jose';
import type { RenewedToken } from '../protocol/messages.js';
import { RoomRequestError } from './requests.js';

/** Renew this long before the token expires, in milliseconds (at least half its lifetime). */
export const DEFAULT_RENEW_BEFORE_MS = 60_000;

/**
 * The role a room token grants: events go to that role's subject, the only one the callout lets
 * the connection publish to.
 * @throws RoomRequestError when the token names no role
 */
function roleOf(token: string): string {
  const role = decodeJwt(token).role;
  if (typeof role !== 'string' || role.length === 0)
    throw new RoomRequestError('BAD_REQUEST', 'token: no role claim');
  return role;
}

/**
 * The current room token and the role it grants: read by the connection's authenticator at each
 * reconnect, and swapped by a renewal.
 */
export class RoomToken {
  private token: string;
  private granted: string;

  /** @throws RoomRequestError when the token names no role */
  constructor(token: string) {
    this.token = token;
    this.granted = roleOf(token);
  }

  /** The token to present now. */
  get current(): string {
    return this.token;
  }

  /** The current token's role. */
  get role(): string {
    return this.granted;
  }

  /**
   * Takes a renewed token: the next reconnect presents it.
   * @throws RoomRequestError when the token names no role (events keep the previous role)
   */
  swap(token: string): void {
    this.token = token;
    this.granted = roleOf(token);
  }
}

/** What a {@link Renewal} needs of its connection. */
interface RenewalDeps {
  token: RoomToken;
  /** Asks the workers for a new token (`REQ_RENEW_WAJLC_TOKEN`). */
  ask: () => Promise<RenewedToken>;
  /** Called with each renewed token (an app keeps it, to reconnect after a reload). */
  onRenewed?: ((token: string) => void) | undefined;
  /** Renew this long before the expiry; default {@link DEFAULT_RENEW_BEFORE_MS}. */
  renewBeforeMs?: number | undefined;
  /** True once the connection is closed: nothing more is scheduled. */
  closed: () => boolean;
}

/** Renews the token on a timer, from the expiry of the token held at each schedule. */
export class Renewal {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly d: RenewalDeps) {}

  /** Renews the token now; the next reconnect uses the new one. */
  async renew(): Promise<RenewedToken> {
    const r = await this.d.ask();
    this.d.token.swap(r.token);
    this.d.onRenewed?.(r.token);
    return r;
  }

  /**
   * Renews at the remaining lifetime less `renewBeforeMs` (or half of it, for a short token),
   * at least a second from now; after each attempt, whatever its outcome, schedules again from
   * the token then held, so a failed renewal is tried again at half the time that remains.
   */
  schedule(): void {
    if (this.d.closed()) return;
    const exp = decodeJwt(this.d.token.current).exp;
    if (typeof exp !== 'number') return;
    const lifetime = exp * 1000 - Date.now();
    const before = Math.min(this.d.renewBeforeMs ?? DEFAULT_RENEW_BEFORE_MS, lifetime / 2);
    this.timer = setTimeout(
      () => {
        this.renew()
          .catch(() => undefined) // the next attempt comes with the next schedule
          .finally(() => this.schedule());
      },
      Math.max(1_000, lifetime - before),
    );
  }

  /** Cancels the scheduled renewal. */
  stop(): void {
    clearTimeout(this.timer);
  }
}
