import { randomBytes, randomInt } from 'node:crypto';

/**
 * 144 random bits, URL-safe: challenge ids must not be guessable. One in 64 would start with
 * '-', which command lines read as an option (`countersign challenge otp -x…`): those are drawn
 * again, which leaves 143.9 bits.
 */
export const newChallengeId = (): string => {
  for (;;) {
    const id = randomBytes(18).toString('base64url');
    if (id[0] !== '-') return id;
  }
};

/** A short code for people to compare between the login screen and the phone. */
export const newDisplayCode = (digits: number): string =>
  randomInt(0, 10 ** digits).toString().padStart(digits, '0');

export const newToken = (bytes = 32): string => randomBytes(bytes).toString('base64url');
