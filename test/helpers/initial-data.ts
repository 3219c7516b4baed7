/** The `me` of a REQ_INITIAL_DATA answer, as the worker sends it to a student, for unit tests. */
import type { InitialData } from '../../src/client/classroom.js';

/** A student who may chat and raise a hand and only watch media. */
export const studentMe = (userId: string): InitialData['me'] => ({
  userId,
  role: 'student',
  permissions: {
    chat: true,
    whiteboard: false,
    moderator: false,
    raiseHand: true,
    media: { canPublish: false, canSubscribe: true, canPublishData: false },
  },
});
