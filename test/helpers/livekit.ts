/**
 * A real LiveKit server for tests (built by scripts/install-tools.sh): random signalling and UDP
 * ports, a generated key pair, killed when the test file ends. A minimal signalling client speaks
 * LiveKit's websocket protocol (protobuf) from Node, which has no WebRTC: enough to join a room,
 * ask to publish a track and read what the server answers.
 */
import {
  SignalRequest,
  SignalResponse,
  AddTrackRequest,
  TrackSource,
  TrackType,
} from '@livekit/protocol';
import WebSocket from 'ws';
import {
  generateLiveKitKeys,
  LiveKitServerProcess,
  type LiveKitKeys,
} from '../../src/devtools/livekit-server.js';
import { freePort, tempDir, track, waitFor } from './procs.js';

/** Starts LiveKit on loopback; `stop()` it in `afterAll` (teardown kills it too). */
export async function startLiveKit(
  keys: LiveKitKeys = generateLiveKitKeys(),
): Promise<LiveKitServerProcess> {
  const server = await LiveKitServerProcess.start({
    dir: tempDir('livekit'),
    config: { host: '127.0.0.1', port: await freePort(), rtcUdpPort: await freePort(), keys },
  });
  track(server.child);
  return server;
}

/** What a signalling connection was told. */
export interface SignalSession {
  /** Every message the server sent, in order. */
  received: SignalResponse[];
  /** Sends one request. */
  send(req: SignalRequest): void;
  /** Waits for a message of that kind (the `case` of `SignalResponse.message`). */
  next<K extends NonNullable<SignalResponse['message']['case']>>(
    kind: K,
    timeoutMs?: number,
  ): Promise<Extract<SignalResponse['message'], { case: K }>['value']>;
  close(): void;
}

/** Why a signalling connection was refused: the HTTP status of the websocket upgrade and its body. */
export class SignalRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`LiveKit refused the connection: ${status} ${body}`);
  }
}

/**
 * Opens LiveKit's signalling websocket with a token, as its client SDKs do (`/rtc`, protocol 15,
 * sdk `js` so that the server sends request responses), and waits for the join answer.
 */
export async function signal(url: string, token: string): Promise<SignalSession> {
  const q = new URLSearchParams({
    access_token: token,
    protocol: '15',
    sdk: 'js',
    version: '2.23.0',
    auto_subscribe: '1',
  });
  const ws = new WebSocket(`${url}/rtc?${q.toString()}`);
  ws.binaryType = 'nodebuffer';
  const received: SignalResponse[] = [];
  ws.on('message', (data: Buffer) =>
    received.push(SignalResponse.fromBinary(new Uint8Array(data))),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => reject(new SignalRefused(res.statusCode ?? 0, body.trim())));
    });
    ws.once('error', reject);
  });
  const session: SignalSession = {
    received,
    send: (req) => ws.send(req.toBinary()),
    next: async (kind, timeoutMs = 10_000) => {
      const hit = await waitFor(
        `LiveKit ${kind}`,
        () => received.find((m) => m.message.case === kind),
        { timeoutMs },
      );
      return hit.message.value as never;
    },
    close: () => ws.close(),
  };
  await session.next('join');
  return session;
}

/** A request to publish a camera track (what a client sends before its WebRTC offer). */
export function addCameraTrack(cid: string): SignalRequest {
  return new SignalRequest({
    message: {
      case: 'addTrack',
      value: new AddTrackRequest({
        cid,
        name: 'camera',
        type: TrackType.VIDEO,
        source: TrackSource.CAMERA,
        width: 640,
        height: 480,
      }),
    },
  });
}
