import { randomBytes, randomInt } from 'node:crypto';

/** 144 random bits, URL-safe: challenge ids must not be guessable. */
export const newChallengeId = (): string => randomBytes(18).toString('base64url');

/** A short code for people to compare between the login screen and the phone. */
export const newDisplayCode = (digits: number): string =>
  randomInt(0, 10 ** digits).toString().padStart(digits, '0');

export const newToken = (bytes = 32): string => randomBytes(bytes).toString('base64url');
