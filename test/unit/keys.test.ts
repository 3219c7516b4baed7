import { randomPassword } from '../../src/infra/keys.js';

describe('generated passwords', () => {
  test('start with a letter and hold only hex after it, so nats-server reads $VAR as a string', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const p = randomPassword();
      expect(p).toMatch(/^t[0-9a-f]{64}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(2_000);
  });
});
