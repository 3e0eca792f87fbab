import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CountersignError } from './errors.js';

/**
 * AES-256-GCM for secrets at rest (OTP seeds, device keys). The context
 * (for example "otp:alice") is bound as associated data, so a sealed value
 * copied onto another record fails to open instead of working there.
 */
export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('the secret key must be 32 bytes (base64 of 32 random bytes)');
    this.key = key;
  }

  static fromBase64(b64: string): SecretBox {
    return new SecretBox(Buffer.from(b64, 'base64'));
  }

  seal(plain: Buffer, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  open(sealed: string, context: string): Buffer {
    const [version, iv, body] = sealed.split('.');
    if (version !== 'v1' || !iv || !body) throw sealedError();
    const data = Buffer.from(body, 'base64url');
    if (data.length < 16) throw sealedError();
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(data.subarray(data.length - 16));
      return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
    } catch {
      throw sealedError();
    }
  }
}

const sealedError = () =>
  new CountersignError(500, 'secret_unreadable', 'a stored secret could not be decrypted (wrong secret key?)');
